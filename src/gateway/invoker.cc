#include "gateway/invoker.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>

#include "auth/tenant_gate.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/tenant.h"
#include "dispatch/fair_share.h"
#include "gateway/streaming.h"
#include "meter/meter.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {
namespace {

constexpr int kFunctionErrorAttempts = 3;  // Lambda's default: the first try and two retries
constexpr int kThrottleAttempts = 10;      // about four minutes of backoff
constexpr int64_t kMaxBackoffMs = 60'000;

double Draw() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Gives back a reserved-concurrency slot and the tenant's slot, however the call ends.
struct SlotRelease {
  std::shared_ptr<std::atomic<int64_t>> slot;
  auth::TenantGate* gate = nullptr;
  std::string tenant;
  ~SlotRelease() {
    if (slot) slot->fetch_sub(1);
    if (gate != nullptr) gate->Release(tenant);
  }
};

}  // namespace

// Shared with the background coroutines, which may outlive a call but not the io_context.
struct Invoker::State {
  std::mutex mu;
  // In-flight invocations of functions with reserved concurrency, by function.
  std::map<std::string, std::shared_ptr<std::atomic<int64_t>>> inflight;  // guarded by mu
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> event_bytes{0};
  // Events held per tenant and per function (dispatch/fair_share.h), guarded by mu.
  std::map<std::string, int64_t> tenant_events;
  std::map<std::string, int64_t> function_events;
  std::map<std::string, int64_t> tenant_functions;  // functions holding events, per tenant

  // Takes a slot for `function` if its tenant and it are within their shares.
  dispatch::ShareDecision TakeEventSlot(const std::string& function, int64_t capacity) {
    std::lock_guard<std::mutex> lock(mu);
    const std::string tenant(TenantOfFunction(function));
    dispatch::ShareView view;
    view.capacity = capacity;
    view.total = events.load();
    view.tenants = static_cast<int64_t>(tenant_events.size());
    auto t = tenant_events.find(tenant);
    view.tenant = t == tenant_events.end() ? 0 : t->second;
    auto tf = tenant_functions.find(tenant);
    view.tenant_functions = tf == tenant_functions.end() ? 0 : tf->second;
    auto f = function_events.find(function);
    view.function = f == function_events.end() ? 0 : f->second;
    dispatch::ShareDecision d = dispatch::AdmitToShare(view);
    if (d != dispatch::ShareDecision::kAdmit) return d;
    events.fetch_add(1);
    ++tenant_events[tenant];
    if (++function_events[function] == 1) ++tenant_functions[tenant];
    return d;
  }

  void GiveEventSlot(const std::string& function) {
    std::lock_guard<std::mutex> lock(mu);
    const std::string tenant(TenantOfFunction(function));
    events.fetch_sub(1);
    if (--tenant_events[tenant] == 0) tenant_events.erase(tenant);
    if (--function_events[function] == 0) {
      function_events.erase(function);
      if (--tenant_functions[tenant] == 0) tenant_functions.erase(tenant);
    }
  }

  std::shared_ptr<std::atomic<int64_t>> Counter(const std::string& function) {
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = inflight[function];
    if (!slot) slot = std::make_shared<std::atomic<int64_t>>(0);
    return slot;
  }
};

std::optional<int64_t> AsyncRetryDelayMs(pool::Result::Kind kind, int attempts) {
  using Kind = pool::Result::Kind;
  switch (kind) {
    case Kind::kOk:
      return std::nullopt;
    case Kind::kThrottled:
    case Kind::kUnavailable:
      if (attempts >= kThrottleAttempts) return std::nullopt;
      return std::min<int64_t>(kMaxBackoffMs, 1000LL << std::min(attempts - 1, 16));
    case Kind::kFunctionError:
    case Kind::kTimeout:
    case Kind::kExitError:
    case Kind::kInitError:
      if (attempts >= kFunctionErrorAttempts) return std::nullopt;
      return 1000LL * attempts;
  }
  return std::nullopt;
}

Invoker::Invoker(registry::Registry* registry, pool::PoolManager* pools, meter::Meter* meter,
                 auth::TenantGate* gate, int64_t max_events, int64_t max_response_bytes)
    : registry_(registry),
      pools_(pools),
      meter_(meter),
      gate_(gate),
      max_events_(max_events),
      max_response_bytes_(max_response_bytes),
      state_(std::make_shared<State>()) {}

Invoker::~Invoker() = default;

int64_t Invoker::queued_events() const { return state_->events.load(); }

asio::awaitable<StatusOr<InvokeOutcome>> Invoker::Invoke(InvokeRequest req) {
  auto resolved = registry_->Resolve(req.function, req.qualifier, Draw());
  if (!resolved.ok()) co_return resolved.status();
  InvokeOutcome out;
  out.version = resolved->version;
  out.latest = resolved->latest;
  const registry::Manifest& manifest = out.version->manifest;

  // Held until the call is over: for a streamed answer, until its face has forwarded the end.
  auto release = std::make_shared<SlotRelease>();
  // The tenant's limits first: its budget, its calls running at once, its request rate.
  const std::string_view tenant = TenantOfFunction(req.function);
  if (gate_ != nullptr) {
    auth::Admission admission = gate_->Admit(tenant, WallNowMicros());
    if (!admission.admitted()) {
      const bool budget = admission.verdict == auth::Admission::Verdict::kBudget;
      out.retry_after_s = admission.retry_after_s;
      out.over_budget = budget;
      Refuse(out, req, budget ? "BudgetExceeded" : "TenantLimitExceeded", admission.message);
      co_return out;
    }
    if (admission.first_warning) {
      spdlog::warn("tenant {}: {}", tenant, admission.budget_warning);
    }
    out.budget_warning = std::move(admission.budget_warning);
    release->gate = gate_;
    release->tenant = tenant;
  }
  // Reserved concurrency R caps the function at R instances: R x concurrency calls at once,
  // over all its versions. Functions without it take no lock here.
  if (resolved->reserved_concurrency) {
    release->slot = state_->Counter(req.function);
    const int64_t cap = *resolved->reserved_concurrency * manifest.concurrency;
    if (release->slot->fetch_add(1) >= cap) {
      Refuse(out, req, "ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.");
      co_return out;
    }
  }

  auto inv = std::make_shared<pool::Invocation>();
  inv->id = req.request_id;
  inv->payload = req.payload.empty() ? std::string("{}") : std::move(req.payload);
  inv->trace_id = NewTraceId(WallNowMicros() / 1'000'000);
  inv->client_context = std::move(req.client_context);
  // Lambda hands the runtime the ARN the caller used: qualified by version or alias.
  if (!req.qualifier.empty() && req.qualifier != "$LATEST") inv->qualifier = req.qualifier;
  auto pool = pools_->Get(out.version, out.latest);
  out.result = co_await pool->Invoke(inv, asio::use_awaitable);
  if (out.result.sink && !req.streams) {
    out.result = co_await CollectSink(std::move(out.result.sink), max_response_bytes_);
  }
  if (out.result.sink) out.hold = std::move(release);
  if (out.result.kind == pool::Result::Kind::kThrottled) {
    out.throttle_reason = "ConcurrentInvocationLimitExceeded";
  }
  co_return out;
}

void Invoker::Refuse(InvokeOutcome& out, const InvokeRequest& req, const std::string& reason,
                     const std::string& message) {
  out.result.kind = pool::Result::Kind::kThrottled;
  out.result.error_type = out.over_budget ? "BudgetExceededException" : "TooManyRequestsException";
  out.result.error_message = message;
  out.result.version = out.version->version;
  out.throttle_reason = reason;
  meter::Record rec;
  rec.request_id = req.request_id;
  rec.function = req.function;
  rec.version = std::to_string(out.version->version);
  rec.start_us = rec.end_us = WallNowMicros();
  rec.memory_mb = out.version->manifest.memory_mb;
  rec.status = "throttled";
  rec.error_type = out.result.error_type;
  rec.bytes_in = static_cast<int64_t>(req.payload.size());
  if (meter_ != nullptr) meter_->Add(std::move(rec));
}

Status Invoker::Enqueue(InvokeRequest req, asio::any_io_executor executor) {
  auto resolved = registry_->Resolve(req.function, req.qualifier, 0.0);
  if (!resolved.ok()) return resolved.status();
  if (gate_ != nullptr) {
    auth::Admission budget = gate_->CheckBudget(TenantOfFunction(req.function), WallNowMicros());
    if (!budget.admitted()) return Status(StatusCode::kQuotaExceeded, budget.message);
  }
  const int64_t bytes = static_cast<int64_t>(req.payload.size());
  switch (state_->TakeEventSlot(req.function, max_events_)) {
    case dispatch::ShareDecision::kAdmit:
      break;
    case dispatch::ShareDecision::kQueueFull:
      return Status(StatusCode::kResourceExhausted,
                    "Rate Exceeded: the asynchronous invocation queue is full");
    case dispatch::ShareDecision::kTenantShare:
      return Status(StatusCode::kResourceExhausted,
                    "Rate Exceeded: tenant " + std::string(TenantOfFunction(req.function)) +
                        " holds its fair share of the asynchronous invocation queue");
    case dispatch::ShareDecision::kFunctionShare:
      return Status(StatusCode::kResourceExhausted,
                    "Rate Exceeded: function " + req.function +
                        " holds its fair share of the asynchronous invocation queue");
  }
  if (state_->event_bytes.fetch_add(bytes) + bytes > kMaxQueuedBytes) {
    state_->event_bytes.fetch_sub(bytes);
    state_->GiveEventSlot(req.function);
    return Status(StatusCode::kResourceExhausted,
                  "Rate Exceeded: the asynchronous invocation queue is full");
  }
  asio::co_spawn(executor, RunEvent(this, state_, std::move(req)), asio::detached);
  return Status::Ok();
}

asio::awaitable<void> Invoker::RunEvent(Invoker* self, std::shared_ptr<State> state,
                                        InvokeRequest req) {
  const int64_t bytes = static_cast<int64_t>(req.payload.size());
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int attempts = 1;; ++attempts) {
    InvokeRequest attempt = req;
    // The meter keys records by request id: every try is billed, so each gets its own.
    if (attempts > 1) attempt.request_id = NewRequestId();
    auto outcome = co_await self->Invoke(std::move(attempt));
    if (!outcome.ok()) break;  // deleted meanwhile
    auto delay = AsyncRetryDelayMs(outcome->result.kind, attempts);
    if (!delay) break;
    timer.expires_after(std::chrono::milliseconds(*delay));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  state->GiveEventSlot(req.function);
  state->event_bytes.fetch_sub(bytes);
}

http::status RefusalStatus(const InvokeOutcome& outcome, Response& res) {
  res.set(http::field::retry_after, std::to_string(outcome.retry_after_s));
  return outcome.over_budget ? http::status::payment_required : http::status::too_many_requests;
}

void SetInvokeHeaders(const InvokeOutcome& outcome, Response& res) {
  const pool::Result& r = outcome.result;
  if (!outcome.budget_warning.empty()) res.set("X-Thaw-Budget-Warning", outcome.budget_warning);
  res.set("X-Thaw-Version", std::to_string(r.version));
  res.set("X-Thaw-Cold-Start", r.cold_start ? "true" : "false");
  char init_ms[32];
  std::snprintf(init_ms, sizeof(init_ms), "%.3f", static_cast<double>(r.init_us) / 1000.0);
  res.set("X-Thaw-Init-Ms", init_ms);
  res.set("X-Thaw-Billed-Ms", std::to_string(r.billed_ms));
}

}  // namespace thaw::gateway

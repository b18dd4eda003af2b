#include "gateway/invoker.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>

#include "auth/keys.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "common/tenant.h"
#include "dispatch/dispatcher.h"
#include "dispatch/fair_share.h"
#include "gateway/lambda_shapes.h"
#include "gateway/streaming.h"
#include "gateway/webhook.h"
#include "meter/meter.h"
#include "queue/destination.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {
namespace {

constexpr int kThrottleAttempts = 10;  // about four minutes of backoff
constexpr int64_t kMaxBackoffMs = 60'000;

double Draw() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// An awaitable for a write the queue's writer thread commits: `start(callback)` submits it, and
// the awaiting coroutine resumes on its own executor with what the callback got. Not a
// coroutine itself: GCC 12 destroys non-trivial temporaries in a co_await expression twice, so
// callers pass `start` as a named object holding only shared pointers.
template <typename T, typename Start>
auto AsyncWrite(const Start& start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [](auto handler, Start start) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([h](T value) {
          auto executor = asio::get_associated_executor(*h);
          asio::post(executor,
                     [h, value = std::move(value)]() mutable { std::move (*h)(std::move(value)); });
        });
      },
      asio::use_awaitable, start);
}

}  // namespace

// Shared with the background coroutines, which may outlive a call but not the io_context.
struct Invoker::State {
  std::mutex mu;
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> event_bytes{0};
  // Events held per tenant and per function (dispatch/fair_share.h), guarded by mu.
  std::map<std::string, int64_t> tenant_events;
  std::map<std::string, int64_t> function_events;
  std::map<std::string, int64_t> tenant_functions;  // functions holding events, per tenant

  // Takes a slot for `function` if its tenant and it are within their shares.
  // Counts an event recovered at start: it was accepted once, so it holds a slot whatever the
  // shares say.
  void ForceEventSlot(const std::string& function) {
    std::lock_guard<std::mutex> lock(mu);
    const std::string tenant(TenantOfFunction(function));
    events.fetch_add(1);
    ++tenant_events[tenant];
    if (++function_events[function] == 1) ++tenant_functions[tenant];
  }

  int64_t FunctionEvents(const std::string& function) {
    std::lock_guard<std::mutex> lock(mu);
    auto f = function_events.find(function);
    return f == function_events.end() ? 0 : f->second;
  }

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
};

std::optional<int64_t> AsyncRetryDelayMs(pool::Result::Kind kind, int attempts,
                                         const RetryPolicy& policy, int64_t age_us) {
  using Kind = pool::Result::Kind;
  std::optional<int64_t> delay;
  switch (kind) {
    case Kind::kOk:
    case Kind::kCanceled:
      return std::nullopt;
    case Kind::kThrottled:
    case Kind::kUnavailable:
      if (attempts >= kThrottleAttempts) return std::nullopt;
      delay = std::min<int64_t>(kMaxBackoffMs * policy.base_ms / 1000,
                                policy.base_ms << std::min(attempts - 1, 16));
      break;
    case Kind::kFunctionError:
    case Kind::kTimeout:
    case Kind::kExitError:
    case Kind::kInitError:
      if (attempts >= policy.max_attempts) return std::nullopt;
      delay = policy.base_ms * attempts;
      break;
  }
  if (delay && age_us + *delay * 1000 > policy.max_age_us) return std::nullopt;
  return delay;
}

std::string AttemptRequestId(const std::string& request_id, int attempt) {
  if (attempt <= 1) return request_id;
  return request_id + "-" + std::to_string(attempt);
}

Invoker::Invoker(registry::Registry* registry, pool::PoolManager* pools, meter::Meter* meter,
                 dispatch::Dispatcher* dispatcher, EventOptions events, int64_t max_response_bytes)
    : registry_(registry),
      pools_(pools),
      meter_(meter),
      own_dispatcher_(dispatcher == nullptr ? std::make_unique<dispatch::Dispatcher>() : nullptr),
      dispatcher_(dispatcher != nullptr ? dispatcher : own_dispatcher_.get()),
      events_(events),
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
  auto slot = std::make_shared<dispatch::Dispatcher::Slot>();
  // The tenant's limits (its budget, its calls running at once, its request rate), then
  // reserved concurrency: R caps the function at R instances, R x concurrency calls at once
  // over all its versions.
  std::optional<int64_t> reserved_cap;
  if (resolved->reserved_concurrency) {
    reserved_cap = *resolved->reserved_concurrency * manifest.concurrency;
  }
  using Scope = dispatch::Dispatcher::Scope;
  dispatch::Decision admission =
      dispatcher_->Admit(req.function, reserved_cap, WallNowMicros(), *slot,
                         req.forwarded ? Scope::kForwarded : Scope::kHere);
  if (!admission.admitted()) {
    using Reason = dispatch::RejectReason;
    const bool budget = admission.reason == Reason::kTenantBudget;
    out.retry_after_s = admission.retry_after_s;
    out.over_budget = budget;
    Refuse(out, req,
           admission.reason == Reason::kReservedConcurrency
               ? "ReservedFunctionConcurrentInvocationLimitExceeded"
           : budget ? "BudgetExceeded"
                    : "TenantLimitExceeded",
           admission.message);
    co_return out;
  }
  if (admission.first_warning) {
    spdlog::warn("tenant {}: {}", TenantOfFunction(req.function), admission.budget_warning);
  }
  out.budget_warning = std::move(admission.budget_warning);

  auto inv = std::make_shared<pool::Invocation>();
  inv->id = req.request_id;
  inv->payload = req.payload.empty() ? std::string("{}") : std::move(req.payload);
  inv->trace_id = NewTraceId(WallNowMicros() / 1'000'000);
  inv->client_context = std::move(req.client_context);
  // Lambda hands the runtime the ARN the caller used: qualified by version or alias.
  if (!req.qualifier.empty() && req.qualifier != "$LATEST") inv->qualifier = req.qualifier;
  auto pool = pools_->Get(out.version, out.latest);
  if (req.on_pool) req.on_pool(pool);
  out.result = co_await pool->Invoke(inv, asio::use_awaitable);
  if (out.result.sink && !req.streams) {
    out.result = co_await CollectSink(std::move(out.result.sink), max_response_bytes_);
  }
  if (out.result.sink) out.hold = std::move(slot);
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

asio::awaitable<Status> Invoker::Enqueue(InvokeRequest req, asio::any_io_executor executor) {
  Status admitted = Admit(req);
  if (!admitted.ok()) co_return admitted;
  const int64_t bytes = static_cast<int64_t>(req.payload.size());
  Job job;
  job.created_us = WallNowMicros();
  if (events_.queue != nullptr) {
    auto event = std::make_shared<queue::Event>();
    event->request_id = req.request_id;
    event->function = req.function;
    event->qualifier = req.qualifier;
    event->payload = req.payload;
    event->client_context = req.client_context;
    event->created_us = job.created_us;
    queue::EventQueue* q = events_.queue;
    const auto add = [q, event](queue::EventQueue::AddDone done) {
      q->AddAsync(*event, std::move(done));
    };
    StatusOr<int64_t> id = co_await AsyncWrite<StatusOr<int64_t>>(add);
    if (!id.ok()) {
      state_->event_bytes.fetch_sub(bytes);
      state_->GiveEventSlot(req.function);
      co_return id.status();
    }
    job.id = *id;
  }
  job.req = std::move(req);
  asio::co_spawn(executor, RunEvent(this, state_, std::move(job)), asio::detached);
  co_return Status::Ok();
}

Status Invoker::Admit(const InvokeRequest& req) {
  auto resolved = registry_->Resolve(req.function, req.qualifier, 0.0);
  if (!resolved.ok()) return resolved.status();
  dispatch::Decision budget =
      dispatcher_->CheckBudget(TenantOfFunction(req.function), WallNowMicros());
  if (!budget.admitted()) return Status(StatusCode::kQuotaExceeded, budget.message);
  if (state_->FunctionEvents(req.function) >= events_.max_function_events) {
    return Status(StatusCode::kResourceExhausted,
                  "Rate Exceeded: function " + req.function + " has " +
                      std::to_string(events_.max_function_events) +
                      " asynchronous invocations queued (max_queued_events)");
  }
  const int64_t bytes = static_cast<int64_t>(req.payload.size());
  switch (state_->TakeEventSlot(req.function, events_.max_events)) {
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
  return Status::Ok();
}

void Invoker::StartJob(queue::Event e, asio::any_io_executor executor) {
  Job job;
  job.id = e.id;
  // A try cut short by the crash runs again under the same request id.
  job.attempts = e.state == queue::EventState::kRunning ? e.attempts - 1 : e.attempts;
  job.attempts_before = e.attempts_before;
  job.next_at_us = e.next_at_us;
  job.created_us = e.created_us;
  job.req.function = std::move(e.function);
  job.req.qualifier = std::move(e.qualifier);
  job.req.payload = std::move(e.payload);
  job.req.client_context = std::move(e.client_context);
  job.req.request_id = std::move(e.request_id);
  state_->ForceEventSlot(job.req.function);
  state_->event_bytes.fetch_add(static_cast<int64_t>(job.req.payload.size()));
  asio::co_spawn(executor, RunEvent(this, state_, std::move(job)), asio::detached);
}

Status Invoker::Resume(asio::any_io_executor executor) {
  if (events_.queue == nullptr) return Status::Ok();
  auto events = events_.queue->Recover();
  if (!events.ok()) return events.status();
  for (queue::Event& e : *events) StartJob(std::move(e), executor);
  if (!events->empty()) spdlog::info("resumed {} queued event invocations", events->size());
  auto deliveries = events_.queue->PendingDeliveries();
  if (!deliveries.ok()) return deliveries.status();
  for (queue::Delivery& d : *deliveries) {
    asio::co_spawn(executor, RunDelivery(this, std::move(d)), asio::detached);
  }
  if (!deliveries->empty()) spdlog::info("resumed {} webhook deliveries", deliveries->size());
  if (events_.queue->shared()) asio::co_spawn(executor, LeaseLoop(this, executor), asio::detached);
  return Status::Ok();
}

asio::awaitable<void> Invoker::LeaseLoop(Invoker* self, asio::any_io_executor executor) {
  queue::EventQueue* const q = self->events_.queue;
  const auto period = std::chrono::microseconds(std::min<int64_t>(500'000, q->lease_us() / 4));
  asio::steady_timer timer(executor);
  for (;;) {
    timer.expires_after(period);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    const int64_t room = self->events_.max_events - self->state_->events.load();
    const int64_t now = WallNowMicros();
    const auto tick = [q, now, room](queue::EventQueue::TakeOverDone done) {
      q->TickAsync(now, room, std::move(done));
    };
    StatusOr<queue::EventQueue::TakenOver> taken =
        co_await AsyncWrite<StatusOr<queue::EventQueue::TakenOver>>(tick);
    if (!taken.ok()) {
      spdlog::warn("event queue lease of node {}: {}", q->node(), taken.status().message());
      continue;
    }
    std::vector<std::function<void(int64_t)>> ticks;
    {
      std::lock_guard<std::mutex> lock(self->lease_ticks_mu_);
      ticks = self->lease_ticks_;
    }
    for (const auto& t : ticks) t(now);
    if (!taken->deliveries.empty()) {
      spdlog::info("took over {} webhook deliveries of nodes whose lease passed",
                   taken->deliveries.size());
    }
    for (queue::Delivery& d : taken->deliveries) {
      asio::co_spawn(executor, RunDelivery(self, std::move(d)), asio::detached);
    }
    if (taken->events.empty()) continue;
    spdlog::info("took over {} event invocations of nodes whose lease passed",
                 taken->events.size());
    for (queue::Event& e : taken->events) self->StartJob(std::move(e), executor);
  }
}

void Invoker::OnLeaseTick(std::function<void(int64_t now_us)> tick) {
  std::lock_guard<std::mutex> lock(lease_ticks_mu_);
  lease_ticks_.push_back(std::move(tick));
}

StatusOr<int64_t> Invoker::Redrive(const std::string& function,
                                   const std::vector<std::string>& request_ids,
                                   asio::any_io_executor executor) {
  if (events_.queue == nullptr) {
    return FailedPrecondition("this server keeps Event invocations in memory: no dead letters");
  }
  const int64_t room = events_.max_function_events - state_->FunctionEvents(function);
  if (!request_ids.empty() && static_cast<int64_t>(request_ids.size()) > room) {
    return Status(StatusCode::kResourceExhausted, "Rate Exceeded: function " + function +
                                                      " has room for " +
                                                      std::to_string(std::max<int64_t>(room, 0)) +
                                                      " more queued events (max_queued_events)");
  }
  auto events = events_.queue->Redrive(function, request_ids);
  if (!events.ok()) return events.status();
  const int64_t n = static_cast<int64_t>(events->size());
  for (queue::Event& e : *events) StartJob(std::move(e), executor);
  if (n > 0) spdlog::info("function {}: {} dead letters redriven", function, n);
  return n;
}

queue::InvokeConfig Invoker::ConfigFor(const InvokeRequest& req) const {
  if (events_.queue == nullptr) return {};
  auto config =
      events_.queue->GetConfig(req.function, req.qualifier.empty() ? "$LATEST" : req.qualifier);
  return config.ok() ? *config : queue::InvokeConfig{};
}

RetryPolicy Invoker::PolicyFor(const queue::InvokeConfig& config) const {
  RetryPolicy policy;
  policy.base_ms = events_.retry_base_ms;
  if (config.max_retry_attempts) {
    policy.max_attempts = 1 + static_cast<int>(*config.max_retry_attempts);
  }
  if (config.max_event_age_s) policy.max_age_us = *config.max_event_age_s * 1'000'000;
  return policy;
}

struct Invoker::LastTry {
  bool ran = false;  // the function resolved and was tried
  pool::Result::Kind kind = pool::Result::Kind::kOk;
  std::string body;
  std::string error_type, error_message;
  std::string executed_version;
  std::string on_success, on_failure;  // the version's thaw.yaml destinations
};

namespace {

bool IsFunctionFailure(pool::Result::Kind kind) {
  using Kind = pool::Result::Kind;
  return kind == Kind::kFunctionError || kind == Kind::kTimeout || kind == Kind::kExitError ||
         kind == Kind::kInitError;
}

}  // namespace

asio::awaitable<void> Invoker::RunEvent(Invoker* self, std::shared_ptr<State> state, Job job) {
  const int64_t bytes = static_cast<int64_t>(job.req.payload.size());
  queue::EventQueue* const store = self->events_.queue;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  if (const int64_t wait_us = job.next_at_us - WallNowMicros(); wait_us > 0) {
    timer.expires_after(std::chrono::microseconds(wait_us));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  bool succeeded = false;
  std::string condition = "RetriesExhausted";
  LastTry last;
  int attempts = job.attempts + 1;
  for (;; ++attempts) {
    if (store != nullptr) store->MarkRunningAsync(job.id, attempts);
    InvokeRequest attempt = job.req;
    attempt.request_id = AttemptRequestId(job.req.request_id, attempts);
    auto outcome = co_await self->Invoke(std::move(attempt));
    if (!outcome.ok()) {  // deleted meanwhile
      last.ran = false;
      last.error_type = "ResourceNotFoundException";
      last.error_message = outcome.status().message();
      break;
    }
    const pool::Result& r = outcome->result;
    last.ran = true;
    last.kind = r.kind;
    last.body = r.body;
    last.error_type = r.error_type;
    last.error_message = r.error_message;
    last.executed_version = outcome->latest ? "$LATEST" : std::to_string(r.version);
    last.on_success = outcome->version->manifest.on_success;
    last.on_failure = outcome->version->manifest.on_failure;
    succeeded = r.kind == pool::Result::Kind::kOk;
    const RetryPolicy policy = self->PolicyFor(self->ConfigFor(job.req));
    const int tries = attempts - job.attempts_before;
    auto delay = AsyncRetryDelayMs(r.kind, tries, policy, WallNowMicros() - job.created_us);
    if (!delay) {
      condition = succeeded                                                   ? "Success"
                  : IsFunctionFailure(r.kind) && tries >= policy.max_attempts ? "RetriesExhausted"
                                                                              : "EventAgeExceeded";
      break;
    }
    if (store != nullptr) store->MarkQueuedAsync(job.id, WallNowMicros() + *delay * 1000);
    timer.expires_after(std::chrono::milliseconds(*delay));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_await self->FinishEvent(job, attempts, succeeded, condition, last, executor);
  state->GiveEventSlot(job.req.function);
  state->event_bytes.fetch_sub(bytes);
}

asio::awaitable<void> Invoker::FinishEvent(const Job& job, int attempts, bool succeeded,
                                           const std::string& condition, const LastTry& last,
                                           asio::any_io_executor executor) {
  queue::Ending ending;
  ending.succeeded = succeeded;
  ending.condition = condition;
  if (!succeeded) ending.error = last.error_type + ": " + last.error_message;
  // The event invoke config's destination, else the version's thaw.yaml one.
  const queue::InvokeConfig config = ConfigFor(job.req);
  std::optional<std::string> destination = succeeded ? config.on_success : config.on_failure;
  const std::string& declared = succeeded ? last.on_success : last.on_failure;
  if (!destination && !declared.empty()) {
    auto resolved = ResolveDestination(declared, job.req.function);
    if (resolved.ok()) {
      destination = *resolved;
    } else {
      spdlog::warn("event {}: function {}: {}", job.req.request_id, job.req.function,
                   resolved.status().message());
    }
  }
  if (destination) {
    queue::RecordInput in;
    in.request_id = job.req.request_id;
    in.function_arn =
        lambda::FunctionArn(events_.region, job.req.function,
                            job.req.qualifier.empty() ? "$LATEST" : job.req.qualifier);
    in.condition = condition;
    in.invoke_count = attempts - job.attempts_before;
    in.payload = job.req.payload;
    in.executed_version = last.executed_version;
    in.timestamp_us = WallNowMicros();
    using Kind = pool::Result::Kind;
    if (!last.ran) {
      in.status_code = 404;
      in.response = JsonText(boost::json::object{{"errorType", last.error_type},
                                                 {"errorMessage", last.error_message}});
    } else if (last.kind == Kind::kOk) {
      in.response = last.body;
    } else if (last.kind == Kind::kThrottled || last.kind == Kind::kUnavailable) {
      in.status_code = last.kind == Kind::kThrottled ? 429 : 503;
      in.response = JsonText(boost::json::object{{"errorType", last.error_type},
                                                 {"errorMessage", last.error_message}});
    } else {
      in.function_error = "Unhandled";
      boost::system::error_code ec;
      boost::json::value doc = boost::json::parse(last.body, ec);
      in.response = !ec && doc.is_object()
                        ? last.body
                        : JsonText(boost::json::object{{"errorType", last.error_type},
                                                       {"errorMessage", last.error_message}});
    }
    std::string record = queue::InvocationRecord(in);
    if (queue::IsWebhook(*destination)) {
      queue::Delivery d;
      d.function = job.req.function;
      d.url = *destination;
      d.record = std::move(record);
      d.on_failure = !succeeded;
      ending.delivery = std::move(d);
    } else {
      queue::Event forward;
      const size_t colon = destination->find(':');
      forward.function = destination->substr(0, colon);
      if (colon != std::string::npos) forward.qualifier = destination->substr(colon + 1);
      forward.request_id = NewRequestId();
      forward.payload = std::move(record);
      forward.created_us = WallNowMicros();
      ending.forward = std::move(forward);
    }
  }
  if (events_.queue != nullptr) {
    queue::EventQueue* q = events_.queue;
    const int64_t id = job.id;
    auto shared = std::make_shared<queue::Ending>(ending);
    const auto finish = [q, id, shared](queue::EventQueue::FinishDone done) {
      q->FinishAsync(id, *shared, std::move(done));
    };
    StatusOr<queue::Ending> committed = co_await AsyncWrite<StatusOr<queue::Ending>>(finish);
    if (committed.ok()) {
      ending = std::move(*committed);
    } else {
      spdlog::error("event {}: {}", job.req.request_id, committed.status().message());
    }
  }
  if (ending.forward) StartJob(std::move(*ending.forward), executor);
  if (ending.delivery) {
    asio::co_spawn(executor, RunDelivery(this, std::move(*ending.delivery)), asio::detached);
  }
}

asio::awaitable<void> Invoker::RunDelivery(Invoker* self, queue::Delivery d) {
  queue::EventQueue* const store = self->events_.queue;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto wait_until = [&](int64_t at_us) -> asio::awaitable<void> {
    if (const int64_t wait_us = at_us - WallNowMicros(); wait_us > 0) {
      timer.expires_after(std::chrono::microseconds(wait_us));
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  };
  co_await wait_until(d.next_at_us);
  std::vector<std::pair<std::string, std::string>> headers = {
      {"X-Thaw-Delivery", std::to_string(d.id)},
      {"X-Thaw-Function", std::string(BareFunctionName(d.function))}};
  if (self->events_.keys != nullptr) {
    headers.emplace_back(
        "X-Thaw-Signature",
        queue::WebhookSignature(self->events_.keys->WebhookSecret(d.function), d.record));
  }
  std::string last_error;
  int attempts_made = kDeliveryAttempts;
  for (int attempt = d.attempts + 1;; ++attempt) {
    auto answer = co_await PostWebhook(d.url, d.record, headers,
                                       std::chrono::milliseconds(self->events_.webhook_timeout_ms),
                                       self->events_.webhook_private_addresses);
    if (answer.ok() && *answer >= 200 && *answer < 300) {
      if (store != nullptr) {
        if (Status st = store->EndDelivery(d, true); !st.ok()) {
          spdlog::error("webhook delivery {}: {}", d.id, st.message());
        }
      }
      co_return;
    }
    last_error = answer.ok() ? "HTTP " + std::to_string(*answer) : answer.status().message();
    // A refused address or a bad URL will not get better.
    const bool permanent = !answer.ok() && answer.status().code() != StatusCode::kUnavailable;
    if (attempt >= kDeliveryAttempts || permanent) {
      attempts_made = attempt;
      break;
    }
    const int64_t next_at =
        WallNowMicros() + DeliveryDelayMs(attempt, self->events_.retry_base_ms) * 1000;
    if (store != nullptr) {
      if (Status st = store->MarkDelivery(d.id, attempt, next_at); !st.ok()) {
        spdlog::error("webhook delivery {}: {}", d.id, st.message());
      }
    }
    co_await wait_until(next_at);
  }
  // The URL may carry a token: it is not logged.
  spdlog::warn("function {}: webhook delivery {} given up after {} tries ({}){}", d.function, d.id,
               attempts_made, last_error, d.on_failure ? "; the event is a dead letter again" : "");
  if (store != nullptr) {
    if (Status st = store->EndDelivery(d, false); !st.ok()) {
      spdlog::error("webhook delivery {}: {}", d.id, st.message());
    }
  }
}

int64_t DeliveryDelayMs(int attempts, int64_t base_ms) {
  return std::min<int64_t>(60 * base_ms, base_ms << std::min(std::max(attempts - 1, 0), 16));
}

StatusOr<std::string> ResolveDestination(const std::string& text, const std::string& source) {
  if (text.empty()) return InvalidArgument("a destination must not be empty");
  if (text.size() > 2048) return InvalidArgument("a destination is at most 2048 bytes");
  if (queue::IsWebhook(text)) {
    auto url = boost::urls::parse_absolute_uri(text);
    if (!url || url->encoded_host().empty()) {
      return InvalidArgument("the destination is not a valid http(s) URL");
    }
    return text;
  }
  if (text.starts_with("arn:") && text.find(":function:") == std::string::npos) {
    return InvalidArgument("destination " + text +
                           ": only Lambda function ARNs and http(s) URLs are supported");
  }
  auto ref = lambda::ParseFunctionRef(text);
  if (!ref.ok()) return InvalidArgument("destination " + text + ": " + ref.status().message());
  const std::string_view tenant = TenantOfFunction(source);
  if (!ref->account.empty() && ref->account != AccountOf(tenant)) {
    return InvalidArgument("destination " + text + " is a function of another account");
  }
  const std::string name = InternalFunctionName(tenant, ref->name);
  if (name == source) {
    return InvalidArgument("destination " + text + ": a function cannot be its own destination");
  }
  return ref->qualifier.empty() ? name : name + ":" + ref->qualifier;
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
  res.set("X-Thaw-Start-Kind", std::string(instance::StartKindName(r.start_kind)));
  char init_ms[32];  // as "%.3f" writes it (to_chars: no printf per call)
  auto end = std::to_chars(init_ms, init_ms + sizeof(init_ms),
                           static_cast<double>(r.init_us) / 1000.0, std::chars_format::fixed, 3);
  res.set("X-Thaw-Init-Ms", std::string_view(init_ms, static_cast<size_t>(end.ptr - init_ms)));
  res.set("X-Thaw-Billed-Ms", std::to_string(r.billed_ms));
}

}  // namespace thaw::gateway

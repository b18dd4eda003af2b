#include "gateway/jobs_api.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <map>
#include <mutex>

#include "common/clock.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "common/tenant.h"
#include "gateway/invoker.h"
#include "gateway/responses.h"
#include "gateway/scope.h"
#include "gateway/webhook.h"
#include "logs/log_store.h"
#include "pool/pool.h"
#include "pool/response_sink.h"
#include "queue/destination.h"
#include "queue/job_store.h"
#include "registry/registry.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {
namespace json = boost::json;
using queue::Job;
using queue::JobStatus;

namespace {

constexpr int64_t kMaxOutputBytes = 6 << 20;      // as a synchronous answer
constexpr int64_t kOutputFlushUs = 200'000;       // a growing output is written this often
constexpr int64_t kSweepEveryUs = 3'600'000'000;  // retention
constexpr int64_t kTakeOverPerTick = 256;         // jobs of dead nodes taken per lease tick

// Wakes one Prefer: wait caller: when its job finishes or its time is up, whichever is first.
// Fire may be called from any thread, any number of times; the first counts.
class Waiter {
 public:
  void Fire() {
    std::optional<pool::Completion<void(bool)>> h;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (fired_) return;
      fired_ = true;
      if (handler_) h.emplace(std::move(*handler_));
      handler_.reset();
    }
    if (h) pool::Complete(std::move(*h), true);
  }
  template <typename Token>
  auto Wait(Token&& token) {
    return asio::async_initiate<Token, void(bool)>(
        [this](auto handler) {
          auto ex = asio::get_associated_executor(handler, asio::system_executor());
          pool::Completion<void(bool)> c(std::move(handler), std::move(ex));
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (!fired_) {
              handler_.emplace(std::move(c));
              return;
            }
          }
          pool::Complete(std::move(c), true);
        },
        token);
  }

 private:
  std::mutex mu_;
  bool fired_ = false;                                   // guarded by mu_
  std::optional<pool::Completion<void(bool)>> handler_;  // guarded by mu_
};

std::string IsoMillis(int64_t wall_us) {
  if (wall_us <= 0) return {};
  std::string s = Iso8601(wall_us);  // ...:SSZ
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03d", static_cast<int>((wall_us / 1000) % 1000));
  return s.substr(0, s.size() - 1) + ms + "Z";
}

json::value TimeOrNull(int64_t wall_us) {
  if (wall_us <= 0) return nullptr;
  return json::value(IsoMillis(wall_us));
}

double Ms(int64_t us) { return static_cast<double>(us) / 1000.0; }

}  // namespace

StatusOr<int64_t> ParsePreferWait(std::string_view prefer, int64_t max_s) {
  if (prefer.empty()) return int64_t{0};
  const auto bad = [&] {
    return InvalidArgument("Prefer: must be wait or wait=N with N from 1 to " +
                           std::to_string(max_s) + " seconds, got '" + std::string(prefer) + "'");
  };
  if (prefer == "wait") return max_s;
  if (!prefer.starts_with("wait=")) return bad();
  std::string_view n = prefer.substr(5);
  if (n.empty() || n.size() > 4) return bad();
  int64_t v = 0;
  for (char c : n) {
    if (c < '0' || c > '9') return bad();
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > max_s) return bad();
  return v;
}

// Shared with the background coroutines (jobs running, webhooks being sent).
struct JobsApi::State {
  Invoker* invoker;
  queue::JobStore* store;
  asio::any_io_executor executor;  // where jobs run (set by Resume; else the caller's)
  logs::LogStore* logs;
  JobsOptions options;

  struct Running {
    std::weak_ptr<pool::FunctionPool> pool;
    bool cancel = false;
  };
  std::mutex mu;
  std::map<std::string, Running> running;     // guarded by mu
  std::map<std::string, int64_t> unfinished;  // guarded by mu: jobs accepted, by function

  // Counts a job in, unless its function already has max_unfinished.
  bool TakeSlot(const std::string& function, bool force) {
    std::lock_guard<std::mutex> lock(mu);
    int64_t& n = unfinished[function];
    if (!force && n >= options.max_unfinished) return false;
    ++n;
    return true;
  }
  void GiveSlot(const std::string& function) {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = unfinished.find(function); it != unfinished.end() && --it->second <= 0) {
      unfinished.erase(it);
    }
  }
  std::map<std::string, std::vector<std::shared_ptr<Waiter>>> waiters;  // guarded by mu

  std::string Logs(const Job& job) const {
    if (logs == nullptr) return {};
    std::string out;
    for (const auto& line : logs->ReadRequest(job.function, job.id)) {
      out += line.text;
      out += '\n';
    }
    return out;
  }

  json::object ToJson(const Job& j, const std::string& shown, bool with_logs) const {
    json::object metrics{
        {"start_kind", j.start_kind.empty() ? json::value(nullptr) : json::value(j.start_kind)},
        {"queued_ms", j.started_us > 0 ? Ms(j.started_us - j.created_us) : 0.0},
        {"duration_ms", Ms(j.duration_us)},
        {"billed_ms", j.billed_ms}};
    json::object o{{"id", j.id},
                   {"function", shown},
                   {"status", queue::JobStatusName(j.status)},
                   {"input", j.output_dropped ? json::value(nullptr) : JsonOrString(j.input)},
                   {"output", j.output_dropped ? json::value(nullptr) : JsonOrString(j.output)},
                   {"error", nullptr},
                   {"metrics", std::move(metrics)},
                   {"created_at", TimeOrNull(j.created_us)},
                   {"started_at", TimeOrNull(j.started_us)},
                   {"completed_at", TimeOrNull(j.completed_us)},
                   {"urls", json::object{{"get", "/v1/jobs/" + j.id},
                                         {"cancel", "/v1/jobs/" + j.id + "/cancel"}}}};
    if (!j.qualifier.empty()) o["qualifier"] = j.qualifier;
    if (j.output_dropped) o["output_dropped"] = true;
    if (!j.error_type.empty() || !j.error_message.empty()) {
      o["error"] = json::object{{"type", j.error_type}, {"message", j.error_message}};
    }
    if (with_logs) o["logs"] = Logs(j);
    return o;
  }

  // A waiter for job `id`, woken by the job's settle (Notify).
  std::shared_ptr<Waiter> AddWaiter(const std::string& id) {
    auto w = std::make_shared<Waiter>();
    std::lock_guard<std::mutex> lock(mu);
    waiters[id].push_back(w);
    return w;
  }
  // Until `w` fires or `wait_s` seconds pass; then `w` is no longer listed.
  asio::awaitable<void> AwaitWaiter(const std::string& id, std::shared_ptr<Waiter> w,
                                    int64_t wait_s) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::seconds(wait_s));
    timer.async_wait([w](const boost::system::error_code&) { w->Fire(); });
    co_await w->Wait(asio::use_awaitable);
    timer.cancel();
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = waiters.find(id); it != waiters.end()) {
      std::erase(it->second, w);
      if (it->second.empty()) waiters.erase(it);
    }
  }

  void Notify(const std::string& id) {
    std::vector<std::shared_ptr<Waiter>> woken;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = waiters.find(id);
      if (it == waiters.end()) return;
      woken = std::move(it->second);
      waiters.erase(it);
    }
    for (auto& w : woken) w->Fire();
  }

  // Sends `job` to its webhook if its filter takes `event`: once, or for "completed" with a
  // few tries. In the background; failures are logged.
  static void Hook(std::shared_ptr<State> self, const Job& job, unsigned event,
                   const char* event_name, asio::any_io_executor ex) {
    if (job.webhook.empty() || (job.webhook_events & event) == 0) return;
    std::string secret = self->options.webhook_secret(job.function);
    std::string body =
        JsonText(self->ToJson(job, std::string(BareFunctionName(job.function)), true));
    const int tries = event == queue::kWebhookCompleted ? 3 : 1;
    asio::co_spawn(
        ex,
        [self, url = job.webhook, id = job.id, body = std::move(body), secret = std::move(secret),
         name = std::string(event_name), tries]() -> asio::awaitable<void> {
          asio::steady_timer timer(co_await asio::this_coro::executor);
          for (int attempt = 1;; ++attempt) {
            std::vector<std::pair<std::string, std::string>> headers;
            headers.emplace_back("X-Thaw-Signature", queue::WebhookSignature(secret, body));
            headers.emplace_back("X-Thaw-Webhook-Event", name);
            auto status = co_await PostWebhook(
                url, body, headers, std::chrono::milliseconds(self->options.webhook_timeout_ms),
                self->options.webhook_private_addresses);
            if (status.ok() && *status >= 200 && *status < 300) co_return;
            const std::string why =
                status.ok() ? "HTTP " + std::to_string(*status) : status.status().message();
            if (attempt >= tries) {
              spdlog::warn("job {}: webhook {} not delivered: {}", id, name, why);
              co_return;
            }
            timer.expires_after(std::chrono::milliseconds(self->options.retry_base_ms * attempt));
            boost::system::error_code ec;
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          }
        },
        asio::detached);
  }

  // Ends a job that never got to run (deleted function, canceled before it started).
  void Settle(Job& job, asio::any_io_executor ex, std::shared_ptr<State> self) {
    if (Status st = store->Finish(job); !st.ok()) {
      spdlog::error("job {}: {}", job.id, st.message());
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      running.erase(job.id);
    }
    GiveSlot(job.function);
    if (auto final = store->Get(job.id); final.ok()) {
      Notify(job.id);
      Hook(self, *final, queue::kWebhookCompleted, "completed", ex);
    }
  }

  static asio::awaitable<void> Run(std::shared_ptr<State> self, Job job);
};

asio::awaitable<void> JobsApi::State::Run(std::shared_ptr<State> self, Job job) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  RetryPolicy policy;
  policy.base_ms = self->options.retry_base_ms;
  for (int attempts = 1;; ++attempts) {
    {
      std::lock_guard<std::mutex> lock(self->mu);
      if (self->running[job.id].cancel) break;
    }
    job.started_us = WallNowMicros();
    if (Status st = self->store->MarkRunning(job.id, job.started_us, ""); !st.ok()) {
      break;  // canceled while it waited (or the store failed: logged by the caller's reads)
    }
    if (attempts == 1) {
      job.status = JobStatus::kRunning;
      Hook(self, job, queue::kWebhookStart, "start", ex);
    }
    InvokeRequest ir;
    ir.function = job.function;
    ir.qualifier = job.qualifier;
    ir.payload = job.input;
    ir.request_id = job.id;
    ir.streams = true;
    ir.on_pool = [self, id = job.id](const std::shared_ptr<pool::FunctionPool>& p) {
      bool cancel = false;
      {
        std::lock_guard<std::mutex> lock(self->mu);
        auto& r = self->running[id];
        r.pool = p;
        cancel = r.cancel;
      }
      // Canceled before it reached the pool: the pool refuses it when it arrives.
      if (cancel) p->Cancel(id);
    };
    auto outcome = co_await self->invoker->Invoke(std::move(ir));
    if (!outcome.ok()) {
      job.status = JobStatus::kFailed;
      job.error_type = "ResourceNotFoundException";
      job.error_message = outcome.status().message();
      job.completed_us = WallNowMicros();
      self->Settle(job, ex, self);
      co_return;
    }
    pool::Result r = std::move(outcome->result);
    if (r.sink) {
      // Streamed: the output grows as the runtime writes it.
      int64_t flushed_us = 0;
      size_t logged = 0;
      bool too_large = false;
      job.output.clear();
      for (;;) {
        pool::ResponseSink::Piece piece = co_await r.sink->Read(asio::use_awaitable);
        if (piece.end) break;
        if (static_cast<int64_t>(job.output.size() + piece.bytes.size()) > kMaxOutputBytes) {
          r.sink->Cancel();
          too_large = true;
          break;
        }
        job.output += piece.bytes;
        if (MonoNowMicros() - flushed_us >= kOutputFlushUs) {
          flushed_us = MonoNowMicros();
          (void)self->store->SetOutput(job.id, job.output);
          Hook(self, job, queue::kWebhookOutput, "output", ex);
          if ((job.webhook_events & queue::kWebhookLogs) != 0 && self->logs != nullptr) {
            const size_t n = self->logs->ReadRequest(job.function, job.id).size();
            if (n > logged) Hook(self, job, queue::kWebhookLogs, "logs", ex);
            logged = n;
          }
        }
      }
      // A stream that ends in an error (or a cancel) keeps what it wrote before.
      if (too_large) {
        r = pool::Result{};
        r.kind = pool::Result::Kind::kFunctionError;
        r.error_type = "Function.ResponseSizeTooLarge";
        r.error_message = "the output exceeded " + std::to_string(kMaxOutputBytes) + " bytes";
      } else {
        r = r.sink->result();
        if (r.kind == pool::Result::Kind::kOk) r.body = job.output;
      }
    }
    using Kind = pool::Result::Kind;
    if (r.kind == Kind::kThrottled || r.kind == Kind::kUnavailable) {
      auto delay = AsyncRetryDelayMs(r.kind, attempts, policy);
      if (delay) {
        timer.expires_after(std::chrono::milliseconds(*delay));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
    }
    // A call canceled before an instance took it never started.
    const bool started = r.kind != Kind::kCanceled || r.duration_us > 0;
    job.start_kind = !started ? "" : r.cold_start ? "cold" : "warm";
    job.duration_us = r.duration_us;
    job.billed_ms = r.billed_ms;
    job.completed_us = WallNowMicros();
    job.status = r.kind == Kind::kOk         ? JobStatus::kSucceeded
                 : r.kind == Kind::kCanceled ? JobStatus::kCanceled
                                             : JobStatus::kFailed;
    if (r.kind == Kind::kOk) {
      job.output = std::move(r.body);
    } else {
      job.error_type = r.error_type;
      job.error_message = r.error_message;
    }
    self->Settle(job, ex, self);
    co_return;
  }
  // Canceled before it ran.
  job.status = JobStatus::kCanceled;
  job.completed_us = WallNowMicros();
  self->Settle(job, ex, self);
}

JobsApi::JobsApi(Invoker* invoker, queue::JobStore* store, logs::LogStore* logs,
                 JobsOptions options)
    : state_(std::make_shared<State>()) {
  state_->invoker = invoker;
  state_->store = store;
  state_->logs = logs;
  state_->options = options;
}

JobsApi::~JobsApi() = default;

Status JobsApi::Resume(asio::any_io_executor executor) {
  state_->executor = executor;
  auto jobs = state_->store->Recover();
  if (!jobs.ok()) return jobs.status();
  for (Job& job : *jobs) {
    // Accepted before the restart: they count, past the limit if need be.
    (void)state_->TakeSlot(job.function, true);
    asio::co_spawn(executor, State::Run(state_, std::move(job)), asio::detached);
  }
  if (!jobs->empty()) spdlog::info("resumed {} unfinished jobs", jobs->size());
  // Nodes on one store: on each renewal of this node's lease, the jobs of nodes whose lease has
  // passed are taken over (they count, past the limit if need be, as resumed ones do).
  if (state_->invoker->SharesStore()) {
    state_->invoker->OnLeaseTick([self = state_](int64_t now_us) {
      auto taken = self->store->TakeOver(now_us, kTakeOverPerTick);
      if (!taken.ok()) {
        spdlog::warn("jobs take-over: {}", taken.status().message());
        return;
      }
      if (taken->empty()) return;
      spdlog::info("took over {} jobs of nodes whose lease passed", taken->size());
      for (Job& job : *taken) {
        (void)self->TakeSlot(job.function, true);
        asio::co_spawn(self->executor, State::Run(self, std::move(job)), asio::detached);
      }
    });
  }
  // Retention: outputs of jobs finished longer ago than job_retention_hours are dropped.
  asio::co_spawn(
      executor,
      [self = state_]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (;;) {
          auto dropped = self->store->DropOutputs(WallNowMicros() - self->options.retention_us);
          if (!dropped.ok()) spdlog::error("job retention: {}", dropped.status().message());
          timer.expires_after(std::chrono::microseconds(
              std::min(kSweepEveryUs, std::max<int64_t>(self->options.retention_us / 4, 1000))));
          boost::system::error_code ec;
          co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;
        }
      },
      asio::detached);
  return Status::Ok();
}

asio::awaitable<void> JobsApi::ServeFunction(const auth::Caller& caller, const std::string& name,
                                             std::string_view route, const std::string& query,
                                             Request& req, Response& res) {
  const http::verb m = req.method();
  if (route == "jobs" && m == http::verb::post) {
    co_return co_await Create(caller, name, query, req, res);
  }
  if (route == "jobs" && m == http::verb::get) {
    int64_t limit = 50;
    if (std::string l = QueryParam(query, "limit"); !l.empty()) {
      char* end = nullptr;
      limit = std::strtoll(l.c_str(), &end, 10);
      if (*end != '\0' || limit < 1 || limit > 1000) {
        co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                            "limit must be a number from 1 to 1000, got '" + l + "'");
      }
    }
    auto page = state_->store->List(name, limit, QueryParam(query, "cursor"));
    if (!page.ok()) co_return StatusBody(res, page.status());
    json::array jobs;
    for (const Job& j : page->jobs)
      jobs.push_back(state_->ToJson(j, ShownName(caller, name), false));
    co_return JsonBody(res, http::status::ok,
                       json::object{{"jobs", std::move(jobs)},
                                    {"next", page->next.empty() ? json::value(nullptr)
                                                                : json::value(page->next)}});
  }
  if (route == "webhook_secret" && m == http::verb::get) {
    if (auto info = state_->invoker->registry()->Get(name); !info.ok()) {
      co_return StatusBody(res, info.status());
    }
    co_return JsonBody(res, http::status::ok,
                       json::object{{"secret", state_->options.webhook_secret(name)}});
  }
  MethodNotAllowed(req, res);
}

asio::awaitable<void> JobsApi::Create(const auth::Caller& caller, const std::string& name,
                                      const std::string& query, Request& req, Response& res) {
  auto wait_s = ParsePreferWait(req["Prefer"], state_->options.max_wait_s);
  if (!wait_s.ok()) co_return StatusBody(res, wait_s.status());
  Job job;
  job.id = NewRequestId();
  job.function = name;
  job.qualifier = QueryParam(query, "qualifier");
  job.input = "{}";
  if (!req.body().empty()) {
    boost::system::error_code ec;
    json::value body = json::parse(req.body(), ec);
    if (ec || !body.is_object()) {
      co_return ErrorBody(res, http::status::bad_request, "InvalidRequestContentException",
                          "body must be a JSON object: {\"input\": ..., \"webhook\": URL, "
                          "\"webhook_events_filter\": [...]}");
    }
    for (const auto& kv : body.as_object()) {
      const std::string key(kv.key());
      if (key == "input") {
        job.input = JsonText(kv.value());
      } else if (key == "webhook") {
        if (!kv.value().is_string()) {
          co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                              "webhook must be a URL string");
        }
        job.webhook = std::string(kv.value().as_string());
        if (Status st = ValidateWebhookUrl(job.webhook); !st.ok()) co_return StatusBody(res, st);
      } else if (key == "webhook_events_filter") {
        std::vector<std::string> names;
        const json::array* a = kv.value().if_array();
        for (size_t i = 0; a != nullptr && i < a->size(); ++i) {
          if (!(*a)[i].is_string()) a = nullptr;
          if (a != nullptr) names.emplace_back((*a)[i].as_string());
        }
        if (a == nullptr) {
          co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                              "webhook_events_filter must be a list of start, output, logs, "
                              "completed");
        }
        auto mask = queue::ParseWebhookEvents(names);
        if (!mask.ok()) co_return StatusBody(res, mask.status());
        job.webhook_events = *mask;
      } else {
        co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                            "unknown field '" + key + "' (input, webhook, webhook_events_filter)");
      }
    }
  }
  // The function (and qualifier) must exist now; it runs whatever version it resolves to then.
  if (auto resolved = state_->invoker->registry()->Resolve(job.function, job.qualifier, 0.0);
      !resolved.ok()) {
    co_return StatusBody(res, resolved.status());
  }
  if (!state_->TakeSlot(job.function, false)) {
    co_return StatusBody(res, Status(StatusCode::kResourceExhausted,
                                     "Rate Exceeded: function " + name + " has " +
                                         std::to_string(state_->options.max_unfinished) +
                                         " jobs not finished (max_queued_events)"));
  }
  if (Status st = state_->store->Add(job); !st.ok()) {
    state_->GiveSlot(job.function);
    co_return StatusBody(res, st);
  }
  // Committed: a crash from here on loses nothing (Resume runs it after a restart).
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->running[job.id];
  }
  res.set("X-Thaw-Request-Id", job.id);
  res.set(http::field::location, "/v1/jobs/" + job.id);
  // Without a wait the answer is the job as committed: queued.
  if (*wait_s == 0) {
    JsonBody(res, http::status::created, state_->ToJson(job, ShownName(caller, name), false));
  }
  asio::any_io_executor ex = state_->executor;
  if (!ex) ex = co_await asio::this_coro::executor;
  asio::co_spawn(ex, State::Run(state_, job), asio::detached);
  if (*wait_s > 0) co_await Answer(caller, job.id, *wait_s, http::status::created, res);
}

asio::awaitable<void> JobsApi::Answer(const auth::Caller& caller, const std::string& id,
                                      int64_t wait_s, http::status status, Response& res) {
  if (wait_s > 0) {
    auto w = state_->AddWaiter(id);
    // Finished before the waiter was registered: nothing would wake it.
    if (auto job = state_->store->Get(id); !job.ok() || queue::IsTerminal(job->status)) {
      w->Fire();
    }
    co_await state_->AwaitWaiter(id, w, wait_s);
  }
  auto job = state_->store->Get(id);
  if (!job.ok()) co_return StatusBody(res, job.status());
  if (wait_s > 0) res.set("Preference-Applied", "wait=" + std::to_string(wait_s));
  JsonBody(res, status, state_->ToJson(*job, ShownName(caller, job->function), true));
}

asio::awaitable<void> JobsApi::ServeJob(const auth::Caller& caller,
                                        const std::vector<std::string_view>& parts, Request& req,
                                        Response& res) {
  // parts: v1 jobs ID [cancel]
  if (parts.size() < 3 || parts.size() > 4 || parts[2].empty() ||
      (parts.size() == 4 && parts[3] != "cancel")) {
    co_return ErrorBody(res, http::status::not_found, "NotFound",
                        "no route for " + std::string(req.target()));
  }
  const std::string id(parts[2]);
  auto job = state_->store->Get(id);
  // Another tenant's job is not found, never forbidden.
  if (!job.ok() || !Visible(caller, job->function)) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "job " + id + " not found");
  }
  const http::verb m = req.method();
  if (parts.size() == 3 && m == http::verb::get) {
    auto wait_s = ParsePreferWait(req["Prefer"], state_->options.max_wait_s);
    if (!wait_s.ok()) co_return StatusBody(res, wait_s.status());
    co_return co_await Answer(caller, id, *wait_s, http::status::ok, res);
  }
  if (parts.size() == 4 && m == http::verb::post) {
    auto was = state_->store->Cancel(id, WallNowMicros());
    if (!was.ok()) co_return StatusBody(res, was.status());
    if (!queue::IsTerminal(*was)) {
      std::shared_ptr<pool::FunctionPool> p;
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        auto& r = state_->running[id];
        r.cancel = true;
        p = r.pool.lock();
      }
      // Running: its invocation ends now (instance killed, billed to this moment); the job's
      // coroutine records the figures and wakes the waiters. The answer waits for that (it
      // follows at once; 5 s at most), so it and every read after it show what was billed.
      if (p != nullptr) {
        auto w = state_->AddWaiter(id);
        p->Cancel(id);
        co_await state_->AwaitWaiter(id, w, 5);
      }
    }
    co_return co_await Answer(caller, id, 0, http::status::ok, res);
  }
  MethodNotAllowed(req, res);
}

}  // namespace thaw::gateway

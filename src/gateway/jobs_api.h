// JobsApi: jobs (long asynchronous invocations, as Replicate's predictions) over the durable
// JobStore: POST/GET /v1/functions/{name}/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/cancel,
// `Prefer: wait=N` awaited without holding a thread, signed webhooks, output kept for
// job_retention_hours. Each job runs in a background coroutine through the Invoker. Owned by
// Api; thread-safe (Serve* run concurrently on the gateway threads).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "common/status.h"
#include "gateway/http_server.h"

namespace thaw::queue {
class JobStore;
}
namespace thaw::logs {
class LogStore;
}

namespace thaw::gateway {

class Invoker;

struct JobsOptions {
  int64_t retention_us = 24LL * 3600 * 1'000'000;  // job_retention_hours
  int64_t retry_base_ms = 1000;                    // a throttled job tries again after this
  int64_t max_wait_s = 60;                         // Prefer: wait=N
  // max_queued_events: jobs accepted and not finished, per function (429 past it).
  int64_t max_unfinished = 100'000;
  int64_t webhook_timeout_ms = 10'000;
  // The function's webhook signing secret (the same one its Event destinations are signed
  // with: auth::KeyStore::WebhookSecret).
  std::function<std::string(const std::string& function)> webhook_secret;
  bool webhook_private_addresses = false;  // the knob of that name (gateway/webhook.h)
};

// Prefer: wait=N (or plain `wait`: the most) -> seconds to wait, 0 without the header.
// InvalidArgument for anything else or N outside 1..max_s. Pure.
StatusOr<int64_t> ParsePreferWait(std::string_view prefer, int64_t max_s);

class JobsApi {
 public:
  JobsApi(Invoker* invoker, queue::JobStore* store, logs::LogStore* logs, JobsOptions options);
  ~JobsApi();
  JobsApi(const JobsApi&) = delete;
  JobsApi& operator=(const JobsApi&) = delete;

  // /v1/functions/{name}/jobs (POST creates, GET lists) and .../webhook_secret (GET); `name`
  // is already scoped to the caller.
  asio::awaitable<void> ServeFunction(const auth::Caller& caller, const std::string& name,
                                      std::string_view route, const std::string& query,
                                      Request& req, Response& res);
  // /v1/jobs/{id} and /v1/jobs/{id}/cancel; parts as split from the path.
  asio::awaitable<void> ServeJob(const auth::Caller& caller,
                                 const std::vector<std::string_view>& parts, Request& req,
                                 Response& res);
  // At start: runs the jobs the store held unfinished, and sweeps outputs past retention
  // (then hourly).
  [[nodiscard]] Status Resume(asio::any_io_executor executor);

 private:
  struct State;
  asio::awaitable<void> Create(const auth::Caller& caller, const std::string& name,
                               const std::string& query, Request& req, Response& res);
  // Answers with the job's JSON once it is finished or `wait_s` passed.
  asio::awaitable<void> Answer(const auth::Caller& caller, const std::string& id, int64_t wait_s,
                               http::status status, Response& res);

  std::shared_ptr<State> state_;
};

}  // namespace thaw::gateway

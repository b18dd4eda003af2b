// Invoker: the invoke path both API faces share. It resolves a function and qualifier (an
// alias picks among its versions by weight), has the dispatcher admit the call against its
// tenant's limits and the function's reserved concurrency (dispatch/dispatcher.h), runs the
// call on that version's pool, and runs Lambda Event (asynchronous) invocations from
// the durable queue (queue/event_queue.h) with retries. Owned by Api; thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gateway/http_server.h"
#include "pool/pool.h"
#include "queue/event_queue.h"

namespace thaw::meter {
class Meter;
}
namespace thaw::auth {
class KeyStore;
}  // namespace thaw::auth
namespace thaw::dispatch {
class Dispatcher;
}

namespace thaw::gateway {

namespace asio = boost::asio;

struct InvokeRequest {
  std::string function;
  std::string qualifier;  // empty, $LATEST, a version number or an alias
  std::string payload;
  std::string client_context;  // Lambda-Runtime-Client-Context for the runtime, as is
  std::string request_id;
  // The caller forwards a streamed answer (Result::sink) as it comes; otherwise a function
  // that streams is collected into one body, as Lambda's Invoke does (max_response_bytes).
  bool streams = false;
  // Forwarded by another node of the cluster (it showed the cluster token), which holds the
  // call's tenant slot: admitted here on the budget and reserved concurrency alone.
  bool forwarded = false;
  // Called with the pool the call goes to, just before it is submitted there (jobs keep it to
  // cancel the call: FunctionPool::Cancel).
  std::function<void(const std::shared_ptr<pool::FunctionPool>&)> on_pool = nullptr;
};

struct InvokeOutcome {
  pool::Result result;
  std::shared_ptr<const registry::Version> version;
  bool latest = false;          // resolved through $LATEST
  std::string throttle_reason;  // with Kind::kThrottled: Lambda's Reason
  int64_t retry_after_s = 1;    // with Kind::kThrottled
  bool over_budget = false;     // with Kind::kThrottled: the tenant's budget is spent (402)
  std::string budget_warning;   // 80% or more of the tenant's monthly budget is spent
  // With a streamed result: the call's concurrency slots (tenant, reserved), held until this
  // outcome is dropped, once the face has forwarded the stream's end.
  std::shared_ptr<void> hold;
};

// How an Event invocation is retried: Lambda's defaults, a function's event invoke config
// narrows them.
struct RetryPolicy {
  int64_t base_ms = 1000;                    // the first retry's delay; later ones grow from it
  int max_attempts = 3;                      // after function errors: the first try and two retries
  int64_t max_age_us = 21600LL * 1'000'000;  // no try starts past this age
};

// Event invocations: how long to wait before trying again after `attempts` tries that ended
// in `kind`, the event being `age_us` old, or nullopt when done. Function errors get
// policy.max_attempts tries (base, 2 x base apart), throttles a few minutes of backoff; no retry
// is due past the event's maximum age. Pure.
std::optional<int64_t> AsyncRetryDelayMs(pool::Result::Kind kind, int attempts,
                                         const RetryPolicy& policy = {}, int64_t age_us = 0);

// The request id of an event's try: the event's own for the first, derived for the others
// (the meter bills each try, keyed by request id), the same for a try re-run after a crash.
std::string AttemptRequestId(const std::string& request_id, int attempt);

// An Event destination as a user writes it for function `source` (internal name): an http(s)
// URL, a function's name, NAME:QUALIFIER or ARN, always of the source's tenant. Returns it as
// stored (queue::InvokeConfig): the URL, or the destination's internal name[:qualifier].
// InvalidArgument for anything else (another account, SQS/SNS/EventBridge ARNs, the source
// itself). Pure.
StatusOr<std::string> ResolveDestination(const std::string& text, const std::string& source);

// Webhook deliveries: tries before a record is given up (its event then becomes a dead letter
// when it reported a failure).
inline constexpr int kDeliveryAttempts = 8;
// The delay before webhook delivery try `attempts` + 1: base, doubling, at most 60 x base. Pure.
int64_t DeliveryDelayMs(int attempts, int64_t base_ms);

// Event invocations: where they are kept and how far they may pile up.
struct EventOptions {
  queue::EventQueue* queue = nullptr;     // null: in memory only (tests, benchmarks)
  int64_t max_events = 10'000;            // all tenants, shared fairly (dispatch/fair_share.h)
  int64_t max_function_events = 100'000;  // per function (429 past it)
  int64_t retry_base_ms = 1000;           // also the first webhook retry's delay
  std::string region = "us-east-1";       // for the ARNs in invocation records
  const auth::KeyStore* keys = nullptr;   // signs webhook deliveries (null: unsigned, tests)
  int64_t webhook_timeout_ms = 10'000;
  bool webhook_private_addresses = false;  // webhooks may post to internal addresses
};

// The X-Thaw-* headers every invoke answer carries: version, cold start, init and billed time,
// and the tenant's budget warning.
void SetInvokeHeaders(const InvokeOutcome& outcome, Response& res);
// The HTTP status of a refused (Kind::kThrottled) invocation, with Retry-After set on `res`.
http::status RefusalStatus(const InvokeOutcome& outcome, Response& res);

class Invoker {
 public:
  // Limit of the in-memory Event queue's payload bytes (events waiting or running).
  static constexpr int64_t kMaxQueuedBytes = 256LL << 20;

  // `dispatcher` admits calls (null: one of the invoker's own, without tenant limits).
  Invoker(registry::Registry* registry, pool::PoolManager* pools, meter::Meter* meter,
          dispatch::Dispatcher* dispatcher, EventOptions events,
          int64_t max_response_bytes = 6 << 20);
  ~Invoker();

  // A resolution failure (unknown function or qualifier) is the error status; anything that
  // happens once resolved is in the outcome's Result.
  asio::awaitable<StatusOr<InvokeOutcome>> Invoke(InvokeRequest req);
  // Checks that the function and qualifier resolve, commits `req` to the durable queue, then
  // runs it in the background on `executor`, retrying as AsyncRetryDelayMs says; each try is
  // metered under AttemptRequestId. ResourceExhausted when the queue or the function's share
  // is full; once this returns ok, a crash loses nothing (queue/event_queue.h). The commit is
  // awaited, not waited for: the thread serves other requests meanwhile, whose enqueues then
  // share the next commit.
  asio::awaitable<Status> Enqueue(InvokeRequest req, asio::any_io_executor executor);
  // At start: runs what the durable queue held when the server last stopped (its own events,
  // and those of nodes whose lease has passed), and posts the webhook deliveries it held. On a
  // shared store it then keeps this node's lease and takes over dead nodes' events on a tick
  // (a quarter of the lease, at most 500 ms), as many as the Event queue has room for.
  [[nodiscard]] Status Resume(asio::any_io_executor executor);
  // Whether this node shares its store with others (PostgreSQL) and keeps a lease there.
  bool SharesStore() const { return events_.queue != nullptr && events_.queue->shared(); }
  // On a shared store: `tick` runs on the executor after each renewal of this node's lease, with
  // the wall clock it renewed at (JobsApi takes over dead nodes' jobs there).
  void OnLeaseTick(std::function<void(int64_t now_us)> tick);
  // Queues `function`'s dead letters again (queue::EventQueue::Redrive) and runs them; the
  // number redriven. ResourceExhausted when they would pass max_queued_events.
  [[nodiscard]] StatusOr<int64_t> Redrive(const std::string& function,
                                          const std::vector<std::string>& request_ids,
                                          asio::any_io_executor executor);
  int64_t queued_events() const;
  registry::Registry* registry() const { return registry_; }
  queue::EventQueue* event_queue() const { return events_.queue; }

 private:
  struct State;
  struct Job {
    InvokeRequest req;
    int64_t id = 0;          // in the durable queue (0: none)
    int attempts = 0;        // tries already made
    int64_t next_at_us = 0;  // wall clock
    int64_t created_us = 0;
    int attempts_before = 0;  // tries made before the last redrive
  };
  // What the last try of an event came to, for its invocation record.
  struct LastTry;
  static asio::awaitable<void> RunEvent(Invoker* self, std::shared_ptr<State> state, Job job);
  static asio::awaitable<void> RunDelivery(Invoker* self, queue::Delivery delivery);
  static asio::awaitable<void> LeaseLoop(Invoker* self, asio::any_io_executor executor);
  // Takes `req`'s slot in the Event queue (its shares, max_queued_events, the bytes limit).
  Status Admit(const InvokeRequest& req);
  // Commits the end of `job` with its destination's record, then starts that delivery.
  asio::awaitable<void> FinishEvent(const Job& job, int attempts, bool succeeded,
                                    const std::string& condition, const LastTry& last,
                                    asio::any_io_executor executor);
  // Starts a queued event (recovered, redriven or forwarded) that already holds its slot.
  void StartJob(queue::Event event, asio::any_io_executor executor);
  queue::InvokeConfig ConfigFor(const InvokeRequest& req) const;
  RetryPolicy PolicyFor(const queue::InvokeConfig& config) const;

  // Fills `out` as refused with `reason` and meters a throttled record.
  void Refuse(InvokeOutcome& out, const InvokeRequest& req, const std::string& reason,
              const std::string& message);

  registry::Registry* const registry_;
  pool::PoolManager* const pools_;
  meter::Meter* const meter_;
  std::unique_ptr<dispatch::Dispatcher> own_dispatcher_;  // when none was given
  dispatch::Dispatcher* const dispatcher_;
  const EventOptions events_;
  const int64_t max_response_bytes_;
  std::shared_ptr<State> state_;
  std::mutex lease_ticks_mu_;
  std::vector<std::function<void(int64_t)>> lease_ticks_;  // guarded by lease_ticks_mu_
};

}  // namespace thaw::gateway

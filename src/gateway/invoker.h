// Invoker: the invoke path both API faces share. It resolves a function and qualifier (an
// alias picks among its versions by weight), holds the function to its reserved concurrency,
// runs the call on that version's pool, and runs Lambda Event (asynchronous) invocations from
// an in-memory queue with retries. Owned by Api; thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>

#include "gateway/http_server.h"
#include "pool/pool.h"

namespace thaw::meter {
class Meter;
}
namespace thaw::auth {
class TenantGate;
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

// Event invocations: how long to wait before trying again after `attempts` tries that ended
// in `kind`, or nullopt when done. Function errors get two retries (as Lambda), throttles a
// few minutes of backoff. Pure.
std::optional<int64_t> AsyncRetryDelayMs(pool::Result::Kind kind, int attempts);

// The X-Thaw-* headers every invoke answer carries: version, cold start, init and billed time,
// and the tenant's budget warning.
void SetInvokeHeaders(const InvokeOutcome& outcome, Response& res);
// The HTTP status of a refused (Kind::kThrottled) invocation, with Retry-After set on `res`.
http::status RefusalStatus(const InvokeOutcome& outcome, Response& res);

class Invoker {
 public:
  // Limit of the in-memory Event queue's payload bytes (events waiting or running).
  static constexpr int64_t kMaxQueuedBytes = 256LL << 20;

  // `gate` (may be null) holds tenants to their limits. `max_events` bounds the Event queue,
  // shared fairly between tenants and their functions (dispatch/fair_share.h).
  Invoker(registry::Registry* registry, pool::PoolManager* pools, meter::Meter* meter,
          auth::TenantGate* gate, int64_t max_events, int64_t max_response_bytes = 6 << 20);
  ~Invoker();

  // A resolution failure (unknown function or qualifier) is the error status; anything that
  // happens once resolved is in the outcome's Result.
  asio::awaitable<StatusOr<InvokeOutcome>> Invoke(InvokeRequest req);
  // Checks that the function and qualifier resolve, then runs `req` in the background on
  // `executor`, retrying as AsyncRetryDelayMs says; each try is metered under its own request
  // id (the first is req.request_id). ResourceExhausted when the queue is full. Events still
  // waiting when the server stops are lost.
  Status Enqueue(InvokeRequest req, asio::any_io_executor executor);
  int64_t queued_events() const;

 private:
  struct State;
  static asio::awaitable<void> RunEvent(Invoker* self, std::shared_ptr<State> state,
                                        InvokeRequest req);

  // Fills `out` as refused with `reason` and meters a throttled record.
  void Refuse(InvokeOutcome& out, const InvokeRequest& req, const std::string& reason,
              const std::string& message);

  registry::Registry* const registry_;
  pool::PoolManager* const pools_;
  meter::Meter* const meter_;
  auth::TenantGate* const gate_;
  const int64_t max_events_;
  const int64_t max_response_bytes_;
  std::shared_ptr<State> state_;
};

}  // namespace thaw::gateway

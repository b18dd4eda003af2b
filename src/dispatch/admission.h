// Admission: the one decision of whether, and where, a synchronous call may run. It walks the
// limits in a fixed order: the tenant's monthly budget, its invocations running at once, its
// request rate (a token bucket, bursts up to one second's worth), the function's reserved
// concurrency, then the version's instances and queue (pool/policy.h) and the node's memory.
// Pure: a function of (state snapshot, call, now) that returns the decision and the counters
// as they are after it; Dispatcher (dispatcher.h) owns the counters and applies it. No I/O, no
// clock reads, no locks: tested with tables of cases (tests/admission_test.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "auth/keys.h"
#include "pool/policy.h"

namespace thaw::dispatch {

// Months since 1970-01 (UTC) of a wall-clock time, and the microsecond a month starts at.
int64_t MonthIndex(int64_t wall_us);
int64_t MonthStartMicros(int64_t month_index);

// What is remembered of a tenant between calls. Its limits are not here: they are stored once,
// in the key store (auth/keys.h), and passed in with each decision.
struct TenantCounters {
  int64_t inflight = 0;     // admitted calls not yet released
  double tokens = 0;        // the rate bucket
  int64_t refilled_us = 0;  // 0: the bucket was never used (it starts full)
  // The rate the bucket was filled for: a changed limit starts it full at the new rate.
  std::optional<int64_t> rate_seen;
  int64_t month = -1;      // MonthIndex of spent_pico
  int64_t spent_pico = 0;  // sub-micro amounts add up: $0.20 per million requests
  bool warned = false;     // the 80% budget warning was logged this month
  // The budget `warned` is about: a changed budget warns again.
  std::optional<int64_t> budget_seen;
};

// The version's part: its pool's instances and queue, and whether the node has memory for
// one more instance.
struct VersionState {
  pool::PoolView pool;
  pool::Limits limits;
  bool memory_room = true;
};

struct AdmissionState {
  auth::TenantLimits limits;  // the tenant's (absent limits are not enforced)
  TenantCounters tenant;
  // Reserved concurrency R of the function: at most R x concurrency of its calls run at once
  // over all its versions. Absent: no reservation.
  std::optional<int64_t> reserved_cap;
  int64_t reserved_inflight = 0;
  // Absent: the call is admitted or refused on the tenant and function limits alone (the
  // gateway's half, before it knows which pool serves it).
  std::optional<VersionState> version;
  // In a cluster: this node's shares of the tenant's concurrency and rate limits
  // (dispatch/share_split.h), which bound it in place of the whole limits; a limit the tenant
  // does not have is not enforced whatever its share. Absent: the whole limit (one node).
  std::optional<int64_t> concurrency_share;
  std::optional<int64_t> rate_share;
};

struct CallRequest {
  std::string_view tenant;
  std::string_view function;
  // An Event (asynchronous) invocation being queued: only the budget applies now; the limits
  // apply again when it runs.
  bool budget_only = false;
  // Forwarded here by another node of the cluster, which admitted it against its own shares of
  // the tenant's limits and holds its tenant slot while it runs here: the budget and the
  // reserved concurrency apply, and the tenant's concurrency and rate are neither checked nor
  // counted here.
  bool tenant_held_elsewhere = false;
};

enum class RejectReason {
  kNone,
  kTenantBudget,       // 402: the tenant's monthly budget is spent
  kTenantConcurrency,  // 429
  kTenantRate,         // 429
  kReservedConcurrency,
  kQueueFull,  // the version's instances are at max_instances and its queue is full
  kMemory,     // the node's memory budget has no room for the instance the call needs
};
const char* RejectReasonName(RejectReason reason);

struct Decision {
  enum class Kind {
    kAdmit,     // within the tenant and function limits (no version state was given)
    kDispatch,  // run now on `instance_id`
    kStart,     // wait, and start one more instance (a cold start)
    kQueue,     // wait: a slot is coming (a starting or busy instance)
    kReject,    // refused: `reason` says by which limit
  };
  Kind kind = Kind::kReject;
  RejectReason reason = RejectReason::kNone;
  uint64_t instance_id = 0;  // with kDispatch
  std::string message;       // with a tenant's kReject: the limit, its value, when to retry
  int64_t retry_after_s = 0;
  std::string budget_warning;  // 80% or more of the tenant's budget is spent
  bool first_warning = false;  // the first warning this month: worth a log line
  // The counters once the decision is applied: an admitted call holds a tenant slot and, under
  // a reservation, a function slot; the bucket is refilled to `now` (and a token taken when
  // admitted); the month rolled over. A refusal takes nothing.
  TenantCounters tenant;
  int64_t reserved_inflight = 0;

  bool admitted() const { return kind != Kind::kReject; }
};

// The decision for `call` at wall time `now_us` (the rate bucket and the budget's month are
// wall-clock). Pure.
Decision Admit(const AdmissionState& state, const CallRequest& call, int64_t now_us);

// Adds the cost of a call that started at `start_us` to `tenant`'s month; spend of an earlier
// month than the one tracked is ignored. Pure.
TenantCounters AddSpend(TenantCounters tenant, int64_t start_us, int64_t pico);

// Whether the oldest waiting call has waited past the queue timeout: it is refused then,
// unless the only instances are still starting (it waits for their init, bounded by the init
// timeout). Pure.
bool QueueTimedOut(int64_t arrived_us, bool any_ready, bool any_starting, int64_t timeout_us,
                   int64_t now_us);

}  // namespace thaw::dispatch

#include "dispatch/admission.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>

#include "meter/cost.h"

namespace thaw::dispatch {
namespace {

using std::chrono::sys_days;
using std::chrono::year_month_day;

constexpr int64_t kMicrosPerSecond = 1'000'000;
constexpr int64_t kPicoPerMicro = 1'000'000;

void RollMonth(TenantCounters& t, int64_t now_us) {
  const int64_t month = MonthIndex(now_us);
  if (t.month == month) return;
  t.month = month;
  t.spent_pico = 0;
  t.warned = false;
}

Decision Refuse(Decision d, RejectReason reason, int64_t retry_after_s, std::string message) {
  d.kind = Decision::Kind::kReject;
  d.reason = reason;
  d.retry_after_s = retry_after_s;
  d.message = std::move(message);
  d.budget_warning.clear();
  d.first_warning = false;
  return d;
}

// The budget: refuses once the month's spend reaches it, warns from 80%.
bool CheckBudget(const auth::TenantLimits& limits, std::string_view tenant, int64_t now_us,
                 Decision& d) {
  TenantCounters& t = d.tenant;
  if (t.budget_seen != limits.monthly_budget_micros) {
    t.budget_seen = limits.monthly_budget_micros;
    t.warned = false;
  }
  if (!limits.monthly_budget_micros) return true;
  RollMonth(t, now_us);
  const int64_t budget = *limits.monthly_budget_micros;
  const int64_t budget_pico = budget * kPicoPerMicro;
  if (t.spent_pico >= budget_pico) {
    const int64_t next = MonthStartMicros(t.month + 1);
    d = Refuse(std::move(d), RejectReason::kTenantBudget,
               std::max<int64_t>(1, (next - now_us + kMicrosPerSecond - 1) / kMicrosPerSecond),
               "tenant " + std::string(tenant) + " has spent its monthly budget of " +
                   meter::FormatDollars(budget) + " (" +
                   meter::FormatDollars(t.spent_pico / kPicoPerMicro) +
                   " so far); invocations resume when the month ends or the budget is raised");
    return false;
  }
  if (t.spent_pico * 10 >= budget_pico * 8) {
    d.first_warning = !t.warned;
    t.warned = true;
    d.budget_warning = std::to_string(t.spent_pico * 100 / budget_pico) +
                       "% of the monthly budget of " + meter::FormatDollars(budget) + " is spent";
  }
  return true;
}

// The rate bucket, refilled to `now_us`; takes no token (the caller does once admitted). The
// bucket fills at `rate_share` when set (this node's part of the limit); a changed share keeps
// the tokens it has (at most the new share), a changed limit starts the bucket full.
bool CheckRate(const auth::TenantLimits& limits, std::optional<int64_t> rate_share,
               std::string_view tenant, int64_t now_us, Decision& d) {
  TenantCounters& t = d.tenant;
  if (t.rate_seen != limits.rate_per_second) {
    t.rate_seen = limits.rate_per_second;
    t.tokens = static_cast<double>(
        std::min(limits.rate_per_second.value_or(0), rate_share.value_or(INT64_MAX)));
    t.refilled_us = 0;
  }
  if (!limits.rate_per_second) return true;
  const double rate = static_cast<double>(
      std::max<int64_t>(0, std::min(*limits.rate_per_second, rate_share.value_or(INT64_MAX))));
  if (t.refilled_us == 0) {
    t.tokens = rate;
  } else if (now_us > t.refilled_us) {
    t.tokens = std::min(
        rate, t.tokens + rate * static_cast<double>(now_us - t.refilled_us) / kMicrosPerSecond);
  }
  t.tokens = std::min(t.tokens, rate);
  t.refilled_us = std::max(t.refilled_us, now_us);
  if (t.tokens >= 1.0) return true;
  const int64_t retry_s =
      rate > 0 ? std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - t.tokens) / rate))) : 1;
  d = Refuse(std::move(d), RejectReason::kTenantRate, retry_s,
             "tenant " + std::string(tenant) + " is over its rate limit of " +
                 std::to_string(*limits.rate_per_second) + " requests per second");
  return false;
}

// The version's instances and queue: the pool's placement, then the node's memory.
Decision Place(const VersionState& v, Decision d) {
  const pool::Admission a = pool::Admit(v.pool, v.limits);
  switch (a.kind) {
    case pool::Admission::Kind::kDispatch:
      d.kind = Decision::Kind::kDispatch;
      d.instance_id = a.instance_id;
      return d;
    case pool::Admission::Kind::kQueueAndStart:
      if (v.memory_room) {
        d.kind = Decision::Kind::kStart;
        return d;
      }
      // No room for another instance, but the version's own will serve it: wait for them.
      if (!v.pool.instances.empty()) {
        d.kind = Decision::Kind::kQueue;
        return d;
      }
      return Refuse(std::move(d), RejectReason::kMemory, 1, "");
    case pool::Admission::Kind::kQueue:
      d.kind = Decision::Kind::kQueue;
      return d;
    case pool::Admission::Kind::kReject:
      break;
  }
  return Refuse(std::move(d), RejectReason::kQueueFull, 1, "");
}

}  // namespace

int64_t MonthIndex(int64_t wall_us) {
  const auto tp =
      std::chrono::sys_time<std::chrono::microseconds>(std::chrono::microseconds(wall_us));
  const year_month_day ymd{std::chrono::floor<std::chrono::days>(tp)};
  return (static_cast<int>(ymd.year()) - 1970) * 12 +
         static_cast<int64_t>(static_cast<unsigned>(ymd.month())) - 1;
}

int64_t MonthStartMicros(int64_t month_index) {
  const year_month_day first{std::chrono::year(static_cast<int>(1970 + month_index / 12)),
                             std::chrono::month(static_cast<unsigned>(month_index % 12 + 1)),
                             std::chrono::day(1)};
  return std::chrono::duration_cast<std::chrono::microseconds>(sys_days(first).time_since_epoch())
      .count();
}

const char* RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kTenantBudget:
      return "tenant budget";
    case RejectReason::kTenantConcurrency:
      return "tenant concurrency";
    case RejectReason::kTenantRate:
      return "tenant rate";
    case RejectReason::kReservedConcurrency:
      return "reserved concurrency";
    case RejectReason::kQueueFull:
      return "queue full";
    case RejectReason::kMemory:
      return "memory";
  }
  return "?";
}

Decision Admit(const AdmissionState& state, const CallRequest& call, int64_t now_us) {
  Decision d;
  d.kind = Decision::Kind::kAdmit;
  d.tenant = state.tenant;
  d.reserved_inflight = state.reserved_inflight;
  const auth::TenantLimits& limits = state.limits;
  if (!CheckBudget(limits, call.tenant, now_us, d)) return d;
  if (call.budget_only) return d;
  const bool tenant_here = !call.tenant_held_elsewhere;
  if (tenant_here && limits.concurrency &&
      d.tenant.inflight >=
          std::min(*limits.concurrency, state.concurrency_share.value_or(*limits.concurrency))) {
    return Refuse(std::move(d), RejectReason::kTenantConcurrency, 1,
                  "tenant " + std::string(call.tenant) + " is at its concurrency limit of " +
                      std::to_string(*limits.concurrency) +
                      " invocations running at once; retry after one finishes");
  }
  if (tenant_here && !CheckRate(limits, state.rate_share, call.tenant, now_us, d)) return d;
  if (state.reserved_cap && d.reserved_inflight >= *state.reserved_cap) {
    return Refuse(std::move(d), RejectReason::kReservedConcurrency, 1, "Rate Exceeded.");
  }
  if (state.version) {
    d = Place(*state.version, std::move(d));
    if (!d.admitted()) return d;
  }
  if (tenant_here) {
    if (limits.rate_per_second) d.tenant.tokens -= 1.0;
    ++d.tenant.inflight;
  }
  if (state.reserved_cap) ++d.reserved_inflight;
  return d;
}

TenantCounters AddSpend(TenantCounters t, int64_t start_us, int64_t pico) {
  const int64_t month = MonthIndex(start_us);
  if (month < t.month) return t;
  if (month > t.month) {
    t.month = month;
    t.spent_pico = 0;
    t.warned = false;
  }
  t.spent_pico += pico;
  return t;
}

bool QueueTimedOut(int64_t arrived_us, bool any_ready, bool any_starting, int64_t timeout_us,
                   int64_t now_us) {
  return (any_ready || !any_starting) && now_us - arrived_us >= timeout_us;
}

}  // namespace thaw::dispatch

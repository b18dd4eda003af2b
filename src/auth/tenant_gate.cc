#include "auth/tenant_gate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "meter/cost.h"

namespace thaw::auth {
namespace {

using std::chrono::sys_days;
using std::chrono::year_month_day;

constexpr int64_t kMicrosPerSecond = 1'000'000;
constexpr int64_t kPicoPerMicro = 1'000'000;

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

void TenantGate::SetLimits(const std::string& tenant, const TenantLimits& limits) {
  std::lock_guard lock(mu_);
  State& s = tenants_[tenant];
  const bool rate_changed = s.limits.rate_per_second != limits.rate_per_second;
  s.limits = limits;
  if (rate_changed) {
    s.tokens = static_cast<double>(limits.rate_per_second.value_or(0));
    s.refilled_us = 0;
  }
  s.warned = false;
}

void TenantGate::Remove(const std::string& tenant) {
  std::lock_guard lock(mu_);
  tenants_.erase(tenant);
}

TenantGate::State& TenantGate::StateLocked(std::string_view tenant) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) it = tenants_.emplace(std::string(tenant), State{}).first;
  return it->second;
}

void TenantGate::RollMonthLocked(State& s, int64_t now_us) {
  const int64_t month = MonthIndex(now_us);
  if (s.month == month) return;
  s.month = month;
  s.spent_pico = 0;
  s.warned = false;
}

Admission TenantGate::BudgetLocked(std::string_view tenant, State& s, int64_t now_us) {
  Admission a;
  if (!s.limits.monthly_budget_micros) return a;
  RollMonthLocked(s, now_us);
  const int64_t budget = *s.limits.monthly_budget_micros;
  const int64_t budget_pico = budget * kPicoPerMicro;
  const int64_t spent = s.spent_pico / kPicoPerMicro;
  if (s.spent_pico >= budget_pico) {
    const int64_t next = MonthStartMicros(s.month + 1);
    a.verdict = Admission::Verdict::kBudget;
    a.retry_after_s =
        std::max<int64_t>(1, (next - now_us + kMicrosPerSecond - 1) / kMicrosPerSecond);
    a.message = "tenant " + std::string(tenant) + " has spent its monthly budget of " +
                meter::FormatDollars(budget) + " (" + meter::FormatDollars(spent) +
                " so far); invocations resume when the month ends or the budget is raised";
    return a;
  }
  if (s.spent_pico * 10 >= budget_pico * 8) {
    a.first_warning = !s.warned;
    s.warned = true;
    a.budget_warning = std::to_string(s.spent_pico * 100 / budget_pico) +
                       "% of the monthly budget of " + meter::FormatDollars(budget) + " is spent";
  }
  return a;
}

Admission TenantGate::Admit(std::string_view tenant, int64_t now_us) {
  std::lock_guard lock(mu_);
  State& s = StateLocked(tenant);
  Admission a = BudgetLocked(tenant, s, now_us);
  if (!a.admitted()) return a;
  if (s.limits.concurrency && s.inflight >= *s.limits.concurrency) {
    a.verdict = Admission::Verdict::kConcurrency;
    a.retry_after_s = 1;
    a.message = "tenant " + std::string(tenant) + " is at its concurrency limit of " +
                std::to_string(*s.limits.concurrency) +
                " invocations running at once; retry after one finishes";
    return a;
  }
  if (s.limits.rate_per_second) {
    const double rate = static_cast<double>(*s.limits.rate_per_second);
    if (s.refilled_us == 0) {
      s.tokens = rate;
    } else if (now_us > s.refilled_us) {
      s.tokens = std::min(
          rate, s.tokens + rate * static_cast<double>(now_us - s.refilled_us) / kMicrosPerSecond);
    }
    s.refilled_us = std::max(s.refilled_us, now_us);
    if (s.tokens < 1.0) {
      a.verdict = Admission::Verdict::kRate;
      a.retry_after_s =
          std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - s.tokens) / rate)));
      a.message = "tenant " + std::string(tenant) + " is over its rate limit of " +
                  std::to_string(*s.limits.rate_per_second) + " requests per second";
      return a;
    }
    s.tokens -= 1.0;
  }
  ++s.inflight;
  return a;
}

void TenantGate::Release(std::string_view tenant) {
  std::lock_guard lock(mu_);
  auto it = tenants_.find(tenant);
  if (it != tenants_.end() && it->second.inflight > 0) --it->second.inflight;
}

Admission TenantGate::CheckBudget(std::string_view tenant, int64_t now_us) {
  std::lock_guard lock(mu_);
  return BudgetLocked(tenant, StateLocked(tenant), now_us);
}

void TenantGate::AddSpend(std::string_view tenant, int64_t start_us, int64_t pico) {
  std::lock_guard lock(mu_);
  State& s = StateLocked(tenant);
  const int64_t month = MonthIndex(start_us);
  if (month < s.month) return;
  if (month > s.month) {
    s.month = month;
    s.spent_pico = 0;
    s.warned = false;
  }
  s.spent_pico += pico;
}

int64_t TenantGate::SpentMicros(std::string_view tenant, int64_t now_us) {
  std::lock_guard lock(mu_);
  State& s = StateLocked(tenant);
  RollMonthLocked(s, now_us);
  return s.spent_pico / kPicoPerMicro;
}

int64_t TenantGate::inflight(std::string_view tenant) {
  std::lock_guard lock(mu_);
  return StateLocked(tenant).inflight;
}

}  // namespace thaw::auth

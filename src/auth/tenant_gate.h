// TenantGate: holds each tenant to its limits on the invoke path: invocations running at once,
// a request rate (token bucket, refilled continuously, bursts up to one second's worth) and a
// monthly budget (month-to-date spend in USD micro-units, fed from the meter's records; the
// calendar month is UTC). Pure logic with the time passed in; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "auth/keys.h"

namespace thaw::auth {

// Months since 1970-01 (UTC) of a wall-clock time, and the microsecond a month starts at.
int64_t MonthIndex(int64_t wall_us);
int64_t MonthStartMicros(int64_t month_index);

struct Admission {
  enum class Verdict { kAdmitted, kConcurrency, kRate, kBudget };
  Verdict verdict = Verdict::kAdmitted;
  std::string message;         // which limit, its value, and when to retry
  int64_t retry_after_s = 0;   // for the Retry-After header
  std::string budget_warning;  // set once 80% of the budget is spent
  bool first_warning = false;  // the first warning this month: worth a log line
  bool admitted() const { return verdict == Verdict::kAdmitted; }
};

class TenantGate {
 public:
  void SetLimits(const std::string& tenant, const TenantLimits& limits);
  void Remove(const std::string& tenant);

  // Admits one invocation of `tenant` at wall time `now_us` or says which limit refuses it.
  // An admitted invocation holds a concurrency slot until Release.
  Admission Admit(std::string_view tenant, int64_t now_us);
  void Release(std::string_view tenant);
  // The budget alone (Event invocations are refused up front once it is spent).
  Admission CheckBudget(std::string_view tenant, int64_t now_us);

  // Adds the cost of an invocation that started at `start_us`; spend of an earlier month
  // than the one tracked is ignored.
  void AddSpend(std::string_view tenant, int64_t start_us, int64_t pico);
  int64_t SpentMicros(std::string_view tenant, int64_t now_us);
  int64_t inflight(std::string_view tenant);

 private:
  struct State {
    TenantLimits limits;
    int64_t inflight = 0;
    double tokens = 0;
    int64_t refilled_us = 0;
    int64_t month = -1;
    int64_t spent_pico = 0;  // sub-micro amounts add up: $0.20 per million requests
    bool warned = false;
  };
  State& StateLocked(std::string_view tenant);
  void RollMonthLocked(State& s, int64_t now_us);
  Admission BudgetLocked(std::string_view tenant, State& s, int64_t now_us);

  std::mutex mu_;
  std::map<std::string, State, std::less<>> tenants_;  // guarded by mu_
};

}  // namespace thaw::auth

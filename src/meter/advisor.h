// Advisor: given one function's traffic over a window and the price sheet, says whether it is
// cheaper to stay serverless, keep a few instances warm, or move to always-on instances, with
// the numbers behind it. A pure function; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "meter/cost.h"

namespace thaw::meter {

// Cold starts are "frequent" from this share of invocations (percent)...
inline constexpr int64_t kColdStartPercentForWarm = 5;
// ...and N warm instances "cost little" when they add at most this percent to the bill.
inline constexpr int64_t kWarmCostPercentOfBill = 100;

struct AdviceInput {
  Sums sums;                         // the function's traffic over the window
  int64_t window_us = 0;             // length of the window
  int64_t memory_mb = 0;             // configured memory (largest seen), for warm instances
  int64_t busiest_hour_busy_us = 0;  // sum of durations started in the busiest UTC hour
  int64_t gpu_count = 0;             // GPUs each instance holds (manifest gpu.count)
};

enum class Recommendation { kStayServerless, kMinInstances, kAlwaysOn };

struct Advice {
  Recommendation recommendation = Recommendation::kStayServerless;
  std::string text;                   // "stay serverless", "set min_instances: N", ...
  std::string reason;                 // why, in one sentence
  int64_t instances = 1;              // always-on instances needed (Little's law), at least 1
  double peak_concurrency = 0;        // busiest hour: arrival rate x mean duration
  int64_t serverless_cost_micro = 0;  // Lambda sheet
  // instances x (hourly price + gpu_count GPU-hours) x window
  int64_t always_on_cost_micro = 0;
  // `instances` kept warm at the GB-s price, and their GPUs at the GPU-s price, over the window
  int64_t warm_cost_micro = 0;
  double cold_start_percent = 0;
  double mean_rps = 0;        // invocations / window
  double break_even_rps = 0;  // serverless cost = always-on cost; 0 when there is no traffic
};

// Sum of durations of samples started in the busiest UTC clock hour (most busy time).
int64_t BusiestHourBusyUs(const std::vector<Sample>& samples);
Advice Advise(const AdviceInput& in, const PriceSheet& prices);
const char* RecommendationName(Recommendation r);  // stay_serverless | min_instances | always_on

}  // namespace thaw::meter

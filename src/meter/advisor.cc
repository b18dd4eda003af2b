#include "meter/advisor.h"

#include <map>

namespace thaw::meter {
namespace {

using Int128 = __int128;
constexpr int64_t kUsPerHour = 3'600'000'000;
constexpr int64_t kUsPerS = 1'000'000;
constexpr int64_t kPicoPerMicro = 1'000'000;

int64_t DivRoundHalfUp(Int128 num, Int128 den) {
  return static_cast<int64_t>((num * 2 + den) / (den * 2));
}

}  // namespace

int64_t BusiestHourBusyUs(const std::vector<Sample>& samples) {
  std::map<int64_t, int64_t> busy;
  int64_t best = 0;
  for (const Sample& s : samples) {
    if (s.status == "gpu_idle") continue;  // held, not busy
    int64_t& b = busy[s.start_us / kUsPerHour];
    b += s.duration_us;
    best = std::max(best, b);
  }
  return best;
}

const char* RecommendationName(Recommendation r) {
  switch (r) {
    case Recommendation::kStayServerless:
      return "stay_serverless";
    case Recommendation::kMinInstances:
      return "min_instances";
    case Recommendation::kAlwaysOn:
      return "always_on";
  }
  return "stay_serverless";
}

Advice Advise(const AdviceInput& in, const PriceSheet& prices) {
  Advice a;
  const int64_t n = in.sums.invocations;
  // Little's law over the busiest hour: concurrency = (requests / hour) x mean duration
  // = busy time in that hour / one hour.
  a.peak_concurrency = static_cast<double>(in.busiest_hour_busy_us) / kUsPerHour;
  a.instances = std::max<int64_t>(1, (in.busiest_hour_busy_us + kUsPerHour - 1) / kUsPerHour);
  a.serverless_cost_micro = LambdaCostMicro(in.sums, prices);
  // An always-on GPU server holds its GPUs all the time: priced per GPU-second, like thaw's.
  const Int128 hour_pico = Int128{prices.instance_hour_micro} * kPicoPerMicro +
                           Int128{in.gpu_count} * prices.gpu_second_pico * 3600;
  a.always_on_cost_micro = DivRoundHalfUp(Int128{a.instances} * hour_pico * in.window_us,
                                          Int128{kUsPerHour} * kPicoPerMicro);
  a.warm_cost_micro = DivRoundHalfUp(Int128{a.instances} * in.window_us *
                                         (Int128{in.memory_mb} * prices.gb_second_pico +
                                          Int128{in.gpu_count} * prices.gpu_second_pico * 1024),
                                     Int128{1024} * kUsPerS * kUsPerS);
  if (in.window_us > 0) a.mean_rps = static_cast<double>(n) * kUsPerS / in.window_us;
  if (n > 0) a.cold_start_percent = 100.0 * in.sums.cold_starts / n;
  // From the unrounded bill, so tiny bills do not skew the rate.
  const double serverless_pico =
      static_cast<double>(n) * static_cast<double>(prices.request_pico) +
      static_cast<double>(in.sums.billed_mb_ms) * static_cast<double>(prices.gb_second_pico) /
          1'024'000.0 +
      static_cast<double>(in.sums.gpu_us) * static_cast<double>(prices.gpu_second_pico) / 1e6;
  if (n > 0 && serverless_pico > 0) {
    // rate x (cost per request) = instances x hourly price / 3600 s.
    a.break_even_rps = static_cast<double>(a.instances) * static_cast<double>(hour_pico) * n /
                       (3600.0 * serverless_pico);
  }

  if (n == 0) {
    a.recommendation = Recommendation::kStayServerless;
    a.text = "stay serverless";
    a.reason = "no traffic in the window: serverless costs nothing while idle";
  } else if (a.always_on_cost_micro < a.serverless_cost_micro) {
    a.recommendation = Recommendation::kAlwaysOn;
    a.text = "move to an always-on deployment";
    a.reason = std::to_string(a.instances) + " always-on instance(s) cost " +
               FormatDollars(a.always_on_cost_micro) + " against " +
               FormatDollars(a.serverless_cost_micro) + " serverless";
  } else if (in.sums.cold_starts * 100 >= kColdStartPercentForWarm * n &&
             a.warm_cost_micro * 100 <= kWarmCostPercentOfBill * a.serverless_cost_micro) {
    a.recommendation = Recommendation::kMinInstances;
    a.text = "set min_instances: " + std::to_string(a.instances);
    a.reason = "cold starts hit " + std::to_string(in.sums.cold_starts) + " of " +
               std::to_string(n) + " calls and " + std::to_string(a.instances) +
               " warm instance(s) cost " + FormatDollars(a.warm_cost_micro);
  } else {
    a.recommendation = Recommendation::kStayServerless;
    a.text = "stay serverless";
    a.reason = "serverless costs " + FormatDollars(a.serverless_cost_micro) + " against " +
               FormatDollars(a.always_on_cost_micro) + " always-on";
  }
  return a;
}

}  // namespace thaw::meter

// GPU-seconds on the bill: each invocation is billed duration x GPUs held, and the rest of the
// time an instance held its GPUs ("gpu_idle" records) too, at price_gpu_second_pico on both
// sheets; the advisor prices warm and always-on GPU instances with their GPUs.
#include <gtest/gtest.h>

#include "meter/advisor.h"
#include "meter/cost.h"

namespace thaw::meter {
namespace {

constexpr int64_t kHourUs = 3'600'000'000;
constexpr int64_t kDayUs = 24 * kHourUs;

TEST(GpuPriceTest, DefaultIsModalsH100RateInPicoDollars) {
  EXPECT_EQ(PriceSheet{}.gpu_second_pico, 1'097'000'000);  // $0.001097 per GPU-second
}

TEST(GpuPriceTest, GpuSecondsAreOnBothSheets) {
  PriceSheet p;
  p.request_pico = 0;
  p.gb_second_pico = 0;
  p.cpu_second_pico = 0;
  p.peak_gb_second_pico = 0;
  Sums s;
  s.invocations = 1;
  s.gpu_us = 1'000'000'000;  // 1000 GPU-seconds: $1.097
  EXPECT_EQ(LambdaCostMicro(s, p), 1'097'000);
  EXPECT_EQ(ActualCostMicro(s, p), 1'097'000);
  s.gpu_us = 0;
  EXPECT_EQ(LambdaCostMicro(s, p), 0);
}

TEST(GpuPriceTest, LambdaSheetIsUnchangedWithoutGpus) {
  // AWS's published example: 3M requests of 1 s at 512 MB: $0.60 + 1.5M GB-s = $25.60.
  Sums s;
  s.invocations = 3'000'000;
  s.billed_mb_ms = int64_t{3'000'000} * 1000 * 512;
  EXPECT_EQ(LambdaCostMicro(s, PriceSheet{}), 25'600'050);
}

TEST(GpuIdleSampleTest, IsBilledButNotAnInvocation) {
  Sums sums;
  Sample run;
  run.status = "success";
  run.duration_us = 2'000'000;
  run.billed_ms = 2000;
  run.memory_mb = 1024;
  run.gpu_us = 2'000'000;
  AddSample(run, sums);
  Sample idle;
  idle.status = "gpu_idle";
  idle.duration_us = 60'000'000;
  idle.gpu_us = 58'000'000;
  AddSample(idle, sums);
  EXPECT_EQ(sums.invocations, 1);
  EXPECT_EQ(sums.gpu_us, 60'000'000);
  EXPECT_EQ(sums.gpu_idle_us, 58'000'000);
  EXPECT_EQ(sums.duration_us, 2'000'000);  // idle time is not invocation time
  EXPECT_EQ(sums.billed_ms, 2000);
  // One invocation's running total (a tenant's spend): 58 GPU-s, no request charge.
  EXPECT_EQ(LambdaCostPico(idle, PriceSheet{}), 58 * int64_t{1'097'000'000});
  // An invocation pays its request, GB-s and GPU-s.
  EXPECT_EQ(LambdaCostPico(run, PriceSheet{}),
            200'000 + 2 * 16'666'700 + 2 * int64_t{1'097'000'000});
  auto groups = Aggregate({run, idle}, GroupBy::kFunction);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].p99_duration_us, 2'000'000);  // the idle record is not a duration
  EXPECT_EQ(BusiestHourBusyUs({run, idle}), 2'000'000);
}

TEST(GpuAdvisorTest, AlwaysOnAndWarmInstancesPayForTheirGpus) {
  AdviceInput in;
  in.window_us = 7 * kDayUs;
  in.memory_mb = 1024;
  in.gpu_count = 1;
  in.sums.invocations = 100;
  in.sums.billed_ms = 100 * 1000;
  in.sums.billed_mb_ms = in.sums.billed_ms * 1024;
  in.sums.gpu_us = 100 * 1'000'000;
  in.sums.duration_us = 100 * 1'000'000;
  in.busiest_hour_busy_us = 10'000'000;
  Advice a = Advise(in, PriceSheet{});
  // 7 days x ($0.0208/h + 3600 x $0.001097/h) = $3.4944 + $663.4656.
  EXPECT_EQ(a.always_on_cost_micro, 3'494'400 + 663'465'600);
  // Warm: 604800 s x (1 GB x $0.0000166667 + 1 GPU x $0.001097).
  EXPECT_EQ(a.warm_cost_micro, 10'080'020 + 663'465'600);
  // The bill has 100 GPU-seconds ($0.1097) in it; a GPU server idle all week costs far more.
  EXPECT_EQ(a.serverless_cost_micro, LambdaCostMicro(in.sums, PriceSheet{}));
  EXPECT_GT(a.serverless_cost_micro, 109'700);
  EXPECT_EQ(a.recommendation, Recommendation::kStayServerless) << a.reason;
}

TEST(GpuAdvisorTest, BusyGpuFunctionMovesToAnAlwaysOnGpu) {
  AdviceInput in;
  in.window_us = 7 * kDayUs;
  in.memory_mb = 1024;
  in.gpu_count = 1;
  // Busy all week: 604800 GPU-seconds billed, as much as a server holds, plus requests and GB-s.
  const int64_t n = 604'800;
  in.sums.invocations = n;
  in.sums.billed_ms = n * 1000;
  in.sums.billed_mb_ms = in.sums.billed_ms * 1024;
  in.sums.gpu_us = n * 1'000'000;
  in.sums.duration_us = n * 1'000'000;
  in.busiest_hour_busy_us = kHourUs;
  Advice a = Advise(in, PriceSheet{});
  EXPECT_EQ(a.instances, 1);
  EXPECT_EQ(a.recommendation, Recommendation::kAlwaysOn) << a.reason;
  EXPECT_GT(a.break_even_rps, 0);
  EXPECT_LT(a.break_even_rps, a.mean_rps);
}

}  // namespace
}  // namespace thaw::meter

// Cost arithmetic (meter/cost.h: exact integers, rounded once) and the advisor's decision
// (meter/advisor.h) as a table of cases.
#include "meter/advisor.h"

#include <gtest/gtest.h>

#include <climits>
#include <ostream>
#include <string>
#include <vector>

#include "meter/cost.h"

namespace thaw::meter {
namespace {

constexpr int64_t kDayUs = 86'400'000'000;
constexpr int64_t kHourUs = 3'600'000'000;

Sample S(std::string function, int64_t start_us, int64_t duration_us, int64_t memory_mb,
         std::string status = "success", bool cold = false) {
  Sample s;
  s.function = std::move(function);
  s.start_us = start_us;
  s.duration_us = duration_us;
  s.billed_ms = (duration_us + 999) / 1000;
  s.memory_mb = memory_mb;
  s.max_memory_used_mb = memory_mb / 2;
  s.cpu_us = duration_us / 2;
  s.cold_start = cold;
  s.status = std::move(status);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Cost arithmetic.

TEST(CostTest, LambdaPublicExampleIsExact) {
  // 1M requests of 1 s at 1024 MB: 1M GB-s x $0.0000166667 + 1M x $0.20/M = $16.6667 + $0.20.
  Sums s;
  s.invocations = 1'000'000;
  s.billed_mb_ms = 1'000'000LL * 1000 * 1024;
  EXPECT_EQ(LambdaCostMicro(s, PriceSheet{}), 16'866'700);
  EXPECT_EQ(FormatDollars(LambdaCostMicro(s, PriceSheet{})), "$16.866700");
}

TEST(CostTest, RoundsOnceNotPerInvocation) {
  // One 1 ms call at 128 MB: 0.2 micro for the request + 0.0020833 micro of GB-s, which
  // rounds to 0; a million of them must not: 202083.3375 micro rounds to 202083.
  Sums one;
  AddSample(S("f", 0, 1000, 128), one);
  EXPECT_EQ(LambdaCostMicro(one, PriceSheet{}), 0);
  Sums many;
  for (int i = 0; i < 1'000'000; ++i) AddSample(S("f", 0, 1000, 128), many);
  EXPECT_EQ(many.billed_mb_ms, 128'000'000);
  // 1e6 x 200000 pico + 128e6 mb-ms x 16666700 pico / 1024000 = 2e11 + 2.0833375e9 pico.
  EXPECT_EQ(LambdaCostMicro(many, PriceSheet{}), 202'083);
}

TEST(CostTest, MeanBatchSizeCountsBatchesNotCalls) {
  Sums s;
  EXPECT_EQ(MeanBatchSize(s), 0.0);
  // One batch of 4 and one of 1 (its calls' samples), plus an unbatched call: mean 2.5.
  for (int64_t size : {4, 4, 4, 4, 1, 0}) {
    Sample x = S("f", 0, 1000, 128);
    x.batch_size = size;
    AddSample(x, s);
  }
  EXPECT_EQ(s.invocations, 6);
  EXPECT_EQ(s.batched_calls, 5);
  EXPECT_DOUBLE_EQ(MeanBatchSize(s), 2.5);
}

TEST(CostTest, ActualUseSheetPricesCpuAndPeakMemory) {
  Sums s;
  s.invocations = 10;
  s.cpu_us = 2'000'000;               // 2 CPU-s x $0.000024 = 48 micro
  s.peak_mb_us = 1024LL * 4'000'000;  // 4 GB-s x $0.0000025 = 10 micro
  EXPECT_EQ(ActualCostMicro(s, PriceSheet{}), 2 + 48 + 10);
}

TEST(CostTest, HalfMicroRoundsUp) {
  PriceSheet p;
  p.request_pico = 500'000;  // half a micro-dollar per request
  Sums s;
  s.invocations = 1;
  EXPECT_EQ(LambdaCostMicro(s, p), 1);
  s.invocations = 3;
  EXPECT_EQ(LambdaCostMicro(s, p), 2);  // 1.5 -> 2
}

TEST(CostTest, ThrottledCallsCostNothing) {
  // Refused calls are recorded (status throttled) but, as on Lambda, never billed.
  Sums s;
  for (int i = 0; i < 5; ++i) AddSample(S("f", 0, 0, 128, "throttled"), s);
  EXPECT_EQ(BilledRequests(s), 0);
  EXPECT_EQ(LambdaCostMicro(s, PriceSheet{}), 0);
  EXPECT_EQ(ActualCostMicro(s, PriceSheet{}), 0);
  EXPECT_EQ(LambdaCostPico(S("f", 0, 0, 128, "throttled"), PriceSheet{}), 0);
  // One 1 ms call at 128 MB: 200000 pico for the request + 2083 pico of GB-s (truncated).
  EXPECT_EQ(LambdaCostPico(S("f", 0, 1000, 128), PriceSheet{}), 202'083);
}

TEST(CostTest, TokensArePricedPerMillionOnBothSheets) {
  PriceSheet p;
  EXPECT_EQ(p.prompt_token_pico, 0);  // not priced unless the operator says so
  EXPECT_EQ(p.completion_token_pico, 0);
  p.request_pico = 0;
  p.gb_second_pico = 0;
  p.cpu_second_pico = 0;
  p.peak_gb_second_pico = 0;
  p.prompt_token_pico = 150'000;      // $0.15 per million
  p.completion_token_pico = 600'000;  // $0.60 per million
  Sums s;
  s.invocations = 3;
  s.prompt_tokens = 2'000'000;
  s.completion_tokens = 500'001;  // $0.3000006: rounds to the micro-dollar once
  EXPECT_EQ(LambdaCostMicro(s, p), 300'000 + 300'001);
  EXPECT_EQ(ActualCostMicro(s, p), 300'000 + 300'001);

  // Running totals (a tenant's spend): a usage record costs its tokens only, in pico-dollars.
  Sample usage;
  usage.status = "usage";
  usage.prompt_tokens = 10;
  usage.completion_tokens = 20;
  usage.billed_ms = 5;  // not set on usage records; ignored if it were
  usage.memory_mb = 128;
  PriceSheet q;
  q.prompt_token_pico = 150'000;
  q.completion_token_pico = 600'000;
  EXPECT_EQ(LambdaCostPico(usage, q), 10 * 150'000 + 20 * 600'000);
  Sample call = usage;
  call.status = "success";
  EXPECT_EQ(LambdaCostPico(call, q), q.request_pico + 5 * 128 * q.gb_second_pico / 1024 / 1000 +
                                         10 * 150'000 + 20 * 600'000);
  usage.completion_tokens = INT64_MAX / 2;  // what a function claims: saturates, no overflow
  EXPECT_EQ(LambdaCostPico(usage, q), INT64_MAX);
}

TEST(CostTest, FormatDollars) {
  EXPECT_EQ(FormatDollars(0), "$0.000000");
  EXPECT_EQ(FormatDollars(1), "$0.000001");
  EXPECT_EQ(FormatDollars(12'345'678), "$12.345678");
  EXPECT_EQ(FormatDollars(-5), "-$0.000005");
}

TEST(CostTest, PercentileIsNearestRank) {
  std::vector<int64_t> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile({7}, 99), 7);
  EXPECT_EQ(Percentile({1, 2, 3}, 50), 2);
  EXPECT_EQ(Percentile({}, 50), 0);
}

TEST(CostTest, AggregateGroupsByFunctionAndDay) {
  const int64_t d0 = 1'700'006'400LL * 1'000'000;  // 2023-11-15T00:00:00Z
  std::vector<Sample> samples = {S("b", d0, 3000, 256, "error", true), S("a", d0 + 5, 1000, 128),
                                 S("a", d0 + kDayUs, 2000, 128, "throttled")};
  auto by_fn = Aggregate(samples, GroupBy::kFunction);
  ASSERT_EQ(by_fn.size(), 2u);
  EXPECT_EQ(by_fn[0].key, "a");
  EXPECT_EQ(by_fn[0].sums.invocations, 2);
  EXPECT_EQ(by_fn[0].sums.throttled, 1);
  EXPECT_EQ(by_fn[0].sums.billed_mb_ms, 3 * 128);
  EXPECT_EQ(by_fn[0].p50_duration_us, 1000);
  EXPECT_EQ(by_fn[0].p99_duration_us, 2000);
  EXPECT_EQ(by_fn[1].sums.error, 1);
  EXPECT_EQ(by_fn[1].sums.cold_starts, 1);
  auto by_day = Aggregate(samples, GroupBy::kDay);
  ASSERT_EQ(by_day.size(), 2u);
  EXPECT_EQ(by_day[0].key, "2023-11-15");
  EXPECT_EQ(by_day[0].sums.invocations, 2);
  EXPECT_EQ(by_day[1].key, "2023-11-16");
}

TEST(CostTest, BusiestHourIsTheOneWithMostBusyTime) {
  std::vector<Sample> samples = {S("f", 0, 1000, 128), S("f", kHourUs, 5000, 128),
                                 S("f", kHourUs + 10, 6000, 128), S("f", 2 * kHourUs, 9000, 128)};
  EXPECT_EQ(BusiestHourBusyUs(samples), 11000);
  EXPECT_EQ(BusiestHourBusyUs({}), 0);
}

// ---------------------------------------------------------------------------------------------
// The advisor, as a table.

struct AdviceCase {
  std::string name;
  int64_t invocations;
  int64_t cold_starts;
  int64_t mean_duration_us;
  int64_t memory_mb;
  int64_t busiest_hour_busy_us;
  Recommendation want;
  int64_t want_instances;
};

void PrintTo(const AdviceCase& c, std::ostream* os) { *os << c.name; }

AdviceInput InputFor(const AdviceCase& c) {
  AdviceInput in;
  in.sums.invocations = c.invocations;
  in.sums.cold_starts = c.cold_starts;
  in.sums.duration_us = c.invocations * c.mean_duration_us;
  in.sums.billed_ms = c.invocations * ((c.mean_duration_us + 999) / 1000);
  in.sums.billed_mb_ms = in.sums.billed_ms * c.memory_mb;
  in.window_us = 7 * kDayUs;
  in.memory_mb = c.memory_mb;
  in.busiest_hour_busy_us = c.busiest_hour_busy_us;
  return in;
}

class AdvisorTest : public ::testing::TestWithParam<AdviceCase> {};

TEST_P(AdvisorTest, Decides) {
  const AdviceCase& c = GetParam();
  Advice a = Advise(InputFor(c), PriceSheet{});
  EXPECT_EQ(a.recommendation, c.want) << a.text << ": " << a.reason;
  EXPECT_EQ(a.instances, c.want_instances);
  // The numbers behind it are consistent with the sheet.
  EXPECT_EQ(a.serverless_cost_micro, LambdaCostMicro(InputFor(c).sums, PriceSheet{}));
  // 7 days x 24 h x $0.0208 = $3.4944 per instance.
  EXPECT_EQ(a.always_on_cost_micro, c.want_instances * 3'494'400);
  if (c.want == Recommendation::kMinInstances) {
    EXPECT_EQ(a.text, "set min_instances: " + std::to_string(c.want_instances));
  }
  if (c.invocations > 0 && a.serverless_cost_micro > 0) {
    // At the break-even rate the serverless bill over the window equals the always-on one.
    double serverless_at_break_even = a.break_even_rps * 7 * 86400 *
                                      static_cast<double>(a.serverless_cost_micro) /
                                      static_cast<double>(c.invocations);
    EXPECT_NEAR(serverless_at_break_even, static_cast<double>(a.always_on_cost_micro),
                // serverless_cost_micro is rounded: within half a micro-dollar of the bill.
                2e-3 * static_cast<double>(a.always_on_cost_micro));
  } else {
    EXPECT_EQ(a.break_even_rps, 0);
  }
}

// Window: 7 days. One 128 MB instance kept warm for 7 days: 75600 GB-s = $1.260003.
INSTANTIATE_TEST_SUITE_P(
    Cases, AdvisorTest,
    ::testing::Values(
        AdviceCase{"ZeroTraffic", 0, 0, 0, 128, 0, Recommendation::kStayServerless, 1},
        // 1000 calls of 100 ms: a fraction of a cent serverless.
        AdviceCase{"LightTrafficStaysServerless", 1000, 10, 100'000, 128, 10'000'000,
                   Recommendation::kStayServerless, 1},
        // 10M calls of 200 ms at 1 GB: $2 + 2M GB-s ($33.33) against $3.49 always-on.
        AdviceCase{"SteadyHeavyTrafficMovesToAlwaysOn", 10'000'000, 100, 200'000, 1024, kHourUs / 2,
                   Recommendation::kAlwaysOn, 1},
        // Busiest hour had 2.5 h of busy time: 3 instances; 30M x 300 ms at 1 GB: $171 serverless.
        AdviceCase{"PeakConcurrencySizesTheFleet", 30'000'000, 0, 300'000, 1024, 5 * kHourUs / 2,
                   Recommendation::kAlwaysOn, 3},
        // 1M calls of 50 ms at 128 MB ($0.30 + $0.10): cold 20% but warm costs $1.26 > bill.
        AdviceCase{"ColdButWarmTooDearStaysServerless", 1'000'000, 200'000, 50'000, 128,
                   kHourUs / 10, Recommendation::kStayServerless, 1},
        // 2M calls of 400 ms at 128 MB: $0.40 + 100k GB-s $1.67 = $2.07; warm $1.26 <= bill,
        // always-on $3.49 > bill; 10% cold: min_instances.
        AdviceCase{"ColdStartHeavyGetsMinInstances", 2'000'000, 200'000, 400'000, 128, kHourUs / 4,
                   Recommendation::kMinInstances, 1},
        AdviceCase{"FewColdStartsStaysServerless", 2'000'000, 1'000, 400'000, 128, kHourUs / 4,
                   Recommendation::kStayServerless, 1}),
    [](const ::testing::TestParamInfo<AdviceCase>& info) { return info.param.name; });

TEST(AdviseTest, ZeroTrafficExplainsItself) {
  Advice a = Advise(AdviceInput{{}, 7 * kDayUs, 128, 0}, PriceSheet{});
  EXPECT_EQ(a.text, "stay serverless");
  EXPECT_EQ(a.serverless_cost_micro, 0);
  EXPECT_EQ(a.mean_rps, 0);
  EXPECT_NE(a.reason.find("no traffic"), std::string::npos);
}

}  // namespace
}  // namespace thaw::meter

// Tables of cases for the adaptive keep-alive (pool/keep_alive.h): the idle-time histogram and
// PlanKeepAlive's windows and states. A case is a histogram, a moment and a mode: no clock.
#include "pool/keep_alive.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "pool/policy.h"

namespace thaw::pool {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kFallback = 300 * kSecond;
constexpr int64_t kIdleAt = 1'000 * kMinute;  // when the function fell idle, in every case

// `count` idle times of `minutes` each (plus `extra_us`).
IdleHistogram Times(std::vector<std::pair<int64_t, double>> groups) {
  IdleHistogram h;
  for (const auto& [count, minutes] : groups) {
    for (int64_t i = 0; i < count; ++i) h.Record(static_cast<int64_t>(minutes * kMinute));
  }
  return h;
}

TEST(IdleHistogramTest, BinsByMinuteAndCountsFourHoursPlusApart) {
  IdleHistogram h;
  h.Record(0);
  h.Record(59 * kSecond);
  h.Record(60 * kSecond);
  h.Record(-5);  // a clock step backwards counts as no idle time
  h.Record(239 * kMinute + 59 * kSecond);
  h.Record(240 * kMinute);
  h.Record(24 * 60 * kMinute);
  EXPECT_EQ(h.bin(0), 3);
  EXPECT_EQ(h.bin(1), 1);
  EXPECT_EQ(h.bin(239), 1);
  EXPECT_EQ(h.in_bounds(), 5);
  EXPECT_EQ(h.out_of_bounds(), 2);
  EXPECT_EQ(h.total(), 7);
}

TEST(IdleHistogramTest, PercentileBinIsNearestRank) {
  // 19 idle times of 0 minutes and one of 10: the 5th percentile is bin 0, the 99th bin 10,
  // the 95th (rank 19 of 20) still bin 0.
  IdleHistogram h = Times({{19, 0.5}, {1, 10.5}});
  EXPECT_EQ(h.PercentileBin(5), 0);
  EXPECT_EQ(h.PercentileBin(95), 0);
  EXPECT_EQ(h.PercentileBin(96), 10);
  EXPECT_EQ(h.PercentileBin(99), 10);
  EXPECT_EQ(IdleHistogram().PercentileBin(50), -1);
}

TEST(IdleHistogramTest, CoefficientOfVariationOfBinCounts) {
  EXPECT_EQ(IdleHistogram().BinCountCv(), 0);
  // All in one bin: mean n/240, sd n*sqrt(239)/240, CV sqrt(239).
  EXPECT_NEAR(Times({{50, 15.2}}).BinCountCv(), std::sqrt(239.0), 1e-9);
  // One in every bin: flat, CV 0.
  IdleHistogram flat;
  for (int i = 0; i < IdleHistogram::kBins; ++i) flat.Record(i * kMinute);
  EXPECT_NEAR(flat.BinCountCv(), 0, 1e-9);
}

TEST(IdleHistogramTest, AgesByHalvingSoRecentTrafficWins) {
  IdleHistogram h;
  for (int64_t i = 0; i < IdleHistogram::kAgeAtSamples - 1; ++i) h.Record(3 * kMinute);
  EXPECT_EQ(h.bin(3), IdleHistogram::kAgeAtSamples - 1);
  h.Record(7 * kMinute);  // the 10,000th: every count halves
  EXPECT_EQ(h.bin(3), (IdleHistogram::kAgeAtSamples - 1) / 2);
  EXPECT_EQ(h.bin(7), 0);
  EXPECT_EQ(h.total(), h.in_bounds());
  EXPECT_EQ(h.in_bounds(), (IdleHistogram::kAgeAtSamples - 1) / 2);
}

struct PlanCase {
  std::string name;
  IdleHistogram idle;
  KeepAliveMode mode = KeepAliveMode::kAdaptive;
  bool templates = false;
  int64_t age_us = 0;  // now - idle since; -1: the function is busy
  KeepAliveBasis basis;
  int64_t prewarm_us;
  int64_t keep_alive_us;
  WarmState state;
  bool prewarm_now = false;
  int64_t template_until_us = 0;
  int64_t surplus_keep_us = -1;  // -1: the same as keep_alive_us
};

void PrintTo(const PlanCase& c, std::ostream* os) { *os << c.name; }

std::vector<PlanCase> PlanCases() {
  using B = KeepAliveBasis;
  using W = WarmState;
  // A 15-minute timer: every idle time in bin 14. Head and tail are bin 14: pre-warm at
  // 14 min less 10% = 12.6 min, keep until 15 min plus 10% = 16.5 min, so 3.9 min warm.
  const IdleHistogram timer = Times({{20, 14.9}});
  constexpr int64_t kTimerPrewarm = 756 * kSecond, kTimerKeep = 234 * kSecond;
  // An HTTP function: most idle times under a minute, a few up to 9 minutes. Head bin 0 (no
  // pre-warm), tail bin 9: keep 10 min plus 10% = 11 min.
  const IdleHistogram http = Times({{90, 0.2}, {8, 3.5}, {2, 9.5}});
  return {
      {"FixedModeKeepsTheFixedWindow", timer, KeepAliveMode::kFixed, false, 60 * kSecond, B::kFixed,
       0, kFallback, W::kInstance},
      {"FixedModePastTheWindowKeepsNothing", timer, KeepAliveMode::kFixed, false, kFallback,
       B::kFixed, 0, kFallback, W::kNothing},
      {"NoSamplesFallsBackToFixed", IdleHistogram(), KeepAliveMode::kAdaptive, false, 0,
       B::kTooFewSamples, 0, kFallback, W::kInstance},
      {"NineSamplesAreTooFew", Times({{9, 14.9}}), KeepAliveMode::kAdaptive, false, 0,
       B::kTooFewSamples, 0, kFallback, W::kInstance},
      {"TenSamplesAreEnough", Times({{10, 14.9}}), KeepAliveMode::kAdaptive, false, 0,
       B::kHistogram, kTimerPrewarm, kTimerKeep, W::kNothing},
      {"MostlyOutOfBoundsFallsBack", Times({{6, 300}, {5, 14.9}}), KeepAliveMode::kAdaptive, false,
       0, B::kOutOfBounds, 0, kFallback, W::kInstance},
      {"HalfOutOfBoundsIsStillUsed", Times({{5, 300}, {5, 14.9}}), KeepAliveMode::kAdaptive, false,
       0, B::kHistogram, kTimerPrewarm, kTimerKeep, W::kNothing},
      {"FlatHistogramIsNotRepresentative",
       [] {
         IdleHistogram h;
         for (int i = 0; i < IdleHistogram::kBins; i += 2) h.Record(i * kMinute);
         return h;
       }(),
       KeepAliveMode::kAdaptive, false, 0, B::kNotRepresentative, 0, kFallback, W::kInstance},
      // The timer: nothing kept in the gap, an instance from 12.6 to 16.5 minutes.
      {"TimerGapKeepsNothing", timer, KeepAliveMode::kAdaptive, false, 12 * kMinute, B::kHistogram,
       kTimerPrewarm, kTimerKeep, W::kNothing},
      {"TimerPrewarmWindowOpens", timer, KeepAliveMode::kAdaptive, false, kTimerPrewarm,
       B::kHistogram, kTimerPrewarm, kTimerKeep, W::kInstance, true},
      {"TimerOneMicroBeforeTheEndIsWarm", timer, KeepAliveMode::kAdaptive, false,
       kTimerPrewarm + kTimerKeep - 1, B::kHistogram, kTimerPrewarm, kTimerKeep, W::kInstance,
       true},
      {"TimerPastTheTailKeepsNothing", timer, KeepAliveMode::kAdaptive, false,
       kTimerPrewarm + kTimerKeep, B::kHistogram, kTimerPrewarm, kTimerKeep, W::kNothing},
      {"BusyFunctionKeepsItsInstance", timer, KeepAliveMode::kAdaptive, false, -1, B::kHistogram,
       kTimerPrewarm, kTimerKeep, W::kInstance},
      {"HttpHeadAtZeroKeepsWarmAtOnce", http, KeepAliveMode::kAdaptive, false, 0, B::kHistogram, 0,
       660 * kSecond, W::kInstance},
      {"HttpPastTheTailKeepsNothing", http, KeepAliveMode::kAdaptive, false, 660 * kSecond,
       B::kHistogram, 0, 660 * kSecond, W::kNothing},
      // With templates: nothing in the gap (the pre-warm makes the template again), then the
      // instance and its template; idle instances but the most recent one go after a minute.
      {"TemplatesTimerGapKeepsNothing", timer, KeepAliveMode::kAdaptive, true, 5 * kMinute,
       B::kHistogram, kTimerPrewarm, kTimerKeep, W::kNothing, false, kTimerPrewarm + kTimerKeep,
       60 * kSecond},
      {"TemplatesTimerWindowKeepsAnInstance", timer, KeepAliveMode::kAdaptive, true, 13 * kMinute,
       B::kHistogram, kTimerPrewarm, kTimerKeep, W::kInstance, true, kTimerPrewarm + kTimerKeep,
       60 * kSecond},
      {"TemplatesPastTheTailKeepNothing", timer, KeepAliveMode::kAdaptive, true, 17 * kMinute,
       B::kHistogram, kTimerPrewarm, kTimerKeep, W::kNothing, false, kTimerPrewarm + kTimerKeep,
       60 * kSecond},
      // Not representative yet: the instance for the fallback window, then the template alone
      // for as long again.
      {"TemplatesFallbackKeepAnInstanceForTheWindow", IdleHistogram(), KeepAliveMode::kAdaptive,
       true, kFallback - 1, B::kTooFewSamples, 0, kFallback, W::kInstance, false, 2 * kFallback,
       60 * kSecond},
      {"TemplatesFallbackThenKeepTheTemplateAlone", IdleHistogram(), KeepAliveMode::kAdaptive, true,
       kFallback, B::kTooFewSamples, 0, kFallback, W::kTemplate, false, 2 * kFallback,
       60 * kSecond},
      {"TemplatesFallbackThenNothing", IdleHistogram(), KeepAliveMode::kAdaptive, true,
       2 * kFallback, B::kTooFewSamples, 0, kFallback, W::kNothing, false, 2 * kFallback,
       60 * kSecond},
      // keep_alive: fixed sets the instances' window: the template stays while callable.
      {"TemplatesFixedModeKeepTheTemplateWhileCallable", IdleHistogram(), KeepAliveMode::kFixed,
       true, 100 * kFallback, B::kFixed, 0, kFallback, W::kTemplate, false, kKeepForever,
       60 * kSecond},
  };
}

class PlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(PlanTest, Plans) {
  const PlanCase& c = GetParam();
  KeepAliveSnapshot s;
  s.mode = c.mode;
  s.idle = &c.idle;
  s.fixed_window_us = kFallback;
  s.templates = c.templates;
  s.idle_since_us = c.age_us < 0 ? -1 : kIdleAt;
  s.now_us = kIdleAt + std::max<int64_t>(0, c.age_us);
  KeepAlivePlan plan = PlanKeepAlive(s);
  EXPECT_STREQ(KeepAliveBasisName(plan.basis), KeepAliveBasisName(c.basis));
  EXPECT_EQ(plan.prewarm_us, c.prewarm_us);
  EXPECT_EQ(plan.keep_alive_us, c.keep_alive_us);
  EXPECT_STREQ(WarmStateName(plan.state), WarmStateName(c.state));
  EXPECT_EQ(plan.prewarm_now, c.prewarm_now);
  EXPECT_EQ(plan.template_until_us, c.template_until_us);
  EXPECT_EQ(plan.surplus_keep_us, c.surplus_keep_us < 0 ? c.keep_alive_us : c.surplus_keep_us);
}

INSTANTIATE_TEST_SUITE_P(Cases, PlanTest, ::testing::ValuesIn(PlanCases()),
                         [](const ::testing::TestParamInfo<PlanCase>& info) {
                           return info.param.name;
                         });

// The server's driver, step by step with a fake clock: the plan feeds Tick's limits as
// FunctionPool::LimitsLocked does. A learnt 15-minute timer: the instance goes as the call
// ends, one is pre-warmed at 12.6 minutes and stopped 3.9 minutes after it is ready.
TEST(KeepAliveCycleTest, ServerTickFollowsTheLearntTimer) {
  FakeClock clock(kIdleAt);
  const IdleHistogram timer = Times({{20, 14.9}});
  auto tick = [&](const PoolView& view) {
    KeepAliveSnapshot s;
    s.idle = &timer;
    s.now_us = clock.MonoMicros();
    s.idle_since_us = view.idle_since_us;
    const KeepAlivePlan plan = PlanKeepAlive(s);
    Limits limits;
    limits.idle_timeout_us = plan.keep_alive_us;
    limits.prewarm_us = plan.prewarm_us;
    return Tick(view, limits, clock.MonoMicros());
  };
  PoolView view;
  view.idle_since_us = kIdleAt;
  view.instances = {
      {.id = 1, .state = InstanceState::kReady, .inflight = 0, .idle_since_us = kIdleAt}};
  clock.Advance(100'000);  // the next tick: in the gap, the idle instance stops
  TickPlan plan = tick(view);
  EXPECT_EQ(plan.stop, std::vector<uint64_t>{1});
  EXPECT_EQ(plan.start, 0);
  view.instances.clear();
  clock.Advance(12 * kMinute);  // 12 min: still in the gap
  EXPECT_EQ(tick(view).start, 0);
  clock.Advance(36 * kSecond);  // 12.6 min: the pre-warm window opens
  plan = tick(view);
  EXPECT_EQ(plan.start, 1);
  EXPECT_TRUE(plan.stop.empty());
  const int64_t ready_at = clock.MonoMicros() + kSecond;  // its init took a second
  view.instances = {
      {.id = 2, .state = InstanceState::kReady, .inflight = 0, .idle_since_us = ready_at}};
  clock.Advance(kSecond + 233 * kSecond);  // idle 233 s, a second short of its 234 s
  plan = tick(view);
  EXPECT_TRUE(plan.stop.empty());
  EXPECT_EQ(plan.start, 0);
  clock.Advance(kSecond);
  plan = tick(view);
  EXPECT_EQ(plan.stop, std::vector<uint64_t>{2});
  EXPECT_EQ(plan.start, 0);  // the window is over: no second pre-warm
}

// The template part of the driver (FunctionPool::ApplyTickLocked), step by step with a fake
// clock: the plan as the pool computes it each tick, and what PlanTemplate makes of it.
class TemplateCycleTest : public ::testing::Test {
 protected:
  TemplateAction Decide(const IdleHistogram& idle, KeepAliveMode mode, bool pool_empty) {
    KeepAliveSnapshot s;
    s.mode = mode;
    s.idle = &idle;
    s.fixed_window_us = kFallback;
    s.templates = true;
    s.now_us = clock_.MonoMicros();
    s.idle_since_us = kIdleAt;
    TemplateSnapshot t;
    t.ready = ready_;
    t.dropped = dropped_;
    t.pool_empty = pool_empty;
    const TemplateAction action = PlanTemplate(PlanKeepAlive(s), t);
    // Applied as the driver does: a drop ends it, a make brings it back (its init is quick here).
    if (action != TemplateAction::kKeep) {
      ready_ = action == TemplateAction::kMake;
      dropped_ = action == TemplateAction::kDrop;
    }
    return action;
  }
  void At(int64_t since_idle_us) { clock_.Advance(kIdleAt + since_idle_us - clock_.MonoMicros()); }

  FakeClock clock_{kIdleAt};
  bool ready_ = true;
  bool dropped_ = false;
};

// A learnt 15-minute timer: the template goes once the pool is empty in the gap, comes back as
// the pre-warm window opens (12.6 min), and goes again past the tail (16.5 min).
TEST_F(TemplateCycleTest, LearntTimerDropsInTheGapAndRemakesForThePrewarm) {
  const IdleHistogram timer = Times({{20, 14.9}});
  const auto A = KeepAliveMode::kAdaptive;
  At(100'000);
  EXPECT_EQ(Decide(timer, A, /*pool_empty=*/false), TemplateAction::kKeep);  // its fork stops
  At(2 * kSecond);
  EXPECT_EQ(Decide(timer, A, true), TemplateAction::kDrop);
  At(12 * kMinute);
  EXPECT_EQ(Decide(timer, A, true), TemplateAction::kKeep);  // still the gap: nothing made
  EXPECT_FALSE(ready_);
  At(756 * kSecond);
  EXPECT_EQ(Decide(timer, A, true), TemplateAction::kMake);  // the pre-warm forks from it
  At(800 * kSecond);
  EXPECT_EQ(Decide(timer, A, false), TemplateAction::kKeep);
  At(990 * kSecond - 1);
  EXPECT_EQ(Decide(timer, A, true), TemplateAction::kKeep);
  At(990 * kSecond);
  EXPECT_EQ(Decide(timer, A, false), TemplateAction::kKeep);  // the pre-warmed fork still lives
  EXPECT_EQ(Decide(timer, A, true), TemplateAction::kDrop);
}

// Not representative yet: the template outlives the instance by the fallback window, then goes.
TEST_F(TemplateCycleTest, FallbackKeepsTheTemplateTwiceTheWindow) {
  const IdleHistogram none;
  const auto A = KeepAliveMode::kAdaptive;
  At(kFallback);
  EXPECT_EQ(Decide(none, A, true), TemplateAction::kKeep);
  At(2 * kFallback - 1);
  EXPECT_EQ(Decide(none, A, true), TemplateAction::kKeep);
  At(2 * kFallback);
  EXPECT_EQ(Decide(none, A, true), TemplateAction::kDrop);
  At(3 * kFallback);
  EXPECT_EQ(Decide(none, A, true), TemplateAction::kKeep);  // not wanted: the next call makes it
}

// keep_alive: fixed never drops it: `idle_timeout_s: 0` still forks its next instance.
TEST_F(TemplateCycleTest, FixedModeNeverDrops) {
  At(1000 * kMinute);
  EXPECT_EQ(Decide(IdleHistogram(), KeepAliveMode::kFixed, true), TemplateAction::kKeep);
  EXPECT_TRUE(ready_);
}

// A template the plan did not drop (one that ended, or never was) is the next cold start's to
// make, as before: the plan only brings back what it let go.
TEST_F(TemplateCycleTest, OnlyWhatThePlanDroppedIsRemade) {
  ready_ = false;
  At(kSecond);
  EXPECT_EQ(Decide(IdleHistogram(), KeepAliveMode::kAdaptive, true), TemplateAction::kKeep);
  dropped_ = true;
  EXPECT_EQ(Decide(IdleHistogram(), KeepAliveMode::kAdaptive, true), TemplateAction::kMake);
}

}  // namespace
}  // namespace thaw::pool

// Tables of cases for the pure scheduling policy (pool/policy.h): Admit places one arriving
// request, Tick plans scale-in and scale-out. No pool, no clock: each case is a snapshot.
#include "pool/policy.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace thaw::pool {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kNow = 10'000 * kSecond;
constexpr int64_t kTimeout = 300 * kSecond;  // Limits' default idle_timeout_us

InstanceView Ready(uint64_t id, int64_t inflight, int64_t idle_since_us = kNow) {
  return {.id = id,
          .state = InstanceState::kReady,
          .inflight = inflight,
          .idle_since_us = idle_since_us};
}
// Ready, and served by the caller's shard.
InstanceView Local(uint64_t id, int64_t inflight, int64_t idle_since_us = kNow) {
  InstanceView v = Ready(id, inflight, idle_since_us);
  v.local = true;
  return v;
}
InstanceView Starting(uint64_t id) { return {.id = id, .state = InstanceState::kStarting}; }
InstanceView Stopping(uint64_t id) { return {.id = id, .state = InstanceState::kStopping}; }

const char* KindName(Admission::Kind kind) {
  switch (kind) {
    case Admission::Kind::kDispatch:
      return "Dispatch";
    case Admission::Kind::kQueue:
      return "Queue";
    case Admission::Kind::kQueueAndStart:
      return "QueueAndStart";
    case Admission::Kind::kReject:
      return "Reject";
  }
  return "?";
}

std::string Describe(const PoolView& pool) {
  std::string s =
      "queued=" + std::to_string(pool.queued) + (pool.draining ? " draining" : "") + " instances=[";
  for (const InstanceView& i : pool.instances) {
    s += " #" + std::to_string(i.id) + ":" + InstanceStateName(i.state) +
         " inflight=" + std::to_string(i.inflight) +
         " idle_since=" + std::to_string(i.idle_since_us);
  }
  return s + " ]";
}

// ---------------------------------------------------------------------------------------------
// Admit

struct AdmitCase {
  std::string name;
  PoolView pool;
  Limits limits;
  Admission::Kind kind;
  uint64_t instance_id = 0;  // checked for kDispatch only
};

void PrintTo(const AdmitCase& c, std::ostream* os) { *os << c.name << " " << Describe(c.pool); }

std::vector<AdmitCase> AdmitCases() {
  using K = Admission::Kind;
  return {
      {"ColdStartFromZero", {}, {}, K::kQueueAndStart},
      {"ReadyIdleInstanceIsReused", {.instances = {Ready(7, 0)}}, {}, K::kDispatch, 7},
      {"PrefersMostRecentlyUsedIdleInstance",
       {.instances = {Ready(1, 0, kNow - 30 * kSecond), Ready(2, 0, kNow - 1 * kSecond),
                      Ready(3, 0, kNow - 10 * kSecond)}},
       {},
       K::kDispatch,
       2},
      {"PrefersBusiestBelowLimitWithConcurrency",
       {.instances = {Ready(1, 1, kNow), Ready(2, 3, kNow - 60 * kSecond), Ready(3, 4, kNow)}},
       {.concurrency = 4},
       K::kDispatch,
       2},
      {"EqualInflightBrokenByMostRecentlyUsed",
       {.instances = {Ready(1, 2, kNow - 9 * kSecond), Ready(2, 2, kNow - 2 * kSecond)}},
       {.concurrency = 4},
       K::kDispatch,
       2},
      {"InstanceAtConcurrencyLimitIsSkipped",
       {.instances = {Ready(1, 2), Ready(2, 1, kNow - 100 * kSecond)}},
       {.concurrency = 2},
       K::kDispatch,
       2},
      // Shards: a call stays on its shard's instance while that one has room, even over one
      // used more recently or busier elsewhere; another shard's serves only when none here can.
      {"PrefersTheCallersShardOverMoreRecentlyUsed",
       {.instances = {Ready(1, 0, kNow), Local(2, 0, kNow - 60 * kSecond)}},
       {},
       K::kDispatch,
       2},
      {"PrefersTheCallersShardOverBusier",
       {.instances = {Ready(1, 3), Local(2, 0)}},
       {.concurrency = 4},
       K::kDispatch,
       2},
      {"OtherShardServesWhenTheLocalOneIsFull",
       {.instances = {Local(1, 1), Ready(2, 0)}},
       {},
       K::kDispatch,
       2},
      {"AmongLocalInstancesTheUsualOrder",
       {.instances = {Local(1, 0, kNow - 9 * kSecond), Ready(2, 0), Local(3, 0, kNow - kSecond)}},
       {},
       K::kDispatch,
       3},
      {"BusyInstanceAtLimitScalesOut", {.instances = {Ready(1, 1)}}, {}, K::kQueueAndStart},
      {"ScalesOutBelowMaxInstances",
       {.instances = {Ready(1, 1), Ready(2, 1)}},
       {.max_instances = 3},
       K::kQueueAndStart},
      {"AtMaxInstancesQueues",
       {.instances = {Ready(1, 1), Ready(2, 1), Ready(3, 1)}},
       {.max_instances = 3},
       K::kQueue},
      {"AtMaxInstancesQueueOneBelowFullQueues",
       {.instances = {Ready(1, 1)}, .queued = 3},
       {.max_instances = 1, .max_queue = 4},
       K::kQueue},
      {"AtMaxInstancesQueueFullRejects",
       {.instances = {Ready(1, 1)}, .queued = 4},
       {.max_instances = 1, .max_queue = 4},
       K::kReject},
      {"AtMaxInstancesZeroQueueRejects",
       {.instances = {Ready(1, 1)}},
       {.max_instances = 1, .max_queue = 0},
       K::kReject},
      // FIFO: with requests already waiting, a free slot goes to them, never to a newcomer.
      {"FifoFreeSlotWithQueuedRequestsQueues",
       {.instances = {Ready(1, 0)}, .queued = 1},
       {.max_instances = 1},
       K::kQueue},
      {"FifoFreeConcurrencySlotWithQueuedRequestsQueues",
       {.instances = {Ready(1, 1), Starting(2)}, .queued = 1},
       {.concurrency = 2},
       K::kQueue},
      {"StartingInstanceCoversRequest", {.instances = {Starting(1)}}, {}, K::kQueue},
      {"StartingInstanceCoversUpToConcurrency",
       {.instances = {Starting(1)}, .queued = 2},
       {.concurrency = 3},
       K::kQueue},
      {"StartingInstanceAlreadyFullStartsAnother",
       {.instances = {Starting(1)}, .queued = 3},
       {.concurrency = 3},
       K::kQueueAndStart},
      {"StartingInstanceCoveringQueuedStartsAnother",
       {.instances = {Starting(1)}, .queued = 1},
       {},
       K::kQueueAndStart},
      {"StartingInstanceIsNeverDispatchedTo", {.instances = {Starting(1)}}, {}, K::kQueue},
      {"StoppingInstanceIsNeverDispatchedTo", {.instances = {Stopping(1)}}, {}, K::kQueueAndStart},
      {"StoppingInstancesCountAgainstMaxInstances",
       {.instances = {Stopping(1), Ready(2, 1)}},
       {.max_instances = 2},
       K::kQueue},
      {"StoppingInstancesAtMaxWithFullQueueReject",
       {.instances = {Stopping(1), Stopping(2)}, .queued = 256},
       {.max_instances = 2},
       K::kReject},
  };
}

class AdmitTest : public ::testing::TestWithParam<AdmitCase> {};

TEST_P(AdmitTest, Decides) {
  const AdmitCase& c = GetParam();
  Admission got = Admit(c.pool, c.limits);
  EXPECT_STREQ(KindName(got.kind), KindName(c.kind)) << Describe(c.pool);
  if (c.kind == Admission::Kind::kDispatch) {
    EXPECT_EQ(got.instance_id, c.instance_id);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, AdmitTest, ::testing::ValuesIn(AdmitCases()),
                         [](const ::testing::TestParamInfo<AdmitCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Tick

struct TickCase {
  std::string name;
  PoolView pool;
  Limits limits;
  int64_t now_us = kNow;
  std::vector<uint64_t> stop;  // in order: most idle first
  int64_t start = 0;
};

void PrintTo(const TickCase& c, std::ostream* os) { *os << c.name << " " << Describe(c.pool); }

std::vector<TickCase> TickCases() {
  return {
      {"EmptyPoolDoesNothing", {}, {}, kNow, {}, 0},
      {"IdlePastTimeoutScalesToZero",
       {.instances = {Ready(1, 0, kNow - kTimeout - kSecond)}},
       {},
       kNow,
       {1},
       0},
      {"IdleExactlyAtTimeoutStops",
       {.instances = {Ready(1, 0, kNow - kTimeout)}},
       {},
       kNow,
       {1},
       0},
      {"IdleOneMicroBeforeTimeoutIsKept",
       {.instances = {Ready(1, 0, kNow - kTimeout + 1)}},
       {},
       kNow,
       {},
       0},
      {"ZeroIdleTimeoutStopsAtOnce",
       {.instances = {Ready(1, 0, kNow)}},
       {.idle_timeout_us = 0},
       kNow,
       {1},
       0},
      {"BusyInstanceIsNeverStopped",
       {.instances = {Ready(1, 1, kNow - 10 * kTimeout)}},
       {},
       kNow,
       {},
       0},
      {"StartingInstanceIsNeverStopped", {.instances = {Starting(1)}}, {}, kNow, {}, 0},
      {"OnlyExpiredOfSeveralStopMostIdleFirst",
       {.instances = {Ready(1, 0, kNow - kTimeout - 1), Ready(2, 0, kNow - 1),
                      Ready(3, 0, kNow - 2 * kTimeout)}},
       {},
       kNow,
       {3, 1},
       0},
      {"MinInstancesFloorIsKept",
       {.instances = {Ready(1, 0, kNow - 10 * kTimeout)}},
       {.min_instances = 1},
       kNow,
       {},
       0},
      {"MinInstancesFloorKeepsMostRecentlyUsed",
       {.instances = {Ready(1, 0, kNow - 3 * kTimeout), Ready(2, 0, kNow - kTimeout - 5),
                      Ready(3, 0, kNow - 2 * kTimeout)}},
       {.min_instances = 1},
       kNow,
       {1, 3},
       0},
      {"MinInstancesStartsUpToFloor", {}, {.min_instances = 2}, kNow, {}, 2},
      {"MinInstancesReplacesCrashedInstance",
       {.instances = {Ready(1, 0)}},
       {.min_instances = 2},
       kNow,
       {},
       1},
      {"MinInstancesCountsStartingInstances",
       {.instances = {Ready(1, 0), Starting(2)}},
       {.min_instances = 2},
       kNow,
       {},
       0},
      {"MinInstancesCappedByMaxInstances",
       {},
       {.min_instances = 5, .max_instances = 3},
       kNow,
       {},
       3},
      {"StoppingInstanceNotWarmButCountsAgainstMax",
       {.instances = {Ready(1, 0), Stopping(2)}},
       {.min_instances = 2, .max_instances = 3},
       kNow,
       {},
       1},
      {"StoppingInstanceAtMaxBlocksReplacement",
       {.instances = {Ready(1, 0), Stopping(2)}},
       {.min_instances = 2, .max_instances = 2},
       kNow,
       {},
       0},
      {"DrainingStopsAllIdleIgnoringTimeoutAndFloor",
       {.instances = {Ready(1, 0, kNow - 1 * kSecond), Ready(2, 0, kNow - 2 * kSecond),
                      Ready(3, 1)},
        .draining = true,
        .stop_idle_now = true},
       {.min_instances = 3},
       kNow,
       {2, 1},
       0},
      // Regression: a replaced version still called through an alias or qualifier stopped
      // its instances as soon as they were idle, so every such call was a cold start.
      {"DrainingButStillCalledKeepsIdleInstancesForTheTimeout",
       {.instances = {Ready(1, 0, kNow - 1 * kSecond), Ready(2, 0, kNow - 400 * kSecond)},
        .draining = true,
        .stop_idle_now = false},
       {.min_instances = 2, .idle_timeout_us = 300 * kSecond},
       kNow,
       {2},
       0},
      {"DrainingKeepsNoWarmFloor",
       {.instances = {}, .draining = true},
       {.min_instances = 2},
       kNow,
       {},
       0},
      {"QueuedWorkStartsCeilUncoveredOverConcurrency",
       {.instances = {Ready(1, 3)}, .queued = 7},
       {.concurrency = 3},
       kNow,
       {},
       3},
      {"QueuedWorkCoveredByStartingStartsNothing",
       {.instances = {Starting(1), Starting(2)}, .queued = 4},
       {.concurrency = 2},
       kNow,
       {},
       0},
      {"QueuedWorkPartlyCoveredStartsRemainder",
       {.instances = {Starting(1)}, .queued = 5},
       {.concurrency = 2},
       kNow,
       {},
       2},
      {"QueuedWorkCappedByMaxInstances",
       {.instances = {Ready(1, 1)}, .queued = 10},
       {.max_instances = 3},
       kNow,
       {},
       2},
      {"QueuedWorkStoppingInstancesCountAgainstMax",
       {.instances = {Stopping(1), Stopping(2), Ready(3, 1)}, .queued = 5},
       {.max_instances = 3},
       kNow,
       {},
       0},
      {"QueuedWorkKeepsExpiredIdleInstance",
       {.instances = {Ready(1, 0, kNow - 2 * kTimeout)}, .queued = 1},
       {.max_instances = 1},
       kNow,
       {},
       0},
      // Adaptive keep-alive with a pre-warm window (keep_alive.h): 10 minutes of nothing after
      // the version falls idle, then one instance for the 200 s idle timeout.
      {"PrewarmGapStopsIdleInstanceAtOnce",
       {.instances = {Ready(1, 0, kNow - kSecond)}, .idle_since_us = kNow - kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {1},
       0},
      {"PrewarmGapKeepsTheMinInstancesFloor",
       {.instances = {Ready(1, 0, kNow - kSecond)}, .idle_since_us = kNow - kSecond},
       {.min_instances = 1, .idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"PrewarmWindowOpensStartsOne",
       {.instances = {}, .idle_since_us = kNow - 600 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       1},
      {"PrewarmWindowWithALiveInstanceStartsNone",
       {.instances = {Starting(1)}, .idle_since_us = kNow - 601 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"PrewarmWindowWithAStoppingInstanceWaits",
       {.instances = {Stopping(1)}, .idle_since_us = kNow - 650 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"PrewarmedInstanceIsKeptForTheIdleTimeout",
       {.instances = {Ready(1, 0, kNow - 100 * kSecond)}, .idle_since_us = kNow - 700 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"PrewarmWindowOverStopsAndStartsNothing",
       {.instances = {Ready(1, 0, kNow - 200 * kSecond)}, .idle_since_us = kNow - 800 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {1},
       0},
      {"PrewarmNeverWhileBusy",
       {.instances = {Ready(1, 1)}, .idle_since_us = -1},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"PrewarmNeverWhileDraining",
       {.instances = {}, .draining = true, .idle_since_us = kNow - 650 * kSecond},
       {.idle_timeout_us = 200 * kSecond, .prewarm_us = 600 * kSecond},
       kNow,
       {},
       0},
      {"NoPrewarmWindowKeepsTheIdleTimeoutFromTheCall",
       {.instances = {Ready(1, 0, kNow - kSecond)}, .idle_since_us = kNow - kSecond},
       {.idle_timeout_us = 200 * kSecond},
       kNow,
       {},
       0},
      // With templates: idle instances beyond the most recently used one go after the surplus
      // window (another forks in milliseconds); the most recent one keeps the idle timeout.
      {"SurplusIdleInstancesGoFirstWithTemplates",
       {.instances = {Ready(1, 0, kNow - 90 * kSecond), Ready(2, 0, kNow - 61 * kSecond),
                      Ready(3, 0, kNow - 60 * kSecond)}},
       {.idle_timeout_us = 200 * kSecond, .surplus_idle_timeout_us = 60 * kSecond},
       kNow,
       {1, 2},
       0},
      {"SurplusWindowUnsetKeepsThemAllTheIdleTimeout",
       {.instances = {Ready(1, 0, kNow - 90 * kSecond), Ready(2, 0, kNow - 60 * kSecond)}},
       {.idle_timeout_us = 200 * kSecond},
       kNow,
       {},
       0},
      {"QueuedWorkAndFloorTakeTheLarger",
       {.instances = {}, .queued = 3},
       {.min_instances = 2},
       kNow,
       {},
       3},
  };
}

class TickTest : public ::testing::TestWithParam<TickCase> {};

TEST_P(TickTest, Plans) {
  const TickCase& c = GetParam();
  TickPlan plan = Tick(c.pool, c.limits, c.now_us);
  EXPECT_EQ(plan.stop, c.stop) << Describe(c.pool);
  EXPECT_EQ(plan.start, c.start) << Describe(c.pool);
}

INSTANTIATE_TEST_SUITE_P(Cases, TickTest, ::testing::ValuesIn(TickCases()),
                         [](const ::testing::TestParamInfo<TickCase>& info) {
                           return info.param.name;
                         });

// A stopped instance leaves the pool; a second Tick at the same moment must not stop more.
TEST(TickSequenceTest, ScaleToZeroIsStableAcrossTicks) {
  Limits limits;
  PoolView pool{.instances = {Ready(1, 0, kNow - kTimeout)}};
  TickPlan first = Tick(pool, limits, kNow);
  ASSERT_EQ(first.stop, std::vector<uint64_t>{1});
  pool.instances = {Stopping(1)};
  TickPlan second = Tick(pool, limits, kNow);
  EXPECT_TRUE(second.stop.empty());
  EXPECT_EQ(second.start, 0);
}

}  // namespace
}  // namespace thaw::pool

namespace thaw::pool {
namespace {

TEST(InitBackoffTest, DoublesFromOneSecondToFiveMinutes) {
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {0, 0},           {1, 1'000'000},    {2, 2'000'000},     {3, 4'000'000},
      {9, 256'000'000}, {10, 300'000'000}, {1000, 300'000'000}};
  for (const auto& [failures, want] : cases) {
    EXPECT_EQ(InitBackoffUs(failures), want) << failures << " failures";
  }
}

}  // namespace
}  // namespace thaw::pool

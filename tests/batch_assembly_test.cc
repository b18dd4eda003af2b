// Tables of cases for batch assembly (dispatch/batch_assembly.h): when waiting calls go to an
// instance as one batch. No pool, no clock: each case is a snapshot and a time.
#include "dispatch/batch_assembly.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "common/clock.h"

namespace thaw::dispatch {
namespace {

constexpr int64_t kMs = 1000;
constexpr int64_t kT0 = 5'000'000;  // when the oldest call arrived (monotonic)
const BatchLimits kLimits{.max_size = 16, .max_wait_us = 5 * kMs};

struct Case {
  std::string name;
  BatchQueue queue;
  BatchLimits limits;
  int64_t now_us;
  BatchDecision::Kind kind;
  int64_t size = 0;     // kDispatch
  int64_t wake_us = 0;  // kHold
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

BatchQueue Waiting(int64_t n, bool slot_free, int64_t running, int64_t deadline_us = 0) {
  return {.waiting = n,
          .oldest_arrived_us = kT0,
          .earliest_deadline_us = deadline_us,
          .slot_free = slot_free,
          .running = running};
}

std::vector<Case> Cases() {
  using K = BatchDecision::Kind;
  return {
      {"NothingWaits", Waiting(0, true, 0), kLimits, kT0, K::kIdle},
      {"NoSlotFreeLeavesCallsWaiting", Waiting(3, false, 4), kLimits, kT0 + 50 * kMs, K::kIdle},
      {"FullBatchWaitingForASlotStaysIdle", Waiting(40, false, 2), kLimits, kT0, K::kIdle},
      {"LoneCallOnIdlePoolGoesAtOnce", Waiting(1, true, 0), kLimits, kT0, K::kDispatch, 1},
      {"SeveralCallsOnIdlePoolGoAtOnce", Waiting(5, true, 0), kLimits, kT0, K::kDispatch, 5},
      {"FullBatchGoesAtOnce", Waiting(16, true, 3), kLimits, kT0, K::kDispatch, 16},
      {"MoreThanFullTakesMaxSize", Waiting(40, true, 3), kLimits, kT0, K::kDispatch, 16},
      {"MoreThanFullOnIdlePoolTakesMaxSize", Waiting(40, true, 0), kLimits, kT0, K::kDispatch, 16},
      {"PartialBatchUnderLoadIsHeld", Waiting(3, true, 2), kLimits, kT0 + 1 * kMs, K::kHold, 0,
       kT0 + 5 * kMs},
      {"PartialBatchGoesWhenMaxWaitIsUp", Waiting(3, true, 2), kLimits, kT0 + 5 * kMs, K::kDispatch,
       3},
      {"PartialBatchGoesPastMaxWait", Waiting(3, true, 2), kLimits, kT0 + 9 * kMs, K::kDispatch, 3},
      {"DeadlineBeforeMaxWaitShortensTheHold", Waiting(3, true, 2, kT0 + 2 * kMs), kLimits,
       kT0 + 1 * kMs, K::kHold, 0, kT0 + 2 * kMs},
      {"DeadlineReachedDispatches", Waiting(3, true, 2, kT0 + 2 * kMs), kLimits, kT0 + 2 * kMs,
       K::kDispatch, 3},
      {"DeadlinePassedDispatches", Waiting(3, true, 2, kT0 - 1), kLimits, kT0, K::kDispatch, 3},
      {"DeadlineAfterMaxWaitDoesNotExtendIt", Waiting(3, true, 2, kT0 + 60 * kMs), kLimits,
       kT0 + 1 * kMs, K::kHold, 0, kT0 + 5 * kMs},
      {"ZeroMaxWaitNeverHolds",
       Waiting(3, true, 2),
       {.max_size = 16, .max_wait_us = 0},
       kT0,
       K::kDispatch,
       3},
      {"MaxSizeOneIsUnbatched",
       Waiting(3, true, 2),
       {.max_size = 1, .max_wait_us = 5 * kMs},
       kT0,
       K::kDispatch,
       1},
  };
}

class BatchAssemblyTest : public ::testing::TestWithParam<Case> {};

TEST_P(BatchAssemblyTest, Decides) {
  const Case& c = GetParam();
  BatchDecision d = AssembleBatch(c.queue, c.limits, c.now_us);
  EXPECT_EQ(d.kind, c.kind);
  if (c.kind == BatchDecision::Kind::kDispatch) {
    EXPECT_EQ(d.size, c.size);
  }
  if (c.kind == BatchDecision::Kind::kHold) {
    EXPECT_EQ(d.wake_us, c.wake_us);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, BatchAssemblyTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

// A held batch, followed on a fake clock: it waits for joiners while the wake-up time is ahead
// and goes with everyone who joined once the time comes, never later.
TEST(BatchAssemblyClockTest, HeldBatchGoesAtItsWakeUpTime) {
  FakeClock clock(kT0);
  BatchQueue q = Waiting(1, true, 1);
  BatchDecision d = AssembleBatch(q, kLimits, clock.MonoMicros());
  ASSERT_EQ(d.kind, BatchDecision::Kind::kHold);
  EXPECT_EQ(d.wake_us, kT0 + 5 * kMs);
  for (int i = 0; i < 4; ++i) {
    clock.Advance(1 * kMs);
    ++q.waiting;  // a caller joins
    d = AssembleBatch(q, kLimits, clock.MonoMicros());
    ASSERT_EQ(d.kind, BatchDecision::Kind::kHold) << "after " << i + 1 << " ms";
    EXPECT_EQ(d.wake_us, kT0 + 5 * kMs);
  }
  clock.Advance(1 * kMs);
  d = AssembleBatch(q, kLimits, clock.MonoMicros());
  ASSERT_EQ(d.kind, BatchDecision::Kind::kDispatch);
  EXPECT_EQ(d.size, 5);
}

}  // namespace
}  // namespace thaw::dispatch

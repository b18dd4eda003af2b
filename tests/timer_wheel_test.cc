// TimerWheel with a fake clock (the wheel takes `now`), and WheelTimers on a real io_context.
#include "common/timer_wheel.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/shard.h"
#include "common/timers.h"

namespace thaw {
namespace {

// Runs what Advance returned, in its order.
void RunDue(std::vector<std::function<void()>> due) {
  for (auto& f : due) f();
}

TEST(TimerWheelTest, FiresOnTheFirstTickAtOrAfterItsDeadlineNeverBefore) {
  FakeClock clock;
  TimerWheel wheel(/*tick_us=*/1000, /*slots=*/8, clock.MonoMicros());
  std::vector<std::string> fired;
  wheel.Add(clock.MonoMicros() + 2500, [&] { fired.push_back("a"); });
  clock.Advance(2000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_TRUE(fired.empty()) << "2.5 ms deadline fired at 2 ms";
  clock.Advance(999);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_TRUE(fired.empty()) << "fired before the tick that holds its deadline";
  clock.Advance(1);  // 3 ms: the first tick at or after 2.5 ms
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, std::vector<std::string>{"a"});
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheelTest, CancelledTimerNeverFiresAndCancelAfterFiringSaysSo) {
  FakeClock clock;
  TimerWheel wheel(1000, 8, clock.MonoMicros());
  int fired = 0;
  uint64_t a = wheel.Add(clock.MonoMicros() + 1000, [&] { ++fired; });
  uint64_t b = wheel.Add(clock.MonoMicros() + 1000, [&] { fired += 10; });
  EXPECT_TRUE(wheel.Cancel(a));
  EXPECT_FALSE(wheel.Cancel(a));
  clock.Advance(1000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, 10);
  EXPECT_FALSE(wheel.Cancel(b)) << "fired already";
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, DeadlinesBeyondOneLapWaitTheirLap) {
  FakeClock clock;
  TimerWheel wheel(1000, 4, clock.MonoMicros());  // a lap of 4 ms
  std::vector<std::string> fired;
  wheel.Add(clock.MonoMicros() + 1000, [&] { fired.push_back("1ms"); });
  wheel.Add(clock.MonoMicros() + 9000, [&] { fired.push_back("9ms"); });  // same slot, lap 3
  for (int ms = 1; ms <= 8; ++ms) {
    clock.Advance(1000);
    RunDue(wheel.Advance(clock.MonoMicros()));
  }
  EXPECT_EQ(fired, std::vector<std::string>{"1ms"});
  clock.Advance(1000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, (std::vector<std::string>{"1ms", "9ms"}));
}

TEST(TimerWheelTest, StallLongerThanALapFiresEverythingDueInDeadlineOrder) {
  FakeClock clock;
  TimerWheel wheel(1000, 4, clock.MonoMicros());
  std::vector<std::string> fired;
  wheel.Add(clock.MonoMicros() + 7000, [&] { fired.push_back("7ms"); });
  wheel.Add(clock.MonoMicros() + 2000, [&] { fired.push_back("2ms"); });
  wheel.Add(clock.MonoMicros() + 5000, [&] { fired.push_back("5ms"); });
  wheel.Add(clock.MonoMicros() + 30000, [&] { fired.push_back("30ms"); });
  clock.Advance(10000);  // the loop was stalled for 2.5 laps
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, (std::vector<std::string>{"2ms", "5ms", "7ms"}));
  EXPECT_EQ(wheel.size(), 1u);
  clock.Advance(20000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired.back(), "30ms");
}

TEST(TimerWheelTest, AlreadyDueTimerGoesOnTheNextTick) {
  FakeClock clock;
  TimerWheel wheel(1000, 8, clock.MonoMicros());
  clock.Advance(5000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  int fired = 0;
  wheel.Add(clock.MonoMicros() - 3000, [&] { ++fired; });
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, 0) << "ticks up to now have run: it waits for the next";
  clock.Advance(1000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, 1);
}

TEST(TimerWheelTest, NextTickSkipsEmptyBuckets) {
  FakeClock clock;
  TimerWheel wheel(1000, 64, clock.MonoMicros());
  EXPECT_EQ(wheel.NextTickUs(), -1);
  wheel.Add(clock.MonoMicros() + 40'500, [] {});
  EXPECT_EQ(wheel.NextTickUs(), clock.MonoMicros() + 41'000);
}

// NextTickUs resumes its scan where it last stopped: after arms, cancels (the call-deadline
// pattern: armed and cancelled within microseconds), laps and stalls, it still names the first
// non-empty bucket, checked against the timers the test itself keeps.
TEST(TimerWheelTest, NextTickStaysTheFirstNonEmptyBucketThroughArmsCancelsAndLaps) {
  FakeClock clock;
  const int64_t origin = clock.MonoMicros();
  constexpr int64_t kTick = 1000;
  constexpr int64_t kSlots = 16;
  TimerWheel wheel(kTick, kSlots, origin);
  std::mt19937_64 rng(7);
  std::map<uint64_t, int64_t> live;  // id -> its deadline tick
  for (int step = 0; step < 20'000; ++step) {
    const int64_t now_tick = (clock.MonoMicros() - origin) / kTick;
    const int op = static_cast<int>(rng() % 10);
    if (op < 5) {
      const int64_t deadline =
          clock.MonoMicros() + static_cast<int64_t>(rng() % (3 * kSlots * kTick));
      const uint64_t id = wheel.Add(deadline, [] {});
      live[id] = std::max((deadline - origin + kTick - 1) / kTick, now_tick + 1);
    } else if (op < 8 && !live.empty()) {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(wheel.Cancel(it->first));
      live.erase(it);
    } else {
      // Mostly a tick or two; now and then a stall of more than a lap.
      clock.Advance(rng() % 50 == 0 ? static_cast<int64_t>(rng() % (3 * kSlots)) * kTick
                                    : static_cast<int64_t>(rng() % (2 * kTick)));
      const int64_t tick = (clock.MonoMicros() - origin) / kTick;
      wheel.Advance(clock.MonoMicros());
      std::erase_if(live, [&](const auto& e) { return e.second <= tick; });
    }
    const int64_t current = (clock.MonoMicros() - origin) / kTick;
    int64_t want = -1;
    for (const auto& [id, tick] : live) {
      // The tick of this lap whose bucket holds it.
      const int64_t lap_tick = current + 1 + (tick - current - 1) % kSlots;
      if (want < 0 || lap_tick < want) want = lap_tick;
    }
    ASSERT_EQ(wheel.NextTickUs(), want < 0 ? -1 : origin + want * kTick) << "step " << step;
    ASSERT_EQ(wheel.size(), live.size());
  }
}

// Cancelled and fired timers leave their nodes for the next Add, but not what they captured:
// a cancelled deadline must not keep its invocation alive.
TEST(TimerWheelTest, ReusedNodesReleaseWhatTheCallbackCaptured) {
  FakeClock clock;
  TimerWheel wheel(1000, 8, clock.MonoMicros());
  auto held = std::make_shared<int>(1);
  const uint64_t a = wheel.Add(clock.MonoMicros() + 5000, [held] {});
  EXPECT_EQ(held.use_count(), 2);
  EXPECT_TRUE(wheel.Cancel(a));
  EXPECT_EQ(held.use_count(), 1) << "the cancelled timer still holds its capture";
  int fired = 0;
  wheel.Add(clock.MonoMicros() + 1000, [&fired, held] { ++fired; });  // reuses a's nodes
  EXPECT_EQ(held.use_count(), 2);
  clock.Advance(1000);
  RunDue(wheel.Advance(clock.MonoMicros()));
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(held.use_count(), 1);
  EXPECT_TRUE(wheel.empty());
}

// The driver: timers go on the calling thread's shard and fire there; a cancelled one does not.
TEST(WheelTimersTest, FiresOnTheShardThatArmedItAndNotOnceCancelled) {
  boost::asio::io_context shard0, shard1;
  WheelTimers timers({shard0.get_executor(), shard1.get_executor()}, /*tick_us=*/1000);
  std::thread::id fired_on;
  bool cancelled_fired = false;
  std::unique_ptr<Timer> kept, cancelled;
  boost::asio::post(shard1, [&] {
    SetCurrentShard(1);
    kept = timers.After(3000, [&] {
      fired_on = std::this_thread::get_id();
      shard1.stop();
    });
    cancelled = timers.After(1000, [&] { cancelled_fired = true; });
    cancelled->Cancel();
  });
  const int64_t start = MonoNowMicros();
  std::thread::id runner_id;
  std::thread runner([&] {
    runner_id = std::this_thread::get_id();
    shard1.run();
  });
  runner.join();
  EXPECT_EQ(fired_on, runner_id);
  EXPECT_FALSE(cancelled_fired);
  EXPECT_GE(MonoNowMicros() - start, 3000);
  EXPECT_EQ(shard0.poll(), 0u) << "shard 0 had nothing to run";
}

// A timer due before the one the shard's clock is armed for re-arms it: it is not held back.
TEST(WheelTimersTest, SoonerTimerIsNotHeldBackByALaterOne) {
  boost::asio::io_context shard0;
  WheelTimers timers({shard0.get_executor()}, /*tick_us=*/1000);
  std::unique_ptr<Timer> later = timers.After(5'000'000, [] {});
  int64_t fired_after = -1;
  const int64_t start = MonoNowMicros();
  std::unique_ptr<Timer> sooner = timers.After(2000, [&] {
    fired_after = MonoNowMicros() - start;
    shard0.stop();
  });
  shard0.run();
  EXPECT_GE(fired_after, 2000);
  EXPECT_LT(fired_after, 1'000'000) << "held back by the 5 s timer";
}

}  // namespace
}  // namespace thaw

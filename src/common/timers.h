// Timers: the seam for "run this after that long", beside Clock (clock.h). AsioTimers arms
// steady timers on an executor; a test's manual timers (tests/manual_executor.h) fire when its
// FakeClock is advanced, onto an executor the test runs one handler at a time, so a race
// between a timer and another event is ordered by the test, not by the scheduler.
// WheelTimers puts them on a timer wheel per shard (timer_wheel.h) instead of one steady timer
// each. Thread-safe: After and Cancel may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace thaw {

// One armed timer. Destroying it cancels it.
class Timer {
 public:
  virtual ~Timer() = default;
  // Stops it unless it has fired. Once fired its callback is queued and runs anyway, as with
  // asio: the callback must check that what it was armed for is still so.
  virtual void Cancel() = 0;
};

class Timers {
 public:
  virtual ~Timers() = default;
  // Runs `fire` once `delay_us` have passed (on the implementation's executor).
  [[nodiscard]] virtual std::unique_ptr<Timer> After(int64_t delay_us,
                                                     std::function<void()> fire) = 0;
};

class AsioTimers final : public Timers {
 public:
  explicit AsioTimers(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  std::unique_ptr<Timer> After(int64_t delay_us, std::function<void()> fire) override;

 private:
  const boost::asio::any_io_executor executor_;
};

// One TimerWheel per shard (common/shard.h), each driven by one steady timer on its shard's
// executor that runs only while its wheel holds a timer. After puts the timer on the calling
// thread's shard (shard 0 from any other thread), where it fires: a call's deadline is armed
// and cancelled by the shard that serves it, under that wheel's own (uncontended) lock.
// Outlives every Timer it made and stops ticking once its shards' loops stop.
class WheelTimers final : public Timers {
 public:
  WheelTimers(const std::vector<boost::asio::any_io_executor>& shards, int64_t tick_us);
  ~WheelTimers() override;
  std::unique_ptr<Timer> After(int64_t delay_us, std::function<void()> fire) override;

  struct Shard;

 private:
  std::vector<std::shared_ptr<Shard>> shards_;
};

}  // namespace thaw

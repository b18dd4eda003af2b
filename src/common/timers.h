// Timers: the seam for "run this after that long", beside Clock (clock.h). AsioTimers arms
// steady timers on an executor; a test's manual timers (tests/manual_executor.h) fire when its
// FakeClock is advanced, onto an executor the test runs one handler at a time, so a race
// between a timer and another event is ordered by the test, not by the scheduler.
// Thread-safe: After and Cancel may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>

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

}  // namespace thaw

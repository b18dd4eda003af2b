// Clock: the seam for time. Durations use the monotonic clock, timestamps the wall clock,
// both as int64 microseconds. RealClock is stateless and thread-safe; FakeClock is for tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace thaw {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t MonoMicros() const = 0;
  virtual int64_t WallMicros() const = 0;
};

inline int64_t MonoNowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t WallNowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class RealClock final : public Clock {
 public:
  int64_t MonoMicros() const override { return MonoNowMicros(); }
  int64_t WallMicros() const override { return WallNowMicros(); }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start = 1'000'000) : now_(start) {}
  int64_t MonoMicros() const override { return now_; }
  int64_t WallMicros() const override { return now_; }
  void Advance(int64_t micros) { now_ += micros; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace thaw

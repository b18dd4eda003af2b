#include "common/timers.h"

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <mutex>
#include <optional>

#include "common/clock.h"
#include "common/shard.h"
#include "common/timer_wheel.h"

namespace thaw {
namespace {

class AsioTimer final : public Timer {
 public:
  AsioTimer(const boost::asio::any_io_executor& executor, int64_t delay_us)
      : timer_(executor, std::chrono::microseconds(delay_us)) {}
  ~AsioTimer() override { timer_.cancel(); }
  void Cancel() override { timer_.cancel(); }
  boost::asio::steady_timer& timer() { return timer_; }

 private:
  boost::asio::steady_timer timer_;
};

}  // namespace

std::unique_ptr<Timer> AsioTimers::After(int64_t delay_us, std::function<void()> fire) {
  auto timer = std::make_unique<AsioTimer>(executor_, delay_us);
  timer->timer().async_wait([fire = std::move(fire)](boost::system::error_code ec) {
    if (!ec) fire();
  });
  return timer;
}

struct WheelTimers::Shard : std::enable_shared_from_this<Shard> {
  Shard(const boost::asio::any_io_executor& executor, int64_t tick_us)
      : wheel(tick_us, kSlots, MonoNowMicros()) {
    tick.emplace(executor);
  }

  // Arms the steady timer for the wheel's next due tick, unless it is armed for that or
  // sooner (a timer due before the armed tick re-arms it). Holds mu.
  void ArmLocked() {
    const int64_t next = wheel.NextTickUs();
    if (!tick || next < 0 || (ticking && armed_at_us <= next)) return;
    ticking = true;
    armed_at_us = next;
    tick->expires_at(std::chrono::steady_clock::time_point(std::chrono::microseconds(next)));
    tick->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;  // re-armed sooner, or shut down
      if (auto self = weak.lock()) self->OnTick();
    });
  }

  void OnTick() {
    std::vector<std::function<void()>> due;
    {
      std::lock_guard<std::mutex> lock(mu);
      ticking = false;
      due = wheel.Advance(MonoNowMicros());
      ArmLocked();
    }
    for (auto& fire : due) fire();
  }

  // A lap of seconds (4,096 ticks of a few milliseconds), about a call's deadline, so a
  // bucket holds mostly the timers due on its own tick.
  static constexpr size_t kSlots = 4096;
  std::mutex mu;
  // Guarded by mu. Reset by ~WheelTimers, while its io_context still exists: a Timer may keep
  // this Shard alive past the io_contexts (an invocation freed as another shard's io_context
  // drops its queued handlers), and a steady timer must not outlive its own.
  std::optional<boost::asio::steady_timer> tick;
  TimerWheel wheel;         // guarded by mu
  bool ticking = false;     // guarded by mu: `tick` is armed, for armed_at_us
  int64_t armed_at_us = 0;  // guarded by mu
};

namespace {

class WheelTimer final : public Timer {
 public:
  WheelTimer(std::shared_ptr<WheelTimers::Shard> shard, uint64_t id)
      : shard_(std::move(shard)), id_(id) {}
  ~WheelTimer() override { Cancel(); }
  void Cancel() override {
    if (id_ == 0) return;
    std::lock_guard<std::mutex> lock(shard_->mu);
    shard_->wheel.Cancel(id_);
    // The steady timer stays armed (re-arming it per call is the system call the wheel saves):
    // it fires once more, finds nothing due, and sleeps until the next timer.
    id_ = 0;
  }

 private:
  const std::shared_ptr<WheelTimers::Shard> shard_;
  uint64_t id_;  // 0 once cancelled
};

}  // namespace

WheelTimers::WheelTimers(const std::vector<boost::asio::any_io_executor>& shards, int64_t tick_us) {
  for (const auto& ex : shards) shards_.push_back(std::make_shared<Shard>(ex, tick_us));
}

WheelTimers::~WheelTimers() {
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->tick.reset();
  }
}

std::unique_ptr<Timer> WheelTimers::After(int64_t delay_us, std::function<void()> fire) {
  const int current = CurrentShard();
  const size_t i = current >= 0 && static_cast<size_t>(current) < shards_.size()
                       ? static_cast<size_t>(current)
                       : 0;
  Shard& shard = *shards_[i];
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    id = shard.wheel.Add(MonoNowMicros() + delay_us, std::move(fire));
    shard.ArmLocked();
  }
  return std::make_unique<WheelTimer>(shards_[i], id);
}

}  // namespace thaw

#include "common/timers.h"

#include <boost/asio/steady_timer.hpp>
#include <chrono>

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

}  // namespace thaw

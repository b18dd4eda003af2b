// ManualExecutor and ManualTimers: an executor whose queued handlers a test runs one at a time,
// and timers that fire onto it only when the test advances its FakeClock. Together they let a
// unit test order the races of a component that posts completions and arms deadlines (the
// pool: tests/pool_race_test.cc) deterministically, without sleeps or threads. Single-threaded:
// the test's thread does everything.
#pragma once

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "common/timers.h"

namespace thaw::testing {

class ManualExecutor {
 public:
  ManualExecutor() : guard_(io_.get_executor()) {}
  boost::asio::any_io_executor executor() { return io_.get_executor(); }
  // Runs the oldest queued handler, if any; whether one ran.
  bool RunOne() { return io_.poll_one() > 0; }
  // Runs handlers until none is queued (including those they queue); how many ran.
  size_t RunAll() { return io_.poll(); }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
};

class ManualTimers final : public Timers {
 public:
  ManualTimers(FakeClock* clock, ManualExecutor* executor) : clock_(clock), executor_(executor) {}

  std::unique_ptr<Timer> After(int64_t delay_us, std::function<void()> fire) override {
    auto entry = std::make_shared<Entry>();
    entry->due_us = clock_->MonoMicros() + delay_us;
    entry->fire = std::move(fire);
    entries_.push_back(entry);
    return std::make_unique<Handle>(entry);
  }

  // Moves the clock on by `us` and queues, in due order, every timer due by then. Their
  // callbacks run when the test runs the executor.
  void Advance(int64_t us) {
    clock_->Advance(us);
    const int64_t now = clock_->MonoMicros();
    std::vector<std::shared_ptr<Entry>> due, kept;
    for (auto& e : entries_) {
      if (e->canceled) continue;
      (e->due_us <= now ? due : kept).push_back(e);
    }
    entries_ = std::move(kept);
    std::stable_sort(due.begin(), due.end(),
                     [](const auto& a, const auto& b) { return a->due_us < b->due_us; });
    for (auto& e : due) {
      e->fired = true;
      boost::asio::post(executor_->executor(), std::move(e->fire));
    }
  }

  // Timers armed and neither fired nor canceled.
  size_t armed() const {
    size_t n = 0;
    for (const auto& e : entries_) n += e->canceled ? 0 : 1;
    return n;
  }

 private:
  struct Entry {
    int64_t due_us = 0;
    std::function<void()> fire;
    bool canceled = false;
    bool fired = false;
  };
  class Handle final : public Timer {
   public:
    explicit Handle(std::shared_ptr<Entry> entry) : entry_(std::move(entry)) {}
    ~Handle() override { Cancel(); }
    void Cancel() override {
      if (!entry_->fired) entry_->canceled = true;
    }

   private:
    std::shared_ptr<Entry> entry_;
  };

  FakeClock* const clock_;
  ManualExecutor* const executor_;
  std::vector<std::shared_ptr<Entry>> entries_;
};

}  // namespace thaw::testing

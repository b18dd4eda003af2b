// TimerWheel: a hashed timing wheel (Varghese and Lauck): `slots` buckets of `tick_us` each,
// for the many short-lived timers of a shard (invocation deadlines, armed and nearly always
// cancelled within microseconds). Arm and cancel are O(1) with no system call and no
// allocation in the event loop's timer queue; a timer fires on the first tick at or after its
// deadline, so at most one tick late and never early. Pure: time comes in as `now_us`
// (monotonic), so a test drives it with a fake clock. Not thread-safe: its owner locks it
// (WheelTimers, timers.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <unordered_map>
#include <vector>

namespace thaw {

class TimerWheel {
 public:
  // `now_us`: the wheel's origin; ticks count from here.
  TimerWheel(int64_t tick_us, size_t slots, int64_t now_us);
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `fire` for `deadline_us`; returns its id (never 0) for Cancel.
  uint64_t Add(int64_t deadline_us, std::function<void()> fire);
  // Disarms timer `id`; false when it fired (was returned by Advance) or is unknown.
  bool Cancel(uint64_t id);
  // Moves the wheel on to `now_us` and returns the callbacks of the timers now due, in
  // deadline-tick order; the caller runs them (outside its lock).
  std::vector<std::function<void()>> Advance(int64_t now_us);
  // When Advance may next have something to do: the start of the first tick whose bucket
  // holds a timer; -1 when empty. Amortised O(1): it scans on from where it last stopped.
  int64_t NextTickUs() const;
  size_t size() const { return by_id_.size(); }
  bool empty() const { return by_id_.empty(); }
  int64_t tick_us() const { return tick_us_; }

 private:
  struct Entry {
    uint64_t id;
    int64_t tick;  // the first tick at or after its deadline
    std::function<void()> fire;
  };
  using Bucket = std::list<Entry>;
  using Index = std::unordered_map<uint64_t, std::pair<size_t, Bucket::iterator>>;
  // Takes `entry` (in `bucket`) out of the wheel, keeping its nodes for the next Add.
  void Remove(Bucket& bucket, Bucket::iterator entry);
  // Runs tick `t`: moves its due entries' callbacks to `out`.
  void RunTick(int64_t t, std::vector<std::function<void()>>& out);

  const int64_t tick_us_;
  const int64_t origin_us_;
  std::vector<Bucket> buckets_;
  int64_t current_tick_ = 0;  // every tick up to here has run
  // A lower bound on the first non-empty bucket's tick: the buckets of ticks current_tick_ + 1
  // up to (not including) it are empty. Add lowers it, NextTickUs raises it as it scans (Cancel
  // and Advance only empty buckets, which keeps it true), so consecutive calls do not rescan
  // the empty stretch ahead of a far deadline. Mutable: a cache of what NextTickUs found.
  mutable int64_t first_tick_hint_ = 1;
  uint64_t next_id_ = 1;
  Index by_id_;
  // Nodes of timers gone (cancelled or fired), reused by Add: no allocation per timer once as
  // many have been armed at once. At most kMaxSpare of each are kept.
  static constexpr size_t kMaxSpare = 1024;
  Bucket spare_entries_;
  std::vector<Index::node_type> spare_index_;
};

}  // namespace thaw

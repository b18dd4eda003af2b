#include "common/timer_wheel.h"

#include <algorithm>

namespace thaw {

TimerWheel::TimerWheel(int64_t tick_us, size_t slots, int64_t now_us)
    : tick_us_(std::max<int64_t>(1, tick_us)),
      origin_us_(now_us),
      buckets_(std::max<size_t>(1, slots)) {}

uint64_t TimerWheel::Add(int64_t deadline_us, std::function<void()> fire) {
  // Rounded up: a timer never fires before its deadline. One already due goes on the next tick.
  int64_t tick = (deadline_us - origin_us_ + tick_us_ - 1) / tick_us_;
  tick = std::max(tick, current_tick_ + 1);
  const size_t slot = static_cast<size_t>(tick) % buckets_.size();
  // The tick of this lap that `slot` stands for (a later lap's timer sits in its bucket early).
  const int64_t slots = static_cast<int64_t>(buckets_.size());
  const int64_t lap_tick = current_tick_ + 1 + (tick - current_tick_ - 1) % slots;
  first_tick_hint_ = std::min(first_tick_hint_, lap_tick);
  const uint64_t id = next_id_++;
  Bucket& bucket = buckets_[slot];
  // A timer armed and cancelled per call: its list node and index node are the last one's,
  // moved back (splice, node handles) instead of freed and allocated again.
  if (spare_entries_.empty()) {
    bucket.push_back(Entry{id, tick, std::move(fire)});
  } else {
    bucket.splice(bucket.end(), spare_entries_, spare_entries_.begin());
    bucket.back() = Entry{id, tick, std::move(fire)};
  }
  if (spare_index_.empty()) {
    by_id_.emplace(id, std::make_pair(slot, std::prev(bucket.end())));
  } else {
    auto node = std::move(spare_index_.back());
    spare_index_.pop_back();
    node.key() = id;
    node.mapped() = std::make_pair(slot, std::prev(bucket.end()));
    by_id_.insert(std::move(node));
  }
  return id;
}

void TimerWheel::Remove(Bucket& bucket, Bucket::iterator entry) {
  auto index = by_id_.find(entry->id);
  if (spare_entries_.size() < kMaxSpare) {
    entry->fire = nullptr;  // what it captured goes now, not when the node is reused
    spare_entries_.splice(spare_entries_.end(), bucket, entry);
    spare_index_.push_back(by_id_.extract(index));
  } else {
    bucket.erase(entry);
    by_id_.erase(index);
  }
}

bool TimerWheel::Cancel(uint64_t id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  Remove(buckets_[it->second.first], it->second.second);
  return true;
}

void TimerWheel::RunTick(int64_t t, std::vector<std::function<void()>>& out) {
  Bucket& bucket = buckets_[static_cast<size_t>(t) % buckets_.size()];
  for (auto it = bucket.begin(); it != bucket.end();) {
    if (it->tick > t) {  // a later lap of the wheel
      ++it;
      continue;
    }
    out.push_back(std::move(it->fire));
    Remove(bucket, it++);
  }
}

std::vector<std::function<void()>> TimerWheel::Advance(int64_t now_us) {
  std::vector<std::function<void()>> due;
  const int64_t target = (now_us - origin_us_) / tick_us_;
  if (target <= current_tick_) return due;
  const int64_t slots = static_cast<int64_t>(buckets_.size());
  if (target - current_tick_ >= slots) {
    // A whole lap or more passed (the loop was stalled): every bucket once, sorted after.
    std::vector<std::pair<int64_t, std::function<void()>>> late;
    for (Bucket& bucket : buckets_) {
      for (auto it = bucket.begin(); it != bucket.end();) {
        if (it->tick > target) {
          ++it;
          continue;
        }
        late.emplace_back(it->tick, std::move(it->fire));
        Remove(bucket, it++);
      }
    }
    std::stable_sort(late.begin(), late.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [tick, fire] : late) due.push_back(std::move(fire));
  } else {
    for (int64_t t = current_tick_ + 1; t <= target; ++t) RunTick(t, due);
  }
  current_tick_ = target;
  return due;
}

int64_t TimerWheel::NextTickUs() const {
  if (by_id_.empty()) return -1;
  // The first tick whose bucket holds a timer, so a wheel holding only far deadlines does not
  // wake every tick (that bucket's timer may be a lap later: it then looks again from there).
  const int64_t slots = static_cast<int64_t>(buckets_.size());
  for (int64_t t = std::max(first_tick_hint_, current_tick_ + 1); t <= current_tick_ + slots; ++t) {
    if (!buckets_[static_cast<size_t>(t) % buckets_.size()].empty()) {
      first_tick_hint_ = t;
      return origin_us_ + t * tick_us_;
    }
  }
  first_tick_hint_ = current_tick_ + 1;  // unreachable (some bucket holds it): rescan next time
  return origin_us_ + (current_tick_ + 1) * tick_us_;
}

}  // namespace thaw

#include "metrics/stats_ring.h"

#include <algorithm>
#include <iterator>

namespace thaw::metrics {

namespace {

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool IsZero(const LiveSample& s) {
  return s.ready == 0 && s.busy == 0 && s.starting == 0 && s.stopping == 0 && s.inflight == 0 &&
         s.queued == 0;
}

void Max(LiveSample& into, const LiveSample& s) {
  into.ready = std::max(into.ready, s.ready);
  into.busy = std::max(into.busy, s.busy);
  into.starting = std::max(into.starting, s.starting);
  into.stopping = std::max(into.stopping, s.stopping);
  into.inflight = std::max(into.inflight, s.inflight);
  into.queued = std::max(into.queued, s.queued);
}

// "90", "90s", "30m", "1h", "1d" -> seconds; -1 when malformed.
int64_t ParseSeconds(const std::string& text) {
  if (text.empty() || text.size() > 12) return -1;
  int64_t unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 's':
      digits.pop_back();
      break;
    case 'm':
      unit = 60;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600;
      digits.pop_back();
      break;
    case 'd':
      unit = 86400;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty()) return -1;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v * unit;
}

}  // namespace

StatusOr<StatsRange> ParseStatsRange(const std::string& window, const std::string& step,
                                     int64_t now_us) {
  StatsRange r;
  r.window_s = window.empty() ? 3600 : ParseSeconds(window);
  if (r.window_s < 60 || r.window_s > 7 * 86400) {
    return InvalidArgument(
        "window: expected a duration from 60s to 7d (e.g. 1h, 24h, 3600), got '" + window + "'");
  }
  r.step_s = step.empty() ? 60 : ParseSeconds(step);
  if (r.step_s < 60 || r.step_s > 86400 || r.step_s % 60 != 0) {
    return InvalidArgument("step: expected seconds, a multiple of 60 up to 86400, got '" + step +
                           "'");
  }
  if (r.window_s % r.step_s != 0) {
    return InvalidArgument("window: " + std::to_string(r.window_s) +
                           " s is not a whole number of steps of " + std::to_string(r.step_s) +
                           " s");
  }
  if (r.buckets() > StatsRing::kSlots) {
    return InvalidArgument("step: " + std::to_string(r.step_s) + " s cuts a window of " +
                           std::to_string(r.window_s) + " s into more than " +
                           std::to_string(StatsRing::kSlots) + " points");
  }
  const int64_t step_us = r.step_s * 1'000'000;
  r.to_us = (FloorDiv(now_us, step_us) + 1) * step_us;
  r.from_us = r.to_us - r.window_s * 1'000'000;
  return r;
}

void StatsRing::Record(int64_t wall_us, const std::map<std::string, LiveSample>& samples) {
  const int64_t minute = FloorDiv(wall_us, 60'000'000);
  const int64_t oldest = minute - kSlots + 1;  // the first minute still kept
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [function, sample] : samples) {
    Track& t = tracks_[function];
    if (t.present.empty() || t.present.back().second < minute - 1) {
      t.present.emplace_back(minute, minute);
    } else {
      t.present.back().second = std::max(t.present.back().second, minute);
    }
    if (IsZero(sample)) continue;
    if (t.busy.empty() || t.busy.back().minute != minute) {
      t.busy.push_back(LiveSlot{minute, sample});
    } else {
      Max(t.busy.back().max, sample);
    }
  }
  // What is a day old goes; a function unseen for a whole day (deleted, or renamed) with it.
  for (auto it = tracks_.begin(); it != tracks_.end();) {
    Track& t = it->second;
    auto run = std::find_if(t.present.begin(), t.present.end(),
                            [&](const auto& r) { return r.second >= oldest; });
    t.present.erase(t.present.begin(), run);
    if (!t.present.empty()) t.present.front().first = std::max(t.present.front().first, oldest);
    auto kept = std::find_if(t.busy.begin(), t.busy.end(),
                             [&](const LiveSlot& s) { return s.minute >= oldest; });
    t.busy.erase(t.busy.begin(), kept);
    it = t.present.empty() ? tracks_.erase(it) : std::next(it);
  }
}

std::vector<LiveSlot> StatsRing::Range(const std::string& function, int64_t from_minute,
                                       int64_t count) const {
  std::vector<LiveSlot> out(static_cast<size_t>(std::max<int64_t>(count, 0)));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tracks_.find(function);
  if (it == tracks_.end()) return out;
  const int64_t end = from_minute + count;
  for (const auto& [first, last] : it->second.present) {
    for (int64_t m = std::max(first, from_minute); m <= last && m < end; ++m) {
      out[static_cast<size_t>(m - from_minute)].minute = m;  // sampled: zeros unless busy
    }
  }
  for (const LiveSlot& s : it->second.busy) {
    if (s.minute >= from_minute && s.minute < end)
      out[static_cast<size_t>(s.minute - from_minute)] = s;
  }
  return out;
}

}  // namespace thaw::metrics

// StatsRing: the live side of GET /v1/functions/{name}/stats: per function, one slot per wall
// clock minute for the last day, each holding the most instances seen in each state and the most
// calls in flight during that minute. The server samples the pools into it about once a second
// (Record); the ledger holds everything else the charts need. Memory is bounded: kSlots slots per
// function, and a function not sampled for a whole day is forgotten. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace thaw::metrics {

// What one function looked like at one moment (summed over its versions' pools).
struct LiveSample {
  int64_t ready = 0;  // initialised and idle or serving (busy is a subset of ready)
  int64_t busy = 0;   // ready instances serving at least one call
  int64_t starting = 0;
  int64_t stopping = 0;
  int64_t inflight = 0;  // calls running
  int64_t queued = 0;    // calls waiting for an instance
};

// One minute: the most of each figure seen in it.
struct LiveSlot {
  int64_t minute = -1;  // unix minute (wall seconds / 60); -1: never written
  LiveSample max;
};

// The buckets GET /v1/functions/{name}/stats answers with: `window` ("1h", "24h", "1d", "30m",
// or seconds: "3600", "3600s"; 60 s to 7 days) ending with the step-aligned bucket that holds
// `now_us`, cut into `step` seconds ("60" or "60s"; a multiple of 60, at most a day) buckets,
// at most 1440 of them; empty strings mean 1h and 60. Errors name the parameter.
struct StatsRange {
  int64_t window_s = 0;
  int64_t step_s = 0;
  int64_t from_us = 0;  // the first bucket's start (a multiple of step)
  int64_t to_us = 0;    // the last bucket's end: from_us + window
  int64_t buckets() const { return window_s / step_s; }
};
StatusOr<StatsRange> ParseStatsRange(const std::string& window, const std::string& step,
                                     int64_t now_us);

class StatsRing {
 public:
  static constexpr int64_t kSlots = 1440;  // one day of minutes (kept, and shown at most)

  // Folds `samples` (internal function name -> its figures now) into the slot of `wall_us`'s
  // minute. A function absent from `samples` gets nothing (its chart shows no point there, and
  // Range reports zero instances for such minutes only if it was sampled in them).
  void Record(int64_t wall_us, const std::map<std::string, LiveSample>& samples);
  // The slots of `function` for the minutes [from_minute, from_minute + count), in order; a
  // minute never sampled comes back with minute = -1.
  std::vector<LiveSlot> Range(const std::string& function, int64_t from_minute,
                              int64_t count) const;

 private:
  // One function's day, kept sparse: most functions are idle most minutes, and a day of slots
  // for each (1440 x 56 bytes) made thaw's memory 90 KB per deployed function.
  struct Track {
    // The minutes it was sampled in, as [first, last] runs, oldest first (usually one run).
    std::vector<std::pair<int64_t, int64_t>> present;
    // The minutes in which some figure was above zero, oldest first; the others read as zeros.
    std::vector<LiveSlot> busy;
  };
  mutable std::mutex mu_;
  std::map<std::string, Track> tracks_;  // guarded by mu_
};

}  // namespace thaw::metrics

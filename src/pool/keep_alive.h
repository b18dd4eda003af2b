// Adaptive keep-alive, after Shahrad et al., "Serverless in the Wild" (ATC'20): a function's
// idle times in a histogram (1-minute bins over 4 hours) and the pure decision, from a snapshot,
// of how long to keep an idle instance, when to pre-warm one, and whether to keep a template.
// The server (pool.cc, through policy.h's Tick) and `thaw simulate` (src/sim/) run this same
// code. IdleHistogram is a value type, not thread-safe: its owner guards it.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace thaw::pool {

// Idle times: from the moment a function had no call running to the arrival of its next call.
class IdleHistogram {
 public:
  static constexpr int kBins = 240;                 // 4 hours of 1-minute bins
  static constexpr int64_t kBinUs = 60'000'000;     // one minute
  static constexpr int64_t kAgeAtSamples = 10'000;  // then every count halves: recent traffic wins

  void Record(int64_t idle_us);
  int64_t in_bounds() const { return in_bounds_; }
  int64_t out_of_bounds() const { return out_of_bounds_; }
  int64_t total() const { return in_bounds_ + out_of_bounds_; }
  int64_t bin(int i) const { return bins_[i]; }
  // The bin holding the `pct` percentile of the in-bounds idle times (nearest rank); -1 if none.
  int PercentileBin(double pct) const;
  // Coefficient of variation of the bin counts: high when idle times crowd into a few bins (a
  // pattern worth predicting), near 0 when they spread evenly over 4 hours. 0 when empty.
  double BinCountCv() const;

  // The counts as text, for IdleTimesStore: "bin:count" for each non-empty bin, comma-separated,
  // then "|" and the out-of-bounds count ("3:20,14:5|1"). Decode refuses any other text.
  std::string Encode() const;
  static std::optional<IdleHistogram> Decode(std::string_view text);

 private:
  std::array<int64_t, kBins> bins_{};
  int64_t in_bounds_ = 0;
  int64_t out_of_bounds_ = 0;  // idle times of 4 hours or more
};

enum class KeepAliveMode { kFixed, kAdaptive };

// What the windows were derived from.
enum class KeepAliveBasis {
  kFixed,              // keep_alive: fixed, or an explicit idle_timeout_s
  kTooFewSamples,      // adaptive, but fewer than min_samples idle times: the fixed window
  kOutOfBounds,        // adaptive, but too many idle times of 4 hours or more: the fixed window
  kNotRepresentative,  // adaptive, but the histogram is flat (low CV): the fixed window
  kHistogram,          // adaptive: head and tail percentiles of the histogram
};

const char* KeepAliveBasisName(KeepAliveBasis basis);

// What should exist for an idle function version at `now`.
enum class WarmState {
  kInstance,  // an instance kept warm (with templates: the template too)
  kTemplate,  // only the template: the next call forks
  kNothing,   // the next call is a full cold start
};

const char* WarmStateName(WarmState state);

// The paper's knobs. Percentiles in 0..100.
struct KeepAliveParams {
  double head_pct = 5;             // pre-warm window: the head of the idle-time distribution
  double tail_pct = 99;            // keep-alive window ends at the tail
  int64_t margin_pct = 10;         // pre-warm 10% earlier, keep alive 10% longer
  int64_t min_samples = 10;        // fewer idle times than this: not yet representative
  double min_cv = 2.0;             // a flatter histogram (lower CV) is not representative
  double max_out_of_bounds = 0.5;  // a larger share of 4-hour-plus idle times: not representative
  // With templates: an idle instance beyond the most recently used one is kept this long only,
  // since another forks from the template in milliseconds. One template per version replaces
  // the idle instances of a burst.
  int64_t template_surplus_keep_us = 60'000'000;
  // With templates, while the histogram is not representative: the template alone is kept
  // this many times the fixed window (counted from the version falling idle), so a call that
  // comes a little later forks instead of starting cold.
  int64_t template_fallback_factor = 2;
};

struct KeepAliveSnapshot {
  KeepAliveMode mode = KeepAliveMode::kAdaptive;
  const IdleHistogram* idle = nullptr;    // may be null in fixed mode
  int64_t fixed_window_us = 300'000'000;  // the fixed mode's window, and adaptive's fallback
  bool templates = false;                 // the version may keep a template
  int64_t now_us = 0;
  int64_t idle_since_us = -1;  // when its last call ended with none running; -1: busy or never
};

// keep_alive: fixed (or an explicit idle_timeout_s) sets the instances' window only: the
// template stays while the version is callable, so that `idle_timeout_s: 0` scales to zero and
// still forks its next instance in milliseconds.
inline constexpr int64_t kKeepForever = std::numeric_limits<int64_t>::max();

struct KeepAlivePlan {
  KeepAliveBasis basis = KeepAliveBasis::kFixed;
  // After the function falls idle, nothing is kept for `prewarm_us` (0: the instance stays),
  // then an instance is loaded (pre-warmed) and kept `keep_alive_us` from then on. An idle
  // instance of a function that is not idle (a surplus instance after a burst) is kept
  // `keep_alive_us` from its own idle start.
  int64_t prewarm_us = 0;
  int64_t keep_alive_us = 0;
  // Templates only: idle instances but the most recently used one are kept this long (else
  // the same as keep_alive_us). The template is kept while any instance lives and until
  // `template_until_us` after the function fell idle (0: no template; kKeepForever: while the
  // version is callable, as keep_alive: fixed keeps it), except in the pre-warm gap: with
  // prewarm_us > 0 it goes as the function falls idle and the pre-warm makes it again (the
  // histogram says no call comes in the gap; a template is a process's memory).
  int64_t surplus_keep_us = 0;
  int64_t template_until_us = 0;
  // At the snapshot's `now`: what should exist, and whether an instance should be started now
  // because the pre-warm window opened (the caller starts one only if none is live).
  WarmState state = WarmState::kInstance;
  bool prewarm_now = false;
};

KeepAlivePlan PlanKeepAlive(const KeepAliveSnapshot& snapshot, const KeepAliveParams& params = {});

// What the server's driver does with a version's template at a tick, from the plan above: the
// template part of `adaptive+templates` as `thaw simulate` replays it.
enum class TemplateAction {
  kKeep,  // leave it as it is
  kDrop,  // end it: the plan keeps nothing now (the driver also waits for its forks to go)
  kMake,  // make it again: the plan wants it back (a pre-warm, or a call is expected)
};

const char* TemplateActionName(TemplateAction action);

struct TemplateSnapshot {
  bool ready = false;       // a template is up and may be forked
  bool dropped = false;     // none now because an earlier kDrop let it go
  bool pool_empty = false;  // the pool has no instance and nothing queued
};

// Wanted (the plan's state is not kNothing): made again if the plan dropped it (one that ended
// or never was is made by the next cold start, as before). Not wanted: dropped once the pool is
// empty. A template that the plan did not drop and that is not up is left alone.
TemplateAction PlanTemplate(const KeepAlivePlan& plan, const TemplateSnapshot& snapshot);

}  // namespace thaw::pool

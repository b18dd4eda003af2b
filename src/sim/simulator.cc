#include "sim/simulator.h"

#include <algorithm>
#include <cmath>

namespace thaw::sim {
namespace {

constexpr int64_t kMinuteUs = 60'000'000;

struct Instance {
  int64_t busy_until = 0;  // its calls of the last minute it served end here
  int64_t idle_since = 0;  // == busy_until once used; the load time for a pre-warmed one
};

struct Totals {
  int64_t invocations = 0;
  int64_t cold = 0;
  int64_t fork = 0;
  double idle_mb_us = 0;  // MB x microseconds held idle: instances, and a template alone
};

// One function's day under one policy.
class FunctionRun {
 public:
  FunctionRun(const FunctionTrace& f, const PolicySpec& p) : f_(f), p_(p) {}

  Totals Run(int64_t minutes) {
    const int64_t duration_us = std::llround(f_.duration_ms * 1000);
    for (int64_t m = 0; m < minutes; ++m) {
      const int64_t calls = f_.per_minute[m];
      if (calls == 0) continue;
      const int64_t t0 = m * kMinuteUs;
      Settle(t0);
      if (idle_since_ >= 0 && idle_since_ <= t0) idle_.Record(t0 - idle_since_);
      // Little's law: calls spread over the minute, each busy for the average duration.
      const int64_t need =
          std::clamp<int64_t>((calls * duration_us + kMinuteUs - 1) / kMinuteUs, 1, calls);
      const int64_t t1 = t0 + (calls - 1) * kMinuteUs / calls + duration_us;
      Use(t0, t1, need);
      totals_.invocations += calls;
    }
    const int64_t end = minutes * kMinuteUs;
    Settle(end);
    for (const Instance& i : live_) {
      if (i.idle_since < end) idle_us_ += end - i.idle_since;
    }
    totals_.idle_mb_us = idle_us_ * f_.memory_mb;
    return totals_;
  }

 private:
  pool::KeepAlivePlan Plan(int64_t now, bool idle) const {
    pool::KeepAliveSnapshot s;
    s.mode = p_.mode;
    s.idle = &idle_;
    s.fixed_window_us = p_.fixed_window_us;
    s.templates = p_.templates;
    s.now_us = now;
    s.idle_since_us = idle ? idle_since_ : -1;
    return pool::PlanKeepAlive(s);
  }

  // Applies what the policy did between the last arrival and `now`: idle instances stopped,
  // one pre-warmed, the template dropped. Called once per idle period (then a call comes).
  void Settle(int64_t now) {
    const bool idle = idle_since_ >= 0 && idle_since_ <= now;
    const pool::KeepAlivePlan plan = Plan(now, idle);
    // Pre-warm: the function's idle instances stop as it falls idle; one loads later.
    const bool gap = idle && plan.prewarm_us > 0;
    size_t mru = live_.size();
    for (size_t i = 0; i < live_.size(); ++i) {
      if (live_[i].busy_until > now) continue;
      if (mru == live_.size() || live_[i].idle_since > live_[mru].idle_since) mru = i;
    }
    std::vector<Instance> kept;
    int64_t covered_until = idle ? idle_since_ : now;  // some instance lives until then
    for (size_t i = 0; i < live_.size(); ++i) {
      const Instance& inst = live_[i];
      if (inst.busy_until > now) {
        kept.push_back(inst);
        continue;
      }
      int64_t stop = inst.idle_since + (i == mru ? plan.keep_alive_us : plan.surplus_keep_us);
      if (gap) stop = std::min(stop, std::max(idle_since_, inst.idle_since));
      if (stop <= now) {
        idle_us_ += static_cast<double>(stop - inst.idle_since);
        covered_until = std::max(covered_until, stop);
      } else {
        kept.push_back(inst);
        covered_until = now;
      }
    }
    live_ = std::move(kept);
    bool prewarmed = false;
    if (gap && now - idle_since_ >= plan.prewarm_us) {
      const int64_t load = idle_since_ + plan.prewarm_us;
      if (load + plan.keep_alive_us <= now) {
        idle_us_ += static_cast<double>(plan.keep_alive_us);
      } else {
        live_.push_back({load, load});
        prewarmed = true;
      }
    }
    if (!template_alive_ || !idle) return;
    if (gap) {
      // It went as the function fell idle; the pre-warm made it again (off any call's path)
      // beside the instance it forked, which covers it.
      template_alive_ = prewarmed;
      return;
    }
    // While an instance lives the template's pages are its pages (copy-on-write); alone, the
    // template's memory is wasted.
    const int64_t until = plan.template_until_us == pool::kKeepForever
                              ? pool::kKeepForever
                              : idle_since_ + plan.template_until_us;
    const int64_t end = std::min(now, until);
    idle_us_ += static_cast<double>(std::max<int64_t>(0, end - std::min(covered_until, end)));
    if (until <= now) template_alive_ = false;
  }

  // `need` instances serve the calls of the minute starting at t0, busy until t1.
  void Use(int64_t t0, int64_t t1, int64_t need) {
    std::vector<size_t> ready;
    for (size_t i = 0; i < live_.size(); ++i) {
      if (live_[i].busy_until <= t0) ready.push_back(i);
    }
    // The most recently used first, as the server's Admit picks them.
    std::sort(ready.begin(), ready.end(),
              [&](size_t a, size_t b) { return live_[a].idle_since > live_[b].idle_since; });
    int64_t used = 0;
    for (size_t i : ready) {
      if (used == need) break;
      idle_us_ += static_cast<double>(t0 - live_[i].idle_since);
      live_[i] = {t1, t1};
      ++used;
    }
    for (; used < need; ++used) {
      if (p_.templates && template_alive_) {
        ++totals_.fork;
      } else {
        ++totals_.cold;
        if (p_.templates) template_alive_ = true;  // its init becomes the template
      }
      live_.push_back({t1, t1});
    }
    idle_since_ = 0;
    for (const Instance& i : live_) idle_since_ = std::max(idle_since_, i.busy_until);
  }

  const FunctionTrace& f_;
  const PolicySpec& p_;
  pool::IdleHistogram idle_;
  std::vector<Instance> live_;
  int64_t idle_since_ = -1;  // when its last calls end; -1: never called
  bool template_alive_ = false;
  double idle_us_ = 0;
  Totals totals_;
};

}  // namespace

std::vector<PolicySpec> StandardPolicies() {
  using pool::KeepAliveMode;
  constexpr int64_t kDefaultIdleTimeoutUs = 300'000'000;  // thaw.yaml's idle_timeout_s
  return {
      {"fixed-10m", KeepAliveMode::kFixed, 10 * kMinuteUs, false},
      {"fixed-20m", KeepAliveMode::kFixed, 20 * kMinuteUs, false},
      {"adaptive", KeepAliveMode::kAdaptive, kDefaultIdleTimeoutUs, false},
      {"adaptive+templates", KeepAliveMode::kAdaptive, kDefaultIdleTimeoutUs, true},
  };
}

PolicyResult Simulate(const Trace& trace, const PolicySpec& policy) {
  PolicyResult r;
  r.name = policy.name;
  std::vector<double> per_function;
  double mb_us = 0;
  for (const FunctionTrace& f : trace.functions) {
    Totals t = FunctionRun(f, policy).Run(trace.minutes);
    r.invocations += t.invocations;
    r.cold_starts += t.cold;
    r.fork_starts += t.fork;
    mb_us += t.idle_mb_us;
    if (t.invocations > 0) {
      per_function.push_back(100.0 * static_cast<double>(t.cold) /
                             static_cast<double>(t.invocations));
    }
  }
  if (r.invocations > 0) {
    r.cold_start_pct =
        100.0 * static_cast<double>(r.cold_starts) / static_cast<double>(r.invocations);
  }
  if (!per_function.empty()) {
    std::sort(per_function.begin(), per_function.end());
    const size_t rank =
        static_cast<size_t>(std::ceil(0.75 * static_cast<double>(per_function.size())));
    r.p75_function_cold_start_pct = per_function[std::max<size_t>(rank, 1) - 1];
  }
  r.wasted_gb_s = mb_us / 1024.0 / 1e6;
  return r;
}

}  // namespace thaw::sim

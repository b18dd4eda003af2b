#include "pool/policy.h"

#include <algorithm>

namespace thaw::pool {

int64_t InitBackoffUs(int64_t failures) {
  constexpr int64_t kFirst = 1'000'000, kMost = 300'000'000;
  if (failures <= 0) return 0;
  if (failures > 20) return kMost;
  return std::min(kMost, kFirst << (failures - 1));
}

const char* InstanceStateName(InstanceState state) {
  switch (state) {
    case InstanceState::kStarting:
      return "starting";
    case InstanceState::kReady:
      return "ready";
    case InstanceState::kStopping:
      return "stopping";
  }
  return "unknown";
}

namespace {

struct Counts {
  int64_t live = 0;  // starting or ready: counts against max_instances
  int64_t starting = 0;
  int64_t ready = 0;
};

Counts Count(const PoolView& pool) {
  Counts c;
  for (const auto& i : pool.instances) {
    if (i.state == InstanceState::kStarting) ++c.starting;
    if (i.state == InstanceState::kReady) ++c.ready;
    // Stopping instances still hold memory and a process: they count against the cap too.
    ++c.live;
  }
  return c;
}

// Queued requests that starting instances will absorb once ready.
int64_t Uncovered(const PoolView& pool, const Limits& limits, const Counts& c) {
  return pool.queued - c.starting * limits.concurrency;
}

}  // namespace

Admission Admit(const PoolView& pool, const Limits& limits) {
  const InstanceView* best = nullptr;
  if (pool.queued == 0) {  // FIFO: never overtake requests already waiting
    for (const auto& i : pool.instances) {
      if (i.state != InstanceState::kReady || i.inflight >= limits.concurrency) continue;
      if (best == nullptr || (i.local && !best->local) ||
          (i.local == best->local &&
           (i.inflight > best->inflight ||
            (i.inflight == best->inflight && i.idle_since_us > best->idle_since_us)))) {
        best = &i;
      }
    }
  }
  if (best != nullptr) return {Admission::Kind::kDispatch, best->id};
  Counts c = Count(pool);
  if (Uncovered(pool, limits, c) + 1 > 0 && c.live < limits.max_instances) {
    return {Admission::Kind::kQueueAndStart, 0};
  }
  if (pool.queued < limits.max_queue) return {Admission::Kind::kQueue, 0};
  return {Admission::Kind::kReject, 0};
}

TickPlan Tick(const PoolView& pool, const Limits& limits, int64_t now_us) {
  TickPlan plan;
  Counts c = Count(pool);
  int64_t keep_warm = pool.draining ? 0 : limits.min_instances;
  // Idle instances, most idle first, are stopped while the warm floor allows.
  std::vector<const InstanceView*> idle;
  for (const auto& i : pool.instances) {
    if (i.state == InstanceState::kReady && i.inflight == 0) idle.push_back(&i);
  }
  std::sort(idle.begin(), idle.end(), [](const InstanceView* a, const InstanceView* b) {
    return a->idle_since_us < b->idle_since_us;
  });
  int64_t warm = c.ready + c.starting;
  // Pre-warm: idle for less than prewarm_us, the version keeps nothing (its next call is not
  // expected yet); from then, for idle_timeout_us, it keeps one instance.
  const bool idle_version = pool.idle_since_us >= 0 && pool.queued == 0 && !pool.draining;
  const int64_t idle_age = idle_version ? now_us - pool.idle_since_us : -1;
  const bool in_gap = idle_version && limits.prewarm_us > 0 && idle_age < limits.prewarm_us;
  const int64_t surplus_timeout =
      limits.surplus_idle_timeout_us < 0 ? limits.idle_timeout_us : limits.surplus_idle_timeout_us;
  for (const InstanceView* i : idle) {
    if (pool.queued > 0) break;  // they are about to get work
    const int64_t timeout = i == idle.back() ? limits.idle_timeout_us : surplus_timeout;
    bool expired = pool.stop_idle_now || in_gap || now_us - i->idle_since_us >= timeout;
    if (!expired || warm <= keep_warm) continue;
    plan.stop.push_back(i->id);
    --warm;
  }
  int64_t live_after = c.live - static_cast<int64_t>(plan.stop.size());
  int64_t want = std::max<int64_t>(0, keep_warm - warm);
  if (idle_version && limits.prewarm_us > 0 && idle_age >= limits.prewarm_us &&
      idle_age < limits.prewarm_us + limits.idle_timeout_us && live_after == 0) {
    want = std::max<int64_t>(want, 1);
  }
  int64_t uncovered = Uncovered(pool, limits, c);
  if (uncovered > 0) {
    want = std::max(want, (uncovered + limits.concurrency - 1) / limits.concurrency);
  }
  plan.start =
      std::clamp<int64_t>(want, 0, std::max<int64_t>(0, limits.max_instances - live_after));
  return plan;
}

}  // namespace thaw::pool

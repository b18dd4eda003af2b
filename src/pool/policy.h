// Scheduling policy: pure functions of (pool snapshot, limits, now) -> decision. The pool
// driver (pool.h) applies them. No I/O, no clock reads, no locks: tested with tables of cases.
#pragma once

#include <cstdint>
#include <vector>

namespace thaw::pool {

enum class InstanceState {
  kStarting,  // spawned, init not finished (no GET /next yet)
  kReady,     // serving: may take work up to `concurrency`
  kStopping,  // killed, waiting for the process to exit
};

const char* InstanceStateName(InstanceState state);

struct InstanceView {
  uint64_t id = 0;
  InstanceState state = InstanceState::kStarting;
  int64_t inflight = 0;       // assigned and not yet finished
  int64_t idle_since_us = 0;  // when inflight last dropped to 0 (monotonic)
  // Served by the caller's shard (common/shard.h): preferred, so a call and the instance that
  // serves it stay on one thread. Another shard's instance serves only when none here can.
  bool local = false;
};

struct PoolView {
  std::vector<InstanceView> instances;
  int64_t queued = 0;     // requests waiting for a slot
  bool draining = false;  // the version was replaced or deleted: keep nothing warm
  // Draining and no call since: stop idle instances now, not after the idle timeout. A
  // replaced version that still gets calls (through an alias or a qualifier) keeps its
  // instances for the usual idle timeout instead of starting cold every time.
  bool stop_idle_now = false;
  // When its last call ended with nothing running or queued; -1 while busy (or never called,
  // or when its last calls failed without an instance). The pre-warm window counts from here.
  int64_t idle_since_us = -1;
};

struct Limits {
  int64_t concurrency = 1;
  int64_t min_instances = 0;
  int64_t max_instances = 8;
  int64_t idle_timeout_us = 300'000'000;  // an idle instance is kept this long
  int64_t max_queue = 256;
  // Adaptive keep-alive (keep_alive.h): once the version falls idle its idle instances stop,
  // and `prewarm_us` later one instance is started and kept `idle_timeout_us`. 0: no pre-warm.
  int64_t prewarm_us = 0;
  // With templates (keep_alive.h's surplus_keep_us): idle instances but the most recently
  // used one are kept this long only, since another forks in milliseconds. -1: idle_timeout_us.
  int64_t surplus_idle_timeout_us = -1;
};

struct Admission {
  enum class Kind {
    kDispatch,       // run now on `instance_id`
    kQueue,          // wait: a slot is coming (a starting instance or a busy one)
    kQueueAndStart,  // wait, and start one more instance (a cold start)
    kReject,         // 429: no free slot coming soon enough and the queue is full
  };
  Kind kind = Kind::kReject;
  uint64_t instance_id = 0;
};

// Where a newly arrived request goes. Prefers the ready instance with free capacity that was
// used most recently, so surplus instances fall idle and scale in.
Admission Admit(const PoolView& pool, const Limits& limits);

struct TickPlan {
  std::vector<uint64_t> stop;  // idle past their keep-alive (or draining)
  int64_t start = 0;           // instances to start now
};

// How long to wait before the tick starts another instance after `failures` inits failed in a
// row (min_instances and queued work would otherwise restart a broken init at once, forever):
// 1 s, doubling, at most 5 minutes. Requests that arrive still start one at once.
int64_t InitBackoffUs(int64_t failures);

// Periodic housekeeping: scale to zero after the idle timeout (at once while in the pre-warm
// window's gap), keep min_instances warm (and replace ones that died), start instances for
// queued work no starting instance covers, and pre-warm one when the window opens.
TickPlan Tick(const PoolView& pool, const Limits& limits, int64_t now_us);

}  // namespace thaw::pool

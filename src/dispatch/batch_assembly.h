// Batch assembly: when the calls waiting for one function version (with `batch:` in its
// thaw.yaml) go to an instance as one batch, and how many. A pure function of (queue snapshot,
// limits, now); the pool (pool/pool.cc) applies it whenever a call arrives, an instance frees a
// slot or the wake-up time it asked for comes. Tested as a table with a fake clock.
#pragma once

#include <cstdint>

namespace thaw::dispatch {

// The calls waiting for a batch, oldest first, and the instances' state, as the pool sees them.
struct BatchQueue {
  int64_t waiting = 0;               // calls waiting, in arrival order
  int64_t oldest_arrived_us = 0;     // monotonic: when the oldest of them arrived
  int64_t earliest_deadline_us = 0;  // the soonest any of them must be on its way; 0: none
  bool slot_free = false;            // a ready instance can take one more invocation now
  int64_t running = 0;               // invocations of this version on instances now
};

struct BatchLimits {
  int64_t max_size = 1;     // calls in one batch
  int64_t max_wait_us = 0;  // longest a call is held for others to join while a slot is free
};

struct BatchDecision {
  enum class Kind {
    kIdle,      // nothing to do now: no call waits, or no instance can take one (a slot
                // freeing asks again)
    kDispatch,  // send the `size` oldest calls now, as one batch
    kHold,      // a slot is free but the batch may still grow: ask again at `wake_us` (or
                // sooner, when a call arrives)
  };
  Kind kind = Kind::kIdle;
  int64_t size = 0;     // kDispatch
  int64_t wake_us = 0;  // kHold: monotonic
};

// The rules, in order:
//   1. nothing waits, or no slot is free: kIdle (calls wait for a slot as unbatched ones do);
//   2. max_size calls wait: a full batch goes at once;
//   3. nothing of this version runs: what waits goes at once (a lone call is never held:
//      with no call in flight, nothing says another is coming);
//   4. otherwise the batch is held until the oldest call has waited max_wait_us, or until the
//      earliest deadline of a waiting call, whichever comes first; then what waits goes.
BatchDecision AssembleBatch(const BatchQueue& queue, const BatchLimits& limits, int64_t now_us);

}  // namespace thaw::dispatch

#include "dispatch/batch_assembly.h"

#include <algorithm>

namespace thaw::dispatch {

BatchDecision AssembleBatch(const BatchQueue& queue, const BatchLimits& limits, int64_t now_us) {
  using K = BatchDecision::Kind;
  if (queue.waiting <= 0 || !queue.slot_free) return {K::kIdle};
  const int64_t max_size = std::max<int64_t>(1, limits.max_size);
  if (queue.waiting >= max_size) return {K::kDispatch, max_size};
  if (queue.running == 0) return {K::kDispatch, queue.waiting};
  int64_t until = queue.oldest_arrived_us + std::max<int64_t>(0, limits.max_wait_us);
  if (queue.earliest_deadline_us > 0) until = std::min(until, queue.earliest_deadline_us);
  if (now_us >= until) return {K::kDispatch, queue.waiting};
  return {K::kHold, 0, until};
}

}  // namespace thaw::dispatch

// Warm capacity: whether a function version may keep `min_instances` warm. Warm instances hold
// memory whether or not anyone calls, so they count against the node's memory budget and the
// tenant's concurrency limit at deploy, and a deploy that cannot fit is refused with the reason
// (not left to start processes until the machine gives out). Pure: tested as a table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace thaw::dispatch {

struct WarmFunction {
  std::string name;  // TENANT.NAME or NAME (the default tenant)
  std::string tenant;
  int64_t min_instances = 0;
  int64_t memory_mb = 0;
};

struct WarmLimits {
  int64_t node_memory_mb = 0;                 // the node's memory budget for instances
  std::optional<int64_t> tenant_concurrency;  // the candidate tenant's limit, if it has one
};

// OK, or InvalidArgument naming min_instances and what it would exceed. `deployed` holds the
// newest version of every function; the candidate's own entry there is replaced by it.
Status CheckWarmCapacity(const WarmFunction& candidate, const std::vector<WarmFunction>& deployed,
                         const WarmLimits& limits);

// The default node memory budget: what the machine has, less a reserve for the host and thaw
// (a tenth, at least 1 GB). `mem_total_mb` from /proc/meminfo.
int64_t DefaultNodeMemoryMb(int64_t mem_total_mb);
// MemTotal from /proc/meminfo in MB (0 if unreadable).
int64_t ReadMemTotalMb();

}  // namespace thaw::dispatch

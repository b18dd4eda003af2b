#include "dispatch/warm_capacity.h"

#include <algorithm>
#include <cstdio>

namespace thaw::dispatch {

Status CheckWarmCapacity(const WarmFunction& candidate, const std::vector<WarmFunction>& deployed,
                         const WarmLimits& limits) {
  if (candidate.min_instances <= 0) return Status::Ok();
  int64_t node_mb = 0, tenant_warm = 0;
  for (const WarmFunction& f : deployed) {
    if (f.name == candidate.name) continue;
    node_mb += f.min_instances * f.memory_mb;
    if (f.tenant == candidate.tenant) tenant_warm += f.min_instances;
  }
  const int64_t want_mb = candidate.min_instances * candidate.memory_mb;
  if (limits.tenant_concurrency.has_value() &&
      tenant_warm + candidate.min_instances > *limits.tenant_concurrency) {
    return InvalidArgument(
        "min_instances: " + std::to_string(candidate.min_instances) + " warm instances with " +
        std::to_string(tenant_warm) + " already kept warm by tenant " + candidate.tenant +
        " exceed its concurrency limit of " + std::to_string(*limits.tenant_concurrency));
  }
  if (node_mb + want_mb > limits.node_memory_mb) {
    return InvalidArgument(
        "min_instances: " + std::to_string(candidate.min_instances) + " warm instances of " +
        std::to_string(candidate.memory_mb) + " MB need " + std::to_string(want_mb) +
        " MB, and the node's memory budget (node_memory_mb) has " +
        std::to_string(std::max<int64_t>(0, limits.node_memory_mb - node_mb)) + " of " +
        std::to_string(limits.node_memory_mb) + " MB left for warm instances");
  }
  return Status::Ok();
}

int64_t DefaultNodeMemoryMb(int64_t mem_total_mb) {
  return std::max<int64_t>(0, mem_total_mb - std::max<int64_t>(1024, mem_total_mb / 10));
}

int64_t ReadMemTotalMb() {
  FILE* f = std::fopen("/proc/meminfo", "re");
  if (f == nullptr) return 0;
  char line[256];
  long long kb = 0;
  while (std::fgets(line, sizeof(line), f)) {
    if (std::sscanf(line, "MemTotal: %lld kB", &kb) == 1) break;
  }
  std::fclose(f);
  return kb / 1024;
}

}  // namespace thaw::dispatch

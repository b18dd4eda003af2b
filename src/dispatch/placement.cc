#include "dispatch/placement.h"

#include <algorithm>

namespace thaw::dispatch {
namespace {

// Lower is better. 0: warm; 1: template; 2 + (models it lacks): cold.
int64_t Tier(const NodeView& n, const PlacementRequest& r) {
  if (n.warm.count(r.version)) return 0;
  if (n.templates.count(r.version)) return 1;
  int64_t missing = 0;
  for (const auto& m : r.models) missing += n.models.count(m) ? 0 : 1;
  return 2 + missing;
}

// Whether `a` is less loaded than `b`: inflight per core, compared without division.
int CompareLoad(const NodeView& a, const NodeView& b) {
  const __int128 left = static_cast<__int128>(a.inflight) * std::max<int64_t>(b.cores, 1);
  const __int128 right = static_cast<__int128>(b.inflight) * std::max<int64_t>(a.cores, 1);
  return left < right ? -1 : left > right ? 1 : 0;
}

}  // namespace

StatusOr<std::string> Place(const ClusterSnapshot& snapshot, const PlacementRequest& request) {
  const NodeView* best = nullptr;
  int64_t best_tier = 0;
  int draining = 0, full = 0;
  for (const NodeView& n : snapshot.nodes) {
    if (n.draining) {
      ++draining;
      continue;
    }
    const int64_t tier = Tier(n, request);
    if (tier > 0 && n.free_memory_mb < request.memory_mb) {
      ++full;
      continue;
    }
    if (best != nullptr) {
      if (tier != best_tier) {
        if (tier > best_tier) continue;
      } else if (int load = CompareLoad(n, *best); load != 0) {
        if (load > 0) continue;
      } else if (n.free_memory_mb != best->free_memory_mb) {
        if (n.free_memory_mb < best->free_memory_mb) continue;
      } else if (n.name >= best->name) {
        continue;
      }
    }
    best = &n;
    best_tier = tier;
  }
  if (best == nullptr) {
    return Unavailable("no node can run " + request.version + ": " +
                       std::to_string(snapshot.nodes.size()) + " node(s), " +
                       std::to_string(draining) + " draining, " + std::to_string(full) +
                       " without " + std::to_string(request.memory_mb) + " MB free");
  }
  return best->name;
}

}  // namespace thaw::dispatch

#include "dispatch/routing.h"

namespace thaw::dispatch {

std::string RouteCall(const RouteInput& input, const ClusterSnapshot& snapshot,
                      const PlacementRequest& request) {
  if (input.local_ready || input.forwarded || input.async) return "";
  auto target = Place(snapshot, request);
  if (!target.ok() || *target == input.self) return "";
  for (const NodeView& n : snapshot.nodes) {
    if (n.name == *target) {
      const bool holds = n.warm.count(request.version) || n.templates.count(request.version);
      return holds ? *target : "";
    }
  }
  return "";
}

}  // namespace thaw::dispatch

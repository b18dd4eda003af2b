#include "dispatch/routing.h"

namespace thaw::dispatch {

std::string RouteCall(const RouteInput& input, const ClusterSnapshot& snapshot,
                      const PlacementRequest& request) {
  if (input.forwarded || input.async) return "";
  if (input.local_ready && !input.draining) return "";
  auto target = Place(snapshot, request);
  if (!target.ok() || *target == input.self) return "";
  for (const NodeView& n : snapshot.nodes) {
    if (n.name == *target) {
      if (input.draining) {
        // Warm there: it goes, even from a ready instance here. Cold there: only a call this
        // node would refuse (it starts nothing) goes.
        return n.warm.count(request.version) || !input.local_ready ? *target : "";
      }
      const bool holds = n.warm.count(request.version) || n.templates.count(request.version);
      return holds ? *target : "";
    }
  }
  return "";
}

}  // namespace thaw::dispatch

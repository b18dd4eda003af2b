#include "dispatch/routing.h"

namespace thaw::dispatch {

std::string RouteCall(const RouteInput& input, const ClusterSnapshot& snapshot,
                      const PlacementRequest& request) {
  if (input.local_ready || input.forwarded || input.async) return "";
  auto target = Place(snapshot, request);
  if (!target.ok() || *target == input.self) return "";
  return *target;
}

}  // namespace thaw::dispatch

#include "dispatch/drain_moves.h"

#include <set>

namespace thaw::dispatch {

DrainMoves PlanDrainMoves(
    const std::string& self, bool self_draining, const ClusterSnapshot& snapshot,
    const std::function<std::optional<PlacementRequest>(const std::string&)>& request_of) {
  DrainMoves out;
  // This node as the others see it, with its own drain mark (which may be newer).
  ClusterSnapshot view = snapshot;
  for (NodeView& n : view.nodes) {
    if (n.name == self) n.draining = n.draining || self_draining;
  }
  std::set<std::string> stranded;  // warm on a draining node
  std::set<std::string> covered;   // warm on a node that is not draining
  const NodeView* me = nullptr;
  for (const NodeView& n : view.nodes) {
    if (n.name == self) me = &n;
    (n.draining ? stranded : covered).insert(n.warm.begin(), n.warm.end());
  }
  if (self_draining) {
    if (me != nullptr) {
      for (const std::string& v : me->warm) {
        if (covered.count(v)) out.release.push_back(v);
      }
    }
    return out;
  }
  for (const std::string& v : stranded) {
    if (covered.count(v)) continue;
    const std::optional<PlacementRequest> request = request_of(v);
    if (!request) continue;
    auto target = Place(view, *request);
    if (target.ok() && *target == self) out.adopt.push_back(v);
  }
  return out;
}

}  // namespace thaw::dispatch

// Drain moves: when a node is marked draining (`thaw nodes drain`), its warm work moves, as a
// pure function of the cluster snapshot. Every node computes the same plan from the same
// snapshot, so exactly one node starts an instance of each version the drained node holds
// warm: the one placement (placement.h) picks with the drained node left out. The drained node
// lets a version go (stops its idle instances) once another node, not draining, holds it warm.
// No state: thread-safe. The driver is cluster/drain_mover.h.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dispatch/placement.h"

namespace thaw::dispatch {

struct DrainMoves {
  // Versions ("function:version") this node should start one instance of: a draining node
  // holds them warm, no node that is not draining does, and placement picks this node.
  std::vector<std::string> adopt;
  // Versions this node, draining, holds warm and another node (not draining) holds warm too:
  // its idle instances of them may stop. Empty unless `self_draining`.
  std::vector<std::string> release;
};

// `request_of` gives a version's placement request, or nothing when this node does not know
// the version (a version it cannot start is never adopted here). `self_draining` is this
// node's own drain mark (its record in the snapshot may lag).
DrainMoves PlanDrainMoves(
    const std::string& self, bool self_draining, const ClusterSnapshot& snapshot,
    const std::function<std::optional<PlacementRequest>(const std::string&)>& request_of);

}  // namespace thaw::dispatch

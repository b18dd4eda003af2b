// Placement: which node of a cluster should run a call of a function version, as a pure
// function of the cluster snapshot (what each node last published to etcd). No state, no
// clock: thread-safe. The driver (cluster/membership.h) keeps the snapshot current.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace thaw::dispatch {

// One node as its record in etcd describes it.
struct NodeView {
  std::string name;
  bool draining = false;  // takes no new work: never placed on
  int64_t cores = 1;
  int64_t free_memory_mb = 0;       // its node_memory_mb less what its live instances reserve
  int64_t inflight = 0;             // calls running or queued there
  std::set<std::string> warm;       // versions ("function:version") with a ready instance
  std::set<std::string> templates;  // versions with a ready template (a fork, not a full start)
  std::set<std::string> models;     // digests of the model trees on its disk (no fetch needed)
};

struct ClusterSnapshot {
  std::vector<NodeView> nodes;
};

struct PlacementRequest {
  std::string version;              // "function:version"
  std::vector<std::string> models;  // the version's model digests
  int64_t memory_mb = 0;            // one instance's memory_mb
};

// The node to run the call on: a node with a warm instance of the version first; else one
// holding its template; else one holding the most of its models; among equals the least
// loaded (inflight per core), then the most free memory, then the name (so every node decides
// alike). A node without a warm instance needs room for one more (free_memory_mb). Never a
// draining node. Unavailable when no node qualifies.
StatusOr<std::string> Place(const ClusterSnapshot& snapshot, const PlacementRequest& request);

}  // namespace thaw::dispatch

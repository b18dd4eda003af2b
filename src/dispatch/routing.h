// Routing: whether a call this node received runs here or is forwarded to another node of the
// cluster, as a pure function of what the node knows at that moment (its own ready instances,
// the call's headers, the cluster snapshot). Placement (placement.h) picks among the nodes;
// this adds the rules around it: a call this node can serve warm stays, a forwarded call
// stays (hop limit 1), an Event call stays (the queue runs it), and a call goes only to a node
// that holds the version warm or its template: one that needs a full start anyway starts here,
// without a hop. A draining node (`thaw nodes drain`) starts nothing: it forwards a call to the
// node placement picks when that node holds the version warm (even where a ready instance
// here could serve it: the warm work moves, drain_moves.h), and a call it could not serve
// warm to the node placement picks even when that node only has room. No state: thread-safe.
#pragma once

#include <string>

#include "dispatch/placement.h"

namespace thaw::dispatch {

struct RouteInput {
  std::string self;          // this node's name
  bool local_ready = false;  // this node has a ready instance of the version with room
  bool forwarded = false;    // the call came from another node (X-Thaw-Forwarded-By)
  bool async = false;        // an Event invocation: queued here, never forwarded
  bool draining = false;     // this node is draining: it starts no new instance
};

// The node to forward the call to, or empty: run it here. Here too when placement finds no
// node (the local path then answers as it would alone), picks this node, or picks a node
// where the version would start cold.
std::string RouteCall(const RouteInput& input, const ClusterSnapshot& snapshot,
                      const PlacementRequest& request);

}  // namespace thaw::dispatch

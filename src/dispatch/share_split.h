// Share split: how one tenant limit (invocations at once, or requests per second) is divided
// among the nodes of a cluster so that the shares never add up to more than the limit, even
// while nodes see different snapshots. Each node publishes its share and its demand (cluster/
// share_keeper.h); every node computes the same targets from the same snapshot, lowers its own
// share at once when its target falls, and raises it only up to what the others leave free, in
// an etcd transaction that fails if any share changed since it read them. Pure: no I/O, no clock,
// no locks; tested with tables of cases (tests/share_split_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace thaw::dispatch {

// One node's published part of a tenant's limit.
struct ShareView {
  std::string node;
  int64_t demand = 0;  // what it wants: calls at once (or per second) it ran or was refused
  int64_t share = 0;   // what it holds: it admits at most this many
};

// The share each node should hold (same order as `nodes`), summing to at most `limit`: demands
// are met max-min fairly (no node gets more than it asks while another that asks more gets less),
// then what is left is spread evenly over every node as headroom, so an idle node can take its
// first calls before the next rebalance. Ties go by node name, so every node computes the same.
std::vector<int64_t> TargetShares(int64_t limit, const std::vector<ShareView>& nodes);

// What node `self` (an index into `nodes`) does this turn.
struct ShareStep {
  // The share to publish. Below `nodes[self].share`: a lowering, safe to write at any time. Above
  // it: a raise, safe only in a transaction that checks no share changed since the snapshot.
  int64_t publish = 0;
  // What the node may admit now: at most its target when lowering (it takes no new call past
  // it while its calls in flight finish), its current share until a raise is written.
  int64_t cap = 0;
  bool raise = false;
};

// The step for `self`, which runs `in_use` calls now: it never publishes less than it uses (the
// others would take the difference while those calls still run) nor raises past what the
// others' published shares leave free of `limit`.
ShareStep NextShare(int64_t limit, const std::vector<ShareView>& nodes, size_t self,
                    int64_t in_use);

}  // namespace thaw::dispatch

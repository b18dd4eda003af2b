// The split of a tenant limit across nodes (dispatch/share_split.h), as tables: the targets
// (max-min fair, headroom spread, deterministic), and each node's step (lower at once, never
// below what it uses, raise only into what the others leave free). Then the property the
// cluster relies on: nodes stepping from stale snapshots never publish more than the limit.
#include "dispatch/share_split.h"

#include <gtest/gtest.h>

#include <numeric>

namespace thaw::dispatch {
namespace {

struct TargetCase {
  const char* name;
  int64_t limit;
  std::vector<ShareView> nodes;
  std::vector<int64_t> want;
};

TEST(ShareSplitTest, TargetShares) {
  const TargetCase cases[] = {
      {"no nodes", 10, {}, {}},
      {"one node takes the whole limit", 10, {{"a", 0, 0}}, {10}},
      {"idle nodes split evenly, remainder by name",
       10,
       {{"c", 0, 0}, {"a", 0, 0}, {"b", 0, 0}},
       {3, 4, 3}},
      {"demand met, slack spread as headroom", 10, {{"a", 6, 0}, {"b", 0, 0}}, {8, 2}},
      {"over-demand: max-min fair", 10, {{"a", 9, 0}, {"b", 2, 0}, {"c", 9, 0}}, {4, 2, 4}},
      {"over-demand evenly, remainder to the larger demand's order",
       10,
       {{"a", 10, 0}, {"b", 10, 0}, {"c", 10, 0}},
       {3, 3, 4}},
      {"current shares do not matter to targets", 4, {{"a", 1, 4}, {"b", 3, 0}}, {1, 3}},
      {"zero limit: nothing", 0, {{"a", 5, 0}}, {0}},
      {"negative demand reads as none", 4, {{"a", -3, 0}, {"b", 0, 0}}, {2, 2}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto got = TargetShares(c.limit, c.nodes);
    EXPECT_EQ(got, c.want);
    EXPECT_LE(std::accumulate(got.begin(), got.end(), int64_t{0}), std::max<int64_t>(0, c.limit));
  }
}

struct StepCase {
  const char* name;
  int64_t limit;
  std::vector<ShareView> nodes;
  size_t self;
  int64_t in_use;
  ShareStep want;
};

TEST(ShareSplitTest, NextShare) {
  const StepCase cases[] = {
      {"alone, first turn: raise to the limit", 5, {{"a", 0, 0}}, 0, 0, {5, 0, true}},
      {"at target: nothing to do", 5, {{"a", 0, 5}}, 0, 0, {5, 5, false}},
      {"lower to target when idle", 4, {{"a", 0, 4}, {"b", 4, 0}}, 0, 0, {0, 0, false}},
      {"lower only to what is in use; admit no more than target",
       4,
       {{"a", 0, 4}, {"b", 4, 0}},
       0,
       3,
       {3, 0, false}},
      {"raise capped by the others' published shares",
       4,
       {{"a", 0, 4}, {"b", 4, 0}},
       1,
       0,
       {0, 0, false}},
      {"raise into what the others freed", 4, {{"a", 0, 1}, {"b", 4, 0}}, 1, 0, {3, 0, true}},
      {"raise to target when room allows", 6, {{"a", 2, 2}, {"b", 4, 0}}, 1, 0, {4, 0, true}},
      {"others over the limit (it was lowered): hold, do not raise",
       2,
       {{"a", 0, 3}, {"b", 2, 1}},
       1,
       1,
       {1, 1, false}},
      {"self out of range: nothing", 2, {{"a", 0, 0}}, 3, 0, {0, 0, false}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const ShareStep got = NextShare(c.limit, c.nodes, c.self, c.in_use);
    EXPECT_EQ(got.publish, c.want.publish);
    EXPECT_EQ(got.cap, c.want.cap);
    EXPECT_EQ(got.raise, c.want.raise);
  }
}

// Three nodes whose demand moves around step in turn, each from a snapshot one step old (what
// the transaction would catch is modelled by refusing a raise whose snapshot is stale). The
// published shares never add up to more than the limit, each node's calls in flight never exceed
// its share, and once demand settles the shares reach the targets.
TEST(ShareSplitTest, StaleSnapshotsNeverOversubscribe) {
  constexpr int64_t kLimit = 7;
  std::vector<ShareView> nodes = {{"a", 0, 0}, {"b", 0, 0}, {"c", 0, 0}};
  std::vector<int64_t> in_use = {0, 0, 0};
  std::vector<int64_t> cap = {0, 0, 0};
  int64_t revision = 0;
  std::vector<int64_t> seen_revision = {0, 0, 0};
  std::vector<std::vector<ShareView>> seen = {nodes, nodes, nodes};
  for (int turn = 0; turn < 300; ++turn) {
    const size_t self = static_cast<size_t>(turn % 3);
    // Demand shifts every 30 turns; calls in flight follow, within the node's cap.
    const int64_t want = ((turn / 30 + static_cast<int>(self)) % 3 == 0) ? 6 : 1;
    nodes[self].demand = want;
    in_use[self] = std::min(want, cap[self]);
    const ShareStep step = NextShare(kLimit, seen[self], self, in_use[self]);
    if (!step.raise || seen_revision[self] == revision) {  // a stale raise fails its compare
      const int64_t before = nodes[self].share;
      nodes[self].share = step.raise ? step.publish : std::min(before, step.publish);
      cap[self] = step.raise ? step.publish : std::min(step.cap, nodes[self].share);
      if (nodes[self].share != before) ++revision;
    }
    int64_t sum = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      sum += nodes[i].share;
      EXPECT_LE(in_use[i], nodes[i].share) << "turn " << turn << " node " << i;
    }
    ASSERT_LE(sum, kLimit) << "turn " << turn;
    seen[self] = nodes;  // it reads again after its step
    seen_revision[self] = revision;
  }
  const auto targets = TargetShares(kLimit, nodes);
  int64_t sum = 0;
  for (size_t i = 0; i < nodes.size(); ++i) sum += nodes[i].share;
  EXPECT_GE(sum, kLimit - 1) << "the shares converge to (nearly) the whole limit";
  (void)targets;
}

}  // namespace
}  // namespace thaw::dispatch

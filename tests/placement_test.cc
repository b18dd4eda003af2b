// Placement as a table (dispatch/placement.h): nodes, the call, the node it goes to.
#include "dispatch/placement.h"

#include <gtest/gtest.h>

namespace thaw::dispatch {
namespace {

struct Case {
  const char* name;
  std::vector<NodeView> nodes;
  PlacementRequest request;
  const char* expect;  // the node's name, or "" when none qualifies (Unavailable)
};

NodeView Node(const char* name, int64_t inflight = 0, int64_t cores = 4, int64_t free_mb = 8192) {
  NodeView n;
  n.name = name;
  n.inflight = inflight;
  n.cores = cores;
  n.free_memory_mb = free_mb;
  return n;
}
NodeView Warm(NodeView n, const char* version) {
  n.warm.insert(version);
  return n;
}
NodeView Tmpl(NodeView n, const char* version) {
  n.templates.insert(version);
  return n;
}
NodeView Models(NodeView n, std::set<std::string> digests) {
  n.models = std::move(digests);
  return n;
}
NodeView Draining(NodeView n) {
  n.draining = true;
  return n;
}

const PlacementRequest kF1{"f:1", {}, 512};
const PlacementRequest kM{"m:3", {"sha-a", "sha-b"}, 2048};

class PlacementTest : public ::testing::TestWithParam<Case> {};

TEST_P(PlacementTest, Places) {
  const Case& c = GetParam();
  auto placed = Place(ClusterSnapshot{c.nodes}, c.request);
  if (std::string(c.expect).empty()) {
    ASSERT_FALSE(placed.ok()) << "placed on " << *placed;
    EXPECT_EQ(placed.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(placed.status().message().find(c.request.version), std::string::npos);
  } else {
    ASSERT_TRUE(placed.ok()) << placed.status().message();
    EXPECT_EQ(*placed, c.expect);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, PlacementTest,
    ::testing::Values(
        Case{"NoNodes", {}, kF1, ""}, Case{"OneNode", {Node("a")}, kF1, "a"},
        Case{"LeastLoaded", {Node("a", 5), Node("b", 2), Node("c", 9)}, kF1, "b"},
        Case{"LoadIsPerCore", {Node("a", 4, 2), Node("b", 6, 8)}, kF1, "b"},
        Case{"ZeroCoresCountAsOne", {Node("a", 2, 0), Node("b", 3, 1)}, kF1, "a"},
        Case{"EqualLoadMoreFreeMemory", {Node("a", 1, 4, 1024), Node("b", 1, 4, 4096)}, kF1, "b"},
        Case{"AllEqualLowestName", {Node("c"), Node("a"), Node("b")}, kF1, "a"},
        Case{"WarmBeatsIdle", {Node("a", 0), Warm(Node("b", 30), "f:1")}, kF1, "b"},
        Case{"WarmOtherVersionDoesNotCount", {Node("a", 0), Warm(Node("b", 1), "f:2")}, kF1, "a"},
        Case{"WarmLeastLoadedOfTheWarm",
             {Warm(Node("a", 7), "f:1"), Warm(Node("b", 3), "f:1"), Node("c", 0)},
             kF1,
             "b"},
        Case{"WarmNeedsNoFreeMemory", {Warm(Node("a", 0, 4, 0), "f:1"), Node("b")}, kF1, "a"},
        Case{"TemplateBeatsCold", {Node("a", 0), Tmpl(Node("b", 10), "f:1")}, kF1, "b"},
        Case{
            "WarmBeatsTemplate", {Tmpl(Node("a", 0), "f:1"), Warm(Node("b", 10), "f:1")}, kF1, "b"},
        Case{
            "TemplateNeedsFreeMemory", {Tmpl(Node("a", 0, 4, 100), "f:1"), Node("b", 5)}, kF1, "b"},
        Case{"ModelHolderBeatsEmpty",
             {Node("a", 0), Models(Node("b", 4), {"sha-a", "sha-b"})},
             kM,
             "b"},
        Case{"MoreModelsBeatFewer",
             {Models(Node("a", 0), {"sha-a"}), Models(Node("b", 6), {"sha-a", "sha-b"})},
             kM,
             "b"},
        Case{"SomeModelsBeatNone", {Node("a", 0), Models(Node("b", 6), {"sha-b"})}, kM, "b"},
        Case{"OtherModelsDoNotCount", {Node("a", 0), Models(Node("b", 1), {"sha-z"})}, kM, "a"},
        Case{"TemplateBeatsModels",
             {Models(Node("a", 0), {"sha-a", "sha-b"}), Tmpl(Node("b", 3), "m:3")},
             kM,
             "b"},
        Case{"DrainingModelHolderSkipped",
             {Draining(Models(Node("a", 0), {"sha-a", "sha-b"})), Node("b", 5)},
             kM,
             "b"},
        // Warm with another version that uses the same files: they are on its disk.
        Case{"ModelsOfAnotherVersionCount",
             {Node("a", 0), Models(Warm(Node("b", 3), "m:2"), {"sha-a", "sha-b"})},
             kM,
             "b"},
        Case{"ModelHolderWithoutRoomSkipped",
             {Models(Node("a", 0, 4, 1024), {"sha-a", "sha-b"}), Node("b", 3)},
             kM,
             "b"},
        Case{"NoRoomAnywhere", {Node("a", 0, 4, 100), Node("b", 0, 4, 511)}, kF1, ""},
        Case{"ExactlyEnoughRoom", {Node("a", 0, 4, 512)}, kF1, "a"},
        Case{"NeverDraining", {Draining(Node("a", 0)), Node("b", 50)}, kF1, "b"},
        Case{"NeverDrainingEvenWarm", {Draining(Warm(Node("a"), "f:1")), Node("b", 9)}, kF1, "b"},
        Case{"AllDraining", {Draining(Node("a")), Draining(Warm(Node("b"), "f:1"))}, kF1, ""},
        Case{"DrainingWarmFallsBackToTemplate",
             {Draining(Warm(Node("a"), "f:1")), Tmpl(Node("b", 8), "f:1"), Node("c", 0)},
             kF1,
             "b"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(PlacementTest, UnavailableSaysWhy) {
  auto placed = Place(ClusterSnapshot{{Draining(Node("a")), Node("b", 0, 4, 10)}}, kF1);
  ASSERT_FALSE(placed.ok());
  EXPECT_EQ(placed.status().message(),
            "no node can run f:1: 2 node(s), 1 draining, 1 without 512 MB free");
}

TEST(PlacementTest, SameAnswerWhateverTheOrder) {
  std::vector<NodeView> nodes = {Node("a", 2), Node("b", 2), Node("c", 2), Node("d", 2)};
  for (int i = 0; i < 4; ++i) {
    std::rotate(nodes.begin(), nodes.begin() + 1, nodes.end());
    auto placed = Place(ClusterSnapshot{nodes}, kF1);
    ASSERT_TRUE(placed.ok());
    EXPECT_EQ(*placed, "a");
  }
}

}  // namespace
}  // namespace thaw::dispatch

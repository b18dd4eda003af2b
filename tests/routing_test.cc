// Routing as a table (dispatch/routing.h): what this node knows, the cluster, and where the
// call runs ("" here, else the node it is forwarded to).
#include "dispatch/routing.h"

#include <gtest/gtest.h>

namespace thaw::dispatch {
namespace {

NodeView Node(const char* name, const char* warm = nullptr, int64_t inflight = 0) {
  NodeView n;
  n.name = name;
  n.cores = 2;
  n.free_memory_mb = 4096;
  n.inflight = inflight;
  if (warm != nullptr) n.warm.insert(warm);
  return n;
}

NodeView Draining(NodeView n) {
  n.draining = true;
  return n;
}

struct Case {
  const char* name;
  RouteInput input;
  std::vector<NodeView> nodes;
  const char* expect;
};

const PlacementRequest kF1{"f:1", {}, 512};

class RoutingTest : public ::testing::TestWithParam<Case> {};

TEST_P(RoutingTest, Routes) {
  const Case& c = GetParam();
  EXPECT_EQ(RouteCall(c.input, ClusterSnapshot{c.nodes}, kF1), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    Table, RoutingTest,
    ::testing::Values(
        Case{"WarmElsewhereIsForwarded", {.self = "a"}, {Node("a"), Node("b", "f:1")}, "b"},
        Case{"ReadyHereStays",
             {.self = "a", .local_ready = true},
             {Node("a"), Node("b", "f:1")},
             ""},
        // Hop limit 1: a forwarded call runs where it landed, whatever the snapshot says.
        Case{"ForwardedStays", {.self = "a", .forwarded = true}, {Node("a"), Node("b", "f:1")}, ""},
        Case{"EventStays", {.self = "a", .async = true}, {Node("a"), Node("b", "f:1")}, ""},
        Case{"PlacedHereStays", {.self = "a"}, {Node("a", "f:1"), Node("b", "f:1", 9)}, ""},
        // A template elsewhere: a fork there beats a full start here.
        Case{"TemplateElsewhereIsForwarded",
             {.self = "a"},
             {Node("a"),
              [] {
                NodeView n = Node("b");
                n.templates.insert("f:1");
                return n;
              }()},
             "b"},
        // Nobody holds it: it starts cold here, even where another node is less loaded (a
        // full start there would only add a hop).
        Case{"ColdStaysHere", {.self = "a"}, {Node("a", nullptr, 5), Node("b")}, ""},
        Case{"ColdHereWhenLeastLoaded", {.self = "a"}, {Node("a"), Node("b", nullptr, 5)}, ""},
        // This node drains and nobody holds it: it goes where placement says, with room for
        // a start there (here it would be refused).
        Case{"DrainingHereAndColdElsewhereIsForwarded",
             {.self = "a", .draining = true},
             {Draining(Node("a")), Node("b")},
             "b"},
        // Draining, with a ready instance here: the call goes where the version is warm ...
        Case{"DrainingReadyHereWarmElsewhereIsForwarded",
             {.self = "a", .local_ready = true, .draining = true},
             {Draining(Node("a", "f:1")), Node("b", "f:1")},
             "b"},
        // ... but not to a cold start: the warm instance here serves it while the move is on.
        Case{"DrainingReadyHereColdElsewhereStays",
             {.self = "a", .local_ready = true, .draining = true},
             {Draining(Node("a", "f:1")), Node("b")},
             ""},
        // Its own record may not say draining yet: placement still never picks this node.
        Case{"DrainingNotYetPublishedStaysWhenPlacedHere",
             {.self = "a", .local_ready = true, .draining = true},
             {Node("a", "f:1"), Node("b")},
             ""},
        Case{"DrainingForwardedStays",
             {.self = "a", .forwarded = true, .draining = true},
             {Draining(Node("a")), Node("b", "f:1")},
             ""},
        // Nowhere else to go (no room elsewhere): here, where the pool answers.
        Case{"DrainingNoRoomElsewhereStays",
             {.self = "a", .draining = true},
             {Draining(Node("a")),
              [] {
                NodeView n = Node("b");
                n.free_memory_mb = 100;
                return n;
              }()},
             ""},
        // Nowhere qualifies (the only other node drains): the local path answers.
        Case{"NoneQualifiesStays",
             {.self = "a"},
             {[] {
               NodeView n = Node("b", "f:1");
               n.draining = true;
               return n;
             }()},
             ""},
        Case{"EmptySnapshotStays", {.self = "a"}, {}, ""}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace thaw::dispatch

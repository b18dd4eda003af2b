// Drain moves as a table (dispatch/drain_moves.h): from the cluster snapshot, which versions
// this node starts an instance of, and which a draining node lets go.
#include "dispatch/drain_moves.h"

#include <gtest/gtest.h>

namespace thaw::dispatch {
namespace {

NodeView Node(const char* name, std::set<std::string> warm = {}, int64_t inflight = 0,
              bool draining = false) {
  NodeView n;
  n.name = name;
  n.cores = 2;
  n.free_memory_mb = 4096;
  n.inflight = inflight;
  n.warm = std::move(warm);
  n.draining = draining;
  return n;
}

NodeView Drained(const char* name, std::set<std::string> warm) {
  return Node(name, std::move(warm), 0, true);
}

// Every version is known, 512 MB, no models; "unknown:1" is not.
std::optional<PlacementRequest> Known(const std::string& version) {
  if (version.starts_with("unknown:")) return std::nullopt;
  return PlacementRequest{version, {}, 512};
}

struct Case {
  const char* name;
  const char* self;
  bool self_draining;
  std::vector<NodeView> nodes;
  std::vector<std::string> adopt;
  std::vector<std::string> release;
};

class DrainMovesTest : public ::testing::TestWithParam<Case> {};

TEST_P(DrainMovesTest, Plans) {
  const Case& c = GetParam();
  DrainMoves got = PlanDrainMoves(c.self, c.self_draining, ClusterSnapshot{c.nodes}, Known);
  EXPECT_EQ(got.adopt, c.adopt);
  EXPECT_EQ(got.release, c.release);
}

INSTANTIATE_TEST_SUITE_P(
    Table, DrainMovesTest,
    ::testing::Values(
        Case{"NothingDrainsNothingMoves", "a", false, {Node("a"), Node("b", {"f:1"})}, {}, {}},
        Case{"DrainedWarmAdoptedByTheOnlyOther",
             "a",
             false,
             {Node("a"), Drained("b", {"f:1", "g:2"})},
             {"f:1", "g:2"},
             {}},
        // Exactly one node acts: placement (least loaded) picks c, so a does nothing ...
        Case{"PlacedElsewhereNotAdopted",
             "a",
             false,
             {Node("a", {}, 4), Drained("b", {"f:1"}), Node("c")},
             {},
             {}},
        // ... and c, from the same snapshot, adopts it.
        Case{"PlacedHereAdopted",
             "c",
             false,
             {Node("a", {}, 4), Drained("b", {"f:1"}), Node("c")},
             {"f:1"},
             {}},
        // Already warm on a node that is not draining: nobody starts another.
        Case{"WarmElsewhereNotAdopted",
             "a",
             false,
             {Node("a"), Drained("b", {"f:1"}), Node("c", {"f:1"}, 9)},
             {},
             {}},
        Case{"UnknownVersionNotAdopted",
             "a",
             false,
             {Node("a"), Drained("b", {"unknown:1"})},
             {},
             {}},
        Case{"NoRoomNotAdopted",
             "a",
             false,
             {[] {
                NodeView n = Node("a");
                n.free_memory_mb = 100;
                return n;
              }(),
              Drained("b", {"f:1"})},
             {},
             {}},
        // Two drained nodes: neither adopts.
        Case{"DrainingNodeAdoptsNothing",
             "a",
             true,
             {Drained("a", {}), Drained("b", {"f:1"})},
             {},
             {}},
        // The draining node lets go of what is warm on a node that is not draining.
        Case{"DrainingReleasesWhatIsWarmElsewhere",
             "b",
             true,
             {Node("a", {"f:1"}), Drained("b", {"f:1", "g:1"})},
             {},
             {"f:1"}},
        // Its own record not marked yet: its own mark counts.
        Case{"OwnMarkCountsBeforeItsRecordSaysSo",
             "b",
             true,
             {Node("a", {"f:1"}), Node("b", {"f:1"})},
             {},
             {"f:1"}},
        // Warm on another draining node only: not a place to go.
        Case{"WarmOnlyOnAnotherDrainingNodeKept",
             "b",
             true,
             {Drained("a", {"f:1"}), Drained("b", {"f:1"})},
             {},
             {}}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace thaw::dispatch

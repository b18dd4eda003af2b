// runtime_api::NoteCall: when an instance's native channel moves to the shard its calls come
// from, as a table of call sequences.
#include "runtime_api/shard_affinity.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace thaw::runtime_api {
namespace {

struct Case {
  std::string name;
  int home;
  std::vector<int> callers;  // the shard of each call, in order
  std::vector<int> want;     // NoteCall's answer to each
  int final_home;            // home after the moves are applied
};

TEST(ShardAffinityTest, MovesAfterAStreakFromOneForeignShard) {
  const std::vector<Case> cases = {
      {"home calls never move", 0, {0, 0, 0, 0, 0, 0}, {-1, -1, -1, -1, -1, -1}, 0},
      {"four foreign calls in a row move", 0, {1, 1, 1, 1}, {-1, -1, -1, 1}, 1},
      {"three are not enough", 0, {1, 1, 1}, {-1, -1, -1}, 0},
      {"a home call between resets the streak",
       0,
       {1, 1, 1, 0, 1, 1, 1},
       {-1, -1, -1, -1, -1, -1, -1},
       0},
      {"two shards taking turns do not bounce it",
       0,
       {1, 0, 1, 0, 1, 0, 1, 0},
       {-1, -1, -1, -1, -1, -1, -1, -1},
       0},
      {"another foreign shard restarts the streak",
       0,
       {1, 1, 2, 2, 2, 2},
       {-1, -1, -1, -1, -1, 2},
       2},
      {"after a move the new home holds it",
       0,
       {1, 1, 1, 1, 1, 1, 1, 1},
       {-1, -1, -1, 1, -1, -1, -1, -1},
       1},
      {"and it can move back", 0, {1, 1, 1, 1, 0, 0, 0, 0}, {-1, -1, -1, 1, -1, -1, -1, 0}, 0},
      {"calls from no shard are not counted", 0, {-1, -1, -1, -1, -1}, {-1, -1, -1, -1, -1}, 0},
      {"a channel with no home never moves", -1, {1, 1, 1, 1, 1}, {-1, -1, -1, -1, -1}, -1},
  };
  for (const Case& c : cases) {
    ShardAffinity a;
    a.home = c.home;
    ASSERT_EQ(c.callers.size(), c.want.size()) << c.name;
    for (size_t i = 0; i < c.callers.size(); ++i) {
      const int to = NoteCall(a, c.callers[i]);
      EXPECT_EQ(to, c.want[i]) << c.name << ", call " << i;
      if (to >= 0) a.home = to;
    }
    EXPECT_EQ(a.home, c.final_home) << c.name;
  }
}

TEST(ShardAffinityTest, MoveAfterOneFollowsEveryForeignCall) {
  ShardAffinity a;
  a.home = 0;
  EXPECT_EQ(NoteCall(a, 1, 1), 1);
  a.home = 1;
  EXPECT_EQ(NoteCall(a, 1, 1), -1);
  EXPECT_EQ(NoteCall(a, 0, 1), 0);
}

}  // namespace
}  // namespace thaw::runtime_api

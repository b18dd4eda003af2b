// Warm capacity at deploy, as a table (dispatch/warm_capacity.h).
#include "dispatch/warm_capacity.h"

#include <gtest/gtest.h>

namespace thaw::dispatch {
namespace {

struct Case {
  const char* name;
  WarmFunction candidate;
  std::vector<WarmFunction> deployed;
  WarmLimits limits;
  const char* error;  // a part of the message, or "" for OK
};

class WarmCapacityTest : public ::testing::TestWithParam<Case> {};

TEST_P(WarmCapacityTest, Decides) {
  const Case& c = GetParam();
  Status st = CheckWarmCapacity(c.candidate, c.deployed, c.limits);
  if (std::string(c.error).empty()) {
    EXPECT_TRUE(st.ok()) << st.message();
  } else {
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(c.error), std::string::npos) << st.message();
    EXPECT_EQ(st.message().rfind("min_instances", 0), 0u) << st.message();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, WarmCapacityTest,
    ::testing::Values(
        Case{"NoWarmInstancesAlwaysFit", {"f", "default", 0, 10240}, {}, {1024, 0}, ""},
        Case{"FitsTheNode", {"f", "default", 2, 512}, {}, {1024, std::nullopt}, ""},
        Case{"OverTheNode",
             {"f", "default", 1000, 512},
             {},
             {4096, std::nullopt},
             "node_memory_mb) has 4096 of 4096 MB left"},
        Case{"OthersCount",
             {"f", "default", 1, 512},
             {{"g", "default", 2, 512}},
             {1024, std::nullopt},
             "has 0 of 1024 MB left"},
        Case{"ItsOwnOldVersionDoesNot",
             {"f", "default", 2, 512},
             {{"f", "default", 2, 512}},
             {1024, std::nullopt},
             ""},
        Case{"TenantConcurrencyCoversWarmInstances",
             {"acme.f", "acme", 50, 128},
             {},
             {1 << 20, 2},
             "exceed its concurrency limit of 2"},
        Case{"TenantSumsItsFunctions",
             {"acme.f", "acme", 1, 128},
             {{"acme.g", "acme", 2, 128}},
             {1 << 20, 2},
             "2 already kept warm by tenant acme"},
        Case{"OtherTenantsDoNotCountAgainstIt",
             {"acme.f", "acme", 2, 128},
             {{"beta.g", "beta", 5, 128}},
             {1 << 20, 2},
             ""}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(NodeMemoryTest, DefaultLeavesATenthAtLeastOneGigabyte) {
  EXPECT_EQ(DefaultNodeMemoryMb(24'000), 21'600);
  EXPECT_EQ(DefaultNodeMemoryMb(4'000), 2'976);
  EXPECT_EQ(DefaultNodeMemoryMb(512), 0);
  EXPECT_GT(ReadMemTotalMb(), 0);
}

}  // namespace
}  // namespace thaw::dispatch

// Fair shares of the Event queue, as a table (dispatch/fair_share.h).
#include "dispatch/fair_share.h"

#include <gtest/gtest.h>

namespace thaw::dispatch {
namespace {

struct Case {
  const char* name;
  ShareView view;
  ShareDecision want;
};

class FairShareTest : public ::testing::TestWithParam<Case> {};

TEST_P(FairShareTest, Decides) { EXPECT_EQ(AdmitToShare(GetParam().view), GetParam().want); }

// capacity, total, tenants, tenant, tenant_functions, function
INSTANTIATE_TEST_SUITE_P(
    Table, FairShareTest,
    ::testing::Values(
        Case{"EmptyQueueAdmits", {100, 0, 0, 0, 0, 0}, ShareDecision::kAdmit},
        Case{"UnderHalfAnyoneAdds", {100, 49, 1, 49, 1, 49}, ShareDecision::kAdmit},
        Case{"ALoneFloodStopsAtHalf", {100, 50, 1, 50, 1, 50}, ShareDecision::kTenantShare},
        Case{"ANewcomerFindsRoom", {100, 50, 1, 0, 0, 0}, ShareDecision::kAdmit},
        Case{"TwoFloodsStopAtAThirdEach", {100, 66, 2, 33, 1, 33}, ShareDecision::kTenantShare},
        Case{"UnderItsShareATenantAdds", {100, 60, 2, 20, 2, 10}, ShareDecision::kAdmit},
        Case{"OneFunctionCannotTakeItsTenantsShare",
             {100, 60, 2, 25, 1, 25},
             ShareDecision::kFunctionShare},
        Case{"ItsSiblingStillCan", {100, 60, 2, 25, 1, 0}, ShareDecision::kAdmit},
        Case{"FullIsFullForEveryone", {100, 100, 3, 0, 0, 0}, ShareDecision::kQueueFull},
        Case{"ATinyQueueStillAdmitsOne", {1, 0, 0, 0, 0, 0}, ShareDecision::kAdmit}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace thaw::dispatch

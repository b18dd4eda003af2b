// An instance's lifecycle: every step the pool may take, and none other (pool_internal.h).
#include <gtest/gtest.h>

#include <set>

#include "pool/pool_internal.h"

namespace thaw::pool {
namespace {

TEST(LifecycleTest, OnlyTheDocumentedStepsAreLegal) {
  using L = Lifecycle;
  const L all[] = {L::kSpawning, L::kInitializing, L::kReady, L::kStopping, L::kGone};
  const std::set<std::pair<L, L>> legal = {
      {L::kSpawning, L::kInitializing}, {L::kSpawning, L::kReady},
      {L::kSpawning, L::kStopping},     {L::kSpawning, L::kGone},
      {L::kInitializing, L::kReady},    {L::kInitializing, L::kStopping},
      {L::kReady, L::kStopping},        {L::kStopping, L::kGone}};
  for (L from : all) {
    for (L to : all) {
      EXPECT_EQ(LegalTransition(from, to), legal.count({from, to}) == 1)
          << LifecycleName(from) << " -> " << LifecycleName(to);
    }
  }
}

}  // namespace
}  // namespace thaw::pool

// TenantGate: concurrency, rate and budget limits with the time passed in.
#include "auth/tenant_gate.h"

#include <gtest/gtest.h>

namespace thaw::auth {
namespace {

using Verdict = Admission::Verdict;

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kPicoPerMicro = 1'000'000;
// 2026-11-28T12:00:00Z
constexpr int64_t kNow = 1'795'867'200LL * kSecond;

TEST(TenantGateTest, MonthsAreUtcCalendarMonths) {
  EXPECT_EQ(MonthIndex(0), 0);
  EXPECT_EQ(MonthIndex(kNow), (2026 - 1970) * 12 + 10);
  EXPECT_EQ(MonthStartMicros(MonthIndex(kNow)), 1'793'491'200LL * kSecond);      // 2026-11-01
  EXPECT_EQ(MonthStartMicros(MonthIndex(kNow) + 1), 1'796'083'200LL * kSecond);  // 2026-12-01
  EXPECT_EQ(MonthIndex(1'796'083'200LL * kSecond - 1), MonthIndex(kNow));
}

TEST(TenantGateTest, NoLimitsAdmitsEverything) {
  TenantGate gate;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(gate.Admit("acme", kNow).admitted());
  EXPECT_EQ(gate.inflight("acme"), 1000);
}

TEST(TenantGateTest, ConcurrencyLimitHoldsUntilRelease) {
  TenantGate gate;
  gate.SetLimits("acme", TenantLimits{2, std::nullopt, std::nullopt});
  EXPECT_TRUE(gate.Admit("acme", kNow).admitted());
  EXPECT_TRUE(gate.Admit("acme", kNow).admitted());
  Admission third = gate.Admit("acme", kNow);
  EXPECT_EQ(third.verdict, Verdict::kConcurrency);
  EXPECT_EQ(third.retry_after_s, 1);
  EXPECT_NE(third.message.find("concurrency limit of 2"), std::string::npos) << third.message;
  // Other tenants are not affected.
  EXPECT_TRUE(gate.Admit("beta", kNow).admitted());
  gate.Release("acme");
  EXPECT_TRUE(gate.Admit("acme", kNow).admitted());
}

TEST(TenantGateTest, RateLimitRefillsContinuously) {
  TenantGate gate;
  gate.SetLimits("acme", TenantLimits{std::nullopt, 4, std::nullopt});
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(gate.Admit("acme", kNow).admitted()) << i;
    gate.Release("acme");
  }
  Admission over = gate.Admit("acme", kNow);
  EXPECT_EQ(over.verdict, Verdict::kRate);
  EXPECT_EQ(over.retry_after_s, 1);
  EXPECT_NE(over.message.find("rate limit of 4 requests per second"), std::string::npos);
  // A quarter second later one more token has come back, and only one.
  EXPECT_TRUE(gate.Admit("acme", kNow + kSecond / 4).admitted());
  EXPECT_EQ(gate.Admit("acme", kNow + kSecond / 4).verdict, Verdict::kRate);
  // A long pause refills to the burst, not beyond.
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(gate.Admit("acme", kNow + 60 * kSecond).admitted());
  EXPECT_EQ(gate.Admit("acme", kNow + 60 * kSecond).verdict, Verdict::kRate);
}

TEST(TenantGateTest, BudgetWarnsAtEightyPercentAndStopsWhenSpent) {
  TenantGate gate;
  gate.SetLimits("acme", TenantLimits{std::nullopt, std::nullopt, 10});  // $0.00001
  gate.AddSpend("acme", kNow, 7 * kPicoPerMicro);
  Admission quiet = gate.Admit("acme", kNow);
  EXPECT_TRUE(quiet.admitted());
  EXPECT_TRUE(quiet.budget_warning.empty());
  gate.AddSpend("acme", kNow, kPicoPerMicro);  // 80%
  Admission warned = gate.Admit("acme", kNow);
  EXPECT_TRUE(warned.admitted());
  EXPECT_TRUE(warned.first_warning);
  EXPECT_NE(warned.budget_warning.find("80% of the monthly budget"), std::string::npos)
      << warned.budget_warning;
  EXPECT_FALSE(gate.Admit("acme", kNow).first_warning);  // logged once
  gate.AddSpend("acme", kNow, 2 * kPicoPerMicro - 1);    // one pico short
  EXPECT_TRUE(gate.Admit("acme", kNow).admitted());
  gate.AddSpend("acme", kNow, 1);
  Admission stopped = gate.Admit("acme", kNow);
  EXPECT_EQ(stopped.verdict, Verdict::kBudget);
  EXPECT_NE(stopped.message.find("monthly budget of $0.000010"), std::string::npos)
      << stopped.message;
  // Retry when the month ends: 2026-12-01 is 2 days and 12 hours away.
  EXPECT_EQ(stopped.retry_after_s, (2 * 24 + 12) * 3600);
  EXPECT_EQ(gate.CheckBudget("acme", kNow).verdict, Verdict::kBudget);
  // Spend of an earlier month does not count; a new month starts from zero.
  const int64_t december = 1'796'083'200LL * kSecond;
  EXPECT_TRUE(gate.Admit("acme", december).admitted());
  gate.AddSpend("acme", kNow, 100 * kPicoPerMicro);
  EXPECT_EQ(gate.SpentMicros("acme", december), 0);
  // Raising the budget lets the tenant go on within the month.
  gate.AddSpend("acme", december, 10 * kPicoPerMicro);
  EXPECT_EQ(gate.Admit("acme", december).verdict, Verdict::kBudget);
  gate.SetLimits("acme", TenantLimits{std::nullopt, std::nullopt, 20});
  EXPECT_TRUE(gate.Admit("acme", december).admitted());
}

TEST(TenantGateTest, SubMicroSpendAddsUp) {
  TenantGate gate;
  // $0.20 per million requests is 200,000 pico-dollars each: five make a micro-dollar.
  for (int i = 0; i < 5; ++i) gate.AddSpend("acme", kNow, 200'000);
  EXPECT_EQ(gate.SpentMicros("acme", kNow), 1);
}

}  // namespace
}  // namespace thaw::auth

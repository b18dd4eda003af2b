// The one admission decision (dispatch/admission.h), as a table: each limit, the order they are
// checked in, reserved against unreserved functions, the version's instances and queue, the
// node's memory; then the queue timeout. Times are a fake clock's.
#include "dispatch/admission.h"

#include <gtest/gtest.h>

#include "common/clock.h"

namespace thaw::dispatch {
namespace {

using Kind = Decision::Kind;
using pool::InstanceState;

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kPico = 1'000'000;  // per micro-dollar
// 2026-11-28T12:00:00Z
constexpr int64_t kNow = 1'795'867'200LL * kSecond;

// Builds the state a case starts from.
struct S {
  AdmissionState s;
  S& Concurrency(int64_t n) {
    s.limits.concurrency = n;
    return *this;
  }
  S& Rate(int64_t n, double tokens, int64_t refilled_us) {
    s.limits.rate_per_second = n;
    s.tenant.rate_seen = n;
    s.tenant.tokens = tokens;
    s.tenant.refilled_us = refilled_us;
    return *this;
  }
  S& Budget(int64_t micros, int64_t spent_micros) {
    s.limits.monthly_budget_micros = micros;
    s.tenant.budget_seen = micros;
    s.tenant.month = MonthIndex(kNow);
    s.tenant.spent_pico = spent_micros * kPico;
    return *this;
  }
  S& Shares(std::optional<int64_t> concurrency, std::optional<int64_t> rate) {
    s.concurrency_share = concurrency;
    s.rate_share = rate;
    return *this;
  }
  S& Running(int64_t n) {
    s.tenant.inflight = n;
    return *this;
  }
  S& Reserved(int64_t cap, int64_t running) {
    s.reserved_cap = cap;
    s.reserved_inflight = running;
    return *this;
  }
  S& Unreserved(int64_t running) {  // counted, but the function has no reservation
    s.reserved_inflight = running;
    return *this;
  }
  // The version: `instances` as (state, inflight), `queued`, max_instances, max_queue, room.
  S& Version(std::vector<std::pair<InstanceState, int64_t>> instances, int64_t queued = 0,
             int64_t max_instances = 4, int64_t max_queue = 8, bool memory_room = true,
             int64_t concurrency = 1) {
    VersionState v;
    uint64_t id = 1;
    for (auto [state, inflight] : instances) v.pool.instances.push_back({id++, state, inflight, 0});
    v.pool.queued = queued;
    v.limits.max_instances = max_instances;
    v.limits.max_queue = max_queue;
    v.limits.concurrency = concurrency;
    v.memory_room = memory_room;
    s.version = v;
    return *this;
  }
};

struct Case {
  const char* name;
  AdmissionState state;
  Kind want;
  RejectReason reason = RejectReason::kNone;
  uint64_t instance_id = 0;
  bool budget_only = false;
  int64_t now = kNow;
  bool tenant_held_elsewhere = false;
};

constexpr auto kReady = InstanceState::kReady;
constexpr auto kStarting = InstanceState::kStarting;
constexpr auto kStopping = InstanceState::kStopping;

class AdmissionTest : public ::testing::TestWithParam<Case> {};

TEST_P(AdmissionTest, Decides) {
  const Case& c = GetParam();
  CallRequest call{"acme", "acme.f", c.budget_only, c.tenant_held_elsewhere};
  Decision d = Admit(c.state, call, c.now);
  EXPECT_EQ(d.kind, c.want);
  EXPECT_EQ(d.reason, c.reason) << RejectReasonName(d.reason);
  if (c.want == Kind::kDispatch) {
    EXPECT_EQ(d.instance_id, c.instance_id);
  }
  // An admitted call holds a tenant slot (and a function slot under a reservation); a refused
  // one or a budget check takes nothing.
  const bool holds = d.admitted() && !c.budget_only;
  EXPECT_EQ(d.tenant.inflight,
            c.state.tenant.inflight + (holds && !c.tenant_held_elsewhere ? 1 : 0));
  EXPECT_EQ(d.reserved_inflight,
            c.state.reserved_inflight + (holds && c.state.reserved_cap ? 1 : 0));
}

INSTANTIATE_TEST_SUITE_P(
    Table, AdmissionTest,
    ::testing::Values(
        // Each limit on its own.
        Case{"NoLimitsAdmits", S().s, Kind::kAdmit},
        Case{"UnderTheConcurrencyLimit", S().Concurrency(2).Running(1).s, Kind::kAdmit},
        Case{"AtTheConcurrencyLimit", S().Concurrency(2).Running(2).s, Kind::kReject,
             RejectReason::kTenantConcurrency},
        Case{"ATokenLeft", S().Rate(4, 1.0, kNow).s, Kind::kAdmit},
        Case{"NoTokenLeft", S().Rate(4, 0.5, kNow).s, Kind::kReject, RejectReason::kTenantRate},
        Case{"ATokenCameBack", S().Rate(4, 0.5, kNow - kSecond / 8).s, Kind::kAdmit},
        Case{"ANewRateStartsFull",
             [] {
               S s = S().Rate(4, 0.0, kNow);
               s.s.limits.rate_per_second = 8;  // changed in the store since
               return s.s;
             }(),
             Kind::kAdmit},
        // In a cluster, this node's shares bound it in place of the whole limits.
        Case{"UnderTheNodesConcurrencyShare", S().Concurrency(4).Shares(2, {}).Running(1).s,
             Kind::kAdmit},
        Case{"AtTheNodesConcurrencyShare", S().Concurrency(4).Shares(2, {}).Running(2).s,
             Kind::kReject, RejectReason::kTenantConcurrency},
        Case{"AZeroShareRefuses", S().Concurrency(4).Shares(0, 0).s, Kind::kReject,
             RejectReason::kTenantConcurrency},
        Case{"AShareOverTheLimitIsTheLimit", S().Concurrency(2).Shares(5, {}).Running(2).s,
             Kind::kReject, RejectReason::kTenantConcurrency},
        Case{"ASharedLimitTheTenantLacksIsNotEnforced", S().Shares(0, 0).s, Kind::kAdmit},
        Case{"TheBucketHoldsNoMoreThanTheRateShare", S().Rate(8, 8.0, kNow).Shares({}, 0).s,
             Kind::kReject, RejectReason::kTenantRate},
        Case{"ATokenOfTheRateShare", S().Rate(8, 8.0, kNow).Shares({}, 1).s, Kind::kAdmit},
        Case{"UnderTheBudget", S().Budget(10, 7).s, Kind::kAdmit},
        Case{"BudgetSpent", S().Budget(10, 10).s, Kind::kReject, RejectReason::kTenantBudget},
        Case{"LastMonthsSpendIsForgotten",
             [] {
               S s = S().Budget(10, 10);
               s.s.tenant.month -= 1;
               return s.s;
             }(),
             Kind::kAdmit},
        Case{"UnderTheReservation", S().Reserved(2, 1).s, Kind::kAdmit},
        Case{"AtTheReservation", S().Reserved(2, 2).s, Kind::kReject,
             RejectReason::kReservedConcurrency},
        Case{"UnreservedFunctionsAreNotCapped", S().Unreserved(1000).s, Kind::kAdmit},
        // Order: budget, then concurrency, then rate, then the reservation, then the version.
        Case{"BudgetBeforeConcurrency", S().Budget(10, 10).Concurrency(1).Running(1).s,
             Kind::kReject, RejectReason::kTenantBudget},
        Case{"ConcurrencyBeforeRate", S().Concurrency(1).Running(1).Rate(4, 0.0, kNow).s,
             Kind::kReject, RejectReason::kTenantConcurrency},
        Case{"RateBeforeReservation", S().Rate(4, 0.0, kNow).Reserved(1, 1).s, Kind::kReject,
             RejectReason::kTenantRate},
        Case{"ReservationBeforeTheVersion", S().Reserved(1, 1).Version({{kReady, 1}}, 8, 1, 8).s,
             Kind::kReject, RejectReason::kReservedConcurrency},
        Case{"TenantBeforeTheVersion", S().Concurrency(1).Running(1).Version({{kReady, 0}}).s,
             Kind::kReject, RejectReason::kTenantConcurrency},
        // Event invocations are checked against the budget alone when queued.
        Case{"EventsSkipConcurrency", S().Concurrency(1).Running(1).s, Kind::kAdmit,
             RejectReason::kNone, 0, true},
        Case{"EventsStopAtTheBudget", S().Budget(10, 10).s, Kind::kReject,
             RejectReason::kTenantBudget, 0, true},
        // A call another node forwarded holds its tenant slot there: only the budget and the
        // reservation are decided here, and it takes no tenant slot or token here.
        Case{"ForwardedSkipsTheTenantsConcurrency", S().Concurrency(4).Shares(0, {}).s,
             Kind::kAdmit, RejectReason::kNone, 0, false, kNow, true},
        Case{"ForwardedSkipsTheTenantsRate", S().Rate(4, 0.0, kNow).Shares({}, 0).s, Kind::kAdmit,
             RejectReason::kNone, 0, false, kNow, true},
        Case{"ForwardedStopsAtTheBudget", S().Budget(10, 10).s, Kind::kReject,
             RejectReason::kTenantBudget, 0, false, kNow, true},
        Case{"ForwardedStopsAtTheReservation", S().Reserved(2, 2).s, Kind::kReject,
             RejectReason::kReservedConcurrency, 0, false, kNow, true},
        Case{"ForwardedTakesAReservedSlot", S().Concurrency(1).Running(1).Reserved(2, 1).s,
             Kind::kAdmit, RejectReason::kNone, 0, false, kNow, true},
        // The version's instances and queue, and the node's memory.
        Case{"AFreeReadyInstanceTakesIt", S().Version({{kStarting, 0}, {kReady, 0}}).s,
             Kind::kDispatch, RejectReason::kNone, 2},
        Case{"TheBusiestFreeInstanceTakesIt",
             S().Version({{kReady, 0}, {kReady, 1}}, 0, 4, 8, true, 2).s, Kind::kDispatch,
             RejectReason::kNone, 2},
        Case{"StoppingInstancesTakeNothing", S().Version({{kStopping, 0}}).s, Kind::kStart},
        Case{"NoInstanceStartsOne", S().Version({}).s, Kind::kStart},
        Case{"AStartingInstanceWillServeIt", S().Version({{kStarting, 0}}).s, Kind::kQueue},
        Case{"AStartingInstanceCoversOneCallNotTwo", S().Version({{kStarting, 0}}, 1).s,
             Kind::kStart},
        Case{"AtMaxInstancesWaits", S().Version({{kReady, 1}}, 0, 1).s, Kind::kQueue},
        Case{"AtMaxInstancesAndAFullQueue", S().Version({{kReady, 1}}, 8, 1, 8).s, Kind::kReject,
             RejectReason::kQueueFull},
        Case{"NoMemoryAndNoInstance", S().Version({}, 0, 4, 8, false).s, Kind::kReject,
             RejectReason::kMemory},
        Case{"NoMemoryButABusyInstanceWillServe", S().Version({{kReady, 1}}, 0, 4, 8, false).s,
             Kind::kQueue},
        Case{"WaitingCallsAreNotOvertaken", S().Version({{kReady, 0}, {kStarting, 0}}, 2).s,
             Kind::kStart}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(AdmissionTest, ARefusalTakesNoToken) {
  AdmissionState s = S().Rate(1, 1.0, kNow).Reserved(1, 1).s;
  Decision d = Admit(s, CallRequest{"acme", "acme.f"}, kNow);
  ASSERT_EQ(d.reason, RejectReason::kReservedConcurrency);
  EXPECT_DOUBLE_EQ(d.tenant.tokens, 1.0);
  s.reserved_inflight = 0;
  d = Admit(s, CallRequest{"acme", "acme.f"}, kNow);
  ASSERT_TRUE(d.admitted());
  EXPECT_DOUBLE_EQ(d.tenant.tokens, 0.0);
}

// A node's rate share refills its bucket at the share's rate; a changed share keeps the tokens
// it has (at most the new share) instead of starting full, so rebalancing gives no extra burst.
TEST(AdmissionTest, TheRateShareFillsTheBucket) {
  AdmissionState s = S().Rate(10, 0.0, kNow).Shares({}, 2).s;
  const CallRequest call{"acme", "acme.f"};
  Decision d = Admit(s, call, kNow + kSecond / 4);  // 0.5 tokens at 2/s
  EXPECT_EQ(d.reason, RejectReason::kTenantRate);
  EXPECT_DOUBLE_EQ(d.tenant.tokens, 0.5);
  s.tenant = d.tenant;
  s.rate_share = 6;  // raised: the bucket is not refilled
  d = Admit(s, call, kNow + kSecond / 4);
  EXPECT_EQ(d.reason, RejectReason::kTenantRate);
  d = Admit(s, call, kNow + kSecond / 2);  // 0.5 + 6 x 0.25
  ASSERT_TRUE(d.admitted());
  EXPECT_DOUBLE_EQ(d.tenant.tokens, 1.0);
}

TEST(AdmissionTest, TheRateBucketFollowsTheClock) {
  FakeClock clock(kNow);
  AdmissionState s = S().Rate(2, 2.0, 0).s;
  const CallRequest call{"acme", "acme.f"};
  int admitted = 0;
  // Ten calls a second for three seconds: two a second get through, after the burst of two.
  for (int i = 0; i < 30; ++i) {
    Decision d = Admit(s, call, clock.WallMicros());
    if (d.admitted()) ++admitted;
    s.tenant = d.tenant;
    s.tenant.inflight = 0;  // each call ends at once
    clock.Advance(kSecond / 10);
  }
  // The burst of two, then two a second: 2 + 5.8 tokens by the last call, at 2.9 s.
  EXPECT_EQ(admitted, 7);
}

TEST(AdmissionTest, SpendRollsIntoTheNextMonth) {
  TenantCounters t;
  t = AddSpend(t, kNow, 5 * kPico);
  EXPECT_EQ(t.spent_pico, 5 * kPico);
  const int64_t december = 1'796'083'200LL * kSecond;
  t = AddSpend(t, december, kPico);
  EXPECT_EQ(t.spent_pico, kPico);
  t = AddSpend(t, kNow, 100 * kPico);  // a late record of November
  EXPECT_EQ(t.spent_pico, kPico);
}

struct QueueCase {
  const char* name;
  int64_t waited_us;
  bool ready, starting;
  bool want;
};

class QueueTimeoutTest : public ::testing::TestWithParam<QueueCase> {};

TEST_P(QueueTimeoutTest, Decides) {
  FakeClock clock(kNow);
  const int64_t arrived = clock.MonoMicros();
  clock.Advance(GetParam().waited_us);
  EXPECT_EQ(QueueTimedOut(arrived, GetParam().ready, GetParam().starting, 10 * kSecond,
                          clock.MonoMicros()),
            GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Table, QueueTimeoutTest,
    ::testing::Values(QueueCase{"NotYet", 10 * kSecond - 1, true, false, false},
                      QueueCase{"AtTheTimeout", 10 * kSecond, true, false, true},
                      QueueCase{"NoInstanceAtAll", 10 * kSecond, false, false, true},
                      QueueCase{"OnlyStartingOnesWaitForTheirInit", 60 * kSecond, false, true,
                                false},
                      QueueCase{"AReadyOneMeansTheQueueIsSlow", 10 * kSecond, true, true, true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace thaw::dispatch

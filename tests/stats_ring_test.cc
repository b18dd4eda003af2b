// metrics::StatsRing (the per-minute live ring behind GET /v1/functions/{name}/stats) and
// ParseStatsRange (its window and step), with explicit times: no clock, no sleeps.
#include "metrics/stats_ring.h"

#include <gtest/gtest.h>

namespace thaw::metrics {
namespace {

constexpr int64_t kMinute = 60'000'000;
constexpr int64_t kT0 = 29'000'000 * kMinute;  // some minute in 2025

TEST(StatsRingTest, KeepsTheMostOfEachFigurePerMinute) {
  StatsRing ring;
  ring.Record(kT0 + 1'000'000, {{"f", {.ready = 1, .busy = 1, .inflight = 1}}});
  ring.Record(kT0 + 30'000'000, {{"f", {.ready = 3, .busy = 0, .starting = 2, .inflight = 0}}});
  ring.Record(kT0 + kMinute, {{"f", {.ready = 2}}});
  auto slots = ring.Range("f", kT0 / kMinute, 3);
  ASSERT_EQ(slots.size(), 3u);
  EXPECT_EQ(slots[0].minute, kT0 / kMinute);
  EXPECT_EQ(slots[0].max.ready, 3);
  EXPECT_EQ(slots[0].max.busy, 1);
  EXPECT_EQ(slots[0].max.starting, 2);
  EXPECT_EQ(slots[0].max.inflight, 1);
  EXPECT_EQ(slots[1].max.ready, 2);
  EXPECT_EQ(slots[1].max.busy, 0);
  EXPECT_EQ(slots[2].minute, -1);  // not sampled (yet)
}

TEST(StatsRingTest, FunctionsAreKeptApart) {
  StatsRing ring;
  ring.Record(kT0, {{"a", {.ready = 1}}, {"acme.a", {.ready = 5}}});
  EXPECT_EQ(ring.Range("a", kT0 / kMinute, 1)[0].max.ready, 1);
  EXPECT_EQ(ring.Range("acme.a", kT0 / kMinute, 1)[0].max.ready, 5);
  EXPECT_EQ(ring.Range("b", kT0 / kMinute, 1)[0].minute, -1);
}

TEST(StatsRingTest, ADayLaterTheSlotHoldsTheNewMinuteOnly) {
  StatsRing ring;
  ring.Record(kT0, {{"f", {.ready = 9}}});
  const int64_t day_later = kT0 + StatsRing::kSlots * kMinute;
  ring.Record(day_later, {{"f", {.ready = 1}}});
  EXPECT_EQ(ring.Range("f", kT0 / kMinute, 1)[0].minute, -1);  // overwritten, not shown as old
  auto now = ring.Range("f", day_later / kMinute, 1)[0];
  EXPECT_EQ(now.minute, day_later / kMinute);
  EXPECT_EQ(now.max.ready, 1);  // not max'ed with the old minute's 9
}

// Idle minutes (sampled, all zero) are kept apart from minutes nobody sampled (the server was
// not running, or the function not deployed): zeros against none.
TEST(StatsRingTest, IdleMinutesReadAsZerosAndGapsAsNone) {
  StatsRing ring;
  ring.Record(kT0, {{"f", {}}});
  ring.Record(kT0 + kMinute + 5'000'000, {{"f", {}}});
  ring.Record(kT0 + 4 * kMinute, {{"f", {.inflight = 2}}});
  auto slots = ring.Range("f", kT0 / kMinute - 1, 7);
  ASSERT_EQ(slots.size(), 7u);
  EXPECT_EQ(slots[0].minute, -1);  // before it was sampled
  EXPECT_EQ(slots[1].minute, kT0 / kMinute);
  EXPECT_EQ(slots[1].max.ready, 0);
  EXPECT_EQ(slots[2].minute, kT0 / kMinute + 1);
  EXPECT_EQ(slots[3].minute, -1);  // the gap
  EXPECT_EQ(slots[4].minute, -1);
  EXPECT_EQ(slots[5].minute, kT0 / kMinute + 4);
  EXPECT_EQ(slots[5].max.inflight, 2);
  EXPECT_EQ(slots[6].minute, -1);  // not yet
}

TEST(StatsRingTest, ForgetsAFunctionUnseenForADay) {
  StatsRing ring;
  ring.Record(kT0, {{"gone", {.ready = 1}}});
  ring.Record(kT0 + (StatsRing::kSlots - 1) * kMinute, {{"other", {.ready = 1}}});
  EXPECT_EQ(ring.Range("gone", kT0 / kMinute, 1)[0].max.ready, 1);
  ring.Record(kT0 + StatsRing::kSlots * kMinute, {{"other", {.ready = 1}}});
  EXPECT_EQ(ring.Range("gone", kT0 / kMinute, 1)[0].minute, -1);
}

TEST(ParseStatsRangeTest, AcceptsDurationsAndAlignsToTheStep) {
  struct Case {
    const char* window;
    const char* step;
    int64_t window_s, step_s;
  } cases[] = {
      {"", "", 3600, 60},
      {"1h", "60", 3600, 60},
      {"24h", "60", 86400, 60},
      {"1d", "300", 86400, 300},
      {"3600", "60s", 3600, 60},
      {"30m", "120", 1800, 120},
      {"3600s", "3600", 3600, 3600},
      {"7d", "1h", 604800, 3600},
  };
  const int64_t now = kT0 + 90'500'000;  // 1 min 30.5 s past a minute boundary
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.window) + " / " + c.step);
    auto r = ParseStatsRange(c.window, c.step, now);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->window_s, c.window_s);
    EXPECT_EQ(r->step_s, c.step_s);
    EXPECT_EQ(r->to_us % (c.step_s * 1'000'000), 0);
    EXPECT_GT(r->to_us, now);  // the bucket holding now is the last one
    EXPECT_LE(r->to_us - c.step_s * 1'000'000, now);
    EXPECT_EQ(r->to_us - r->from_us, c.window_s * 1'000'000);
  }
}

TEST(ParseStatsRangeTest, RefusesBadValuesNamingTheParameter) {
  struct Case {
    const char* window;
    const char* step;
    const char* names;
  } cases[] = {
      {"abc", "60", "window"},  {"1h", "abc", "step"},   {"1h", "7", "step"},
      {"1h", "90", "step"},     {"1h", "0", "step"},     {"59", "60", "window"},
      {"8d", "3600", "window"}, {"-1h", "60", "window"}, {"1h", "2d", "step"},
      {"1h", "3660", "window"}, {"7d", "60", "step"},    {"1x", "60", "window"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.window) + " / " + c.step);
    auto r = ParseStatsRange(c.window, c.step, kT0);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind(std::string(c.names) + ":", 0), 0u)
        << r.status().message();
  }
}

}  // namespace
}  // namespace thaw::metrics

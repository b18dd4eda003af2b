// Schedules (queue/schedule.h): EventBridge rate and cron expressions, parsed and asked for
// their next firing as tables of cases, on explicit times (a fake clock: nothing waits).
#include "queue/schedule.h"

#include <gtest/gtest.h>

#include <ctime>

#include "common/clock.h"

namespace thaw::queue {
namespace {

// Wall-clock microseconds of a UTC time.
int64_t Utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = mo - 1;
  t.tm_mday = d;
  t.tm_hour = h;
  t.tm_min = mi;
  t.tm_sec = s;
  return static_cast<int64_t>(timegm(&t)) * 1'000'000;
}

std::string Show(int64_t us) {
  time_t secs = static_cast<time_t>(us / 1'000'000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %a", &t);
  return buf;
}

TEST(ScheduleTest, RejectsMalformedExpressionsNamingTheProblem) {
  struct Case {
    const char* expression;
    const char* needle;
  } cases[] = {
      {"every 5 minutes", "must be rate(VALUE UNIT) or cron("},
      {"rate(5 minute)", "plural"},
      {"rate(1 minutes)", "singular"},
      {"rate(0 minutes)", "1 to 9999"},
      {"rate(5 seconds)", "minute(s), hour(s) or day(s)"},
      {"rate(5)", "rate(VALUE UNIT)"},
      {"cron(0 12 * * ?)", "6 fields"},
      {"cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"},
      {"cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"},
      {"cron(60 12 * * ? *)", "minutes '60'"},
      {"cron(0 24 * * ? *)", "hours '24'"},
      {"cron(0 12 32 * ? *)", "day-of-month '32'"},
      {"cron(0 12 * 13 ? *)", "month '13'"},
      {"cron(0 12 ? * 8 *)", "day-of-week '8'"},
      {"cron(0 12 ? * 6#6 *)", "DAY#N"},
      {"cron(0 12 * * ? 2300)", "year '2300'"},
      {"cron(0 12 5-1 * ? *)", "day-of-month '5-1'"},
      {"cron(0 12 xW * ? *)", "W needs a day"},
      {"cron(0/0 12 * * ? *)", "minutes '0/0'"},
  };
  for (const auto& c : cases) {
    auto s = ParseSchedule(c.expression);
    ASSERT_FALSE(s.ok()) << c.expression;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << c.expression;
    EXPECT_NE(s.status().message().find(c.needle), std::string::npos)
        << c.expression << ": " << s.status().message();
    EXPECT_NE(s.status().message().find(c.expression), std::string::npos) << c.expression;
  }
}

TEST(ScheduleTest, RateFiresEveryPeriodFromItsAnchor) {
  const int64_t anchor = Utc(2026, 3, 1, 10, 0, 30);
  struct Case {
    const char* expression;
    int64_t after;
    int64_t want;
  } cases[] = {
      {"rate(1 minute)", anchor, anchor + 60'000'000},
      {"rate(5 minutes)", anchor, anchor + 300'000'000},
      {"rate(5 minutes)", anchor + 299'999'999, anchor + 300'000'000},
      {"rate(5 minutes)", anchor + 300'000'000, anchor + 600'000'000},
      {"rate(5 minutes)", anchor - 1'000'000, anchor + 300'000'000},
      {"rate(2 hours)", anchor + 3 * 3'600'000'000LL, anchor + 4 * 3'600'000'000LL},
      {"rate(1 day)", anchor, anchor + 86'400'000'000LL},
      {"rate(3 days)", anchor + 86'400'000'000LL, anchor + 3 * 86'400'000'000LL},
  };
  for (const auto& c : cases) {
    auto s = ParseSchedule(c.expression);
    ASSERT_TRUE(s.ok()) << c.expression << ": " << s.status().message();
    auto next = NextFire(*s, c.after, anchor);
    ASSERT_TRUE(next.has_value()) << c.expression;
    EXPECT_EQ(*next, c.want) << c.expression << " after " << Show(c.after) << ": got "
                             << Show(*next);
  }
}

TEST(ScheduleTest, CronFiresAtTheMinutesItsFieldsMatch) {
  struct Case {
    const char* expression;
    int64_t after;
    int64_t want;  // 0: never again
  } cases[] = {
      // Every day at 12:00 UTC.
      {"cron(0 12 * * ? *)", Utc(2026, 3, 1, 11, 59, 59), Utc(2026, 3, 1, 12, 0)},
      {"cron(0 12 * * ? *)", Utc(2026, 3, 1, 12, 0), Utc(2026, 3, 2, 12, 0)},
      // Strictly after, even within the matching minute.
      {"cron(0 12 * * ? *)", Utc(2026, 3, 1, 12, 0, 30), Utc(2026, 3, 2, 12, 0)},
      // Every 15 minutes.
      {"cron(0/15 * * * ? *)", Utc(2026, 3, 1, 10, 7), Utc(2026, 3, 1, 10, 15)},
      {"cron(0/15 * * * ? *)", Utc(2026, 3, 1, 23, 50), Utc(2026, 3, 2, 0, 0)},
      // 10:15 on weekdays (2026-03-07 is a Saturday).
      {"cron(15 10 ? * MON-FRI *)", Utc(2026, 3, 6, 11, 0), Utc(2026, 3, 9, 10, 15)},
      {"cron(15 10 ? * 2-6 *)", Utc(2026, 3, 6, 11, 0), Utc(2026, 3, 9, 10, 15)},
      // Lists and ranges in hours.
      {"cron(30 8,17 * * ? *)", Utc(2026, 3, 1, 9, 0), Utc(2026, 3, 1, 17, 30)},
      {"cron(0 9-11 * * ? *)", Utc(2026, 3, 1, 11, 0), Utc(2026, 3, 2, 9, 0)},
      // The first of each month; month names.
      {"cron(0 0 1 * ? *)", Utc(2026, 1, 31, 1, 0), Utc(2026, 2, 1, 0, 0)},
      {"cron(0 0 1 JAN,JUL ? *)", Utc(2026, 2, 1, 0, 0), Utc(2026, 7, 1, 0, 0)},
      // L: the last day of the month (February 2028 is a leap month).
      {"cron(0 18 L * ? *)", Utc(2028, 2, 1), Utc(2028, 2, 29, 18, 0)},
      {"cron(0 18 L * ? *)", Utc(2026, 2, 1), Utc(2026, 2, 28, 18, 0)},
      // LW: the last weekday (2026-05-31 is a Sunday, so Friday the 29th).
      {"cron(0 9 LW * ? *)", Utc(2026, 5, 1), Utc(2026, 5, 29, 9, 0)},
      // 15W: nearest weekday to the 15th (2026-08-15 is a Saturday: Friday the 14th).
      {"cron(0 9 15W * ? *)", Utc(2026, 8, 1), Utc(2026, 8, 14, 9, 0)},
      // 1W on a Saturday stays in the month: Monday the 3rd (2026-08-01 is a Saturday).
      {"cron(0 9 1W * ? *)", Utc(2026, 7, 31), Utc(2026, 8, 3, 9, 0)},
      // 6L: the last Friday of the month (2026-03-27).
      {"cron(0 12 ? * 6L *)", Utc(2026, 3, 1), Utc(2026, 3, 27, 12, 0)},
      // 2#1: the first Monday (2026-03-02); 6#3 the third Friday (2026-03-20).
      {"cron(0 12 ? * 2#1 *)", Utc(2026, 3, 1), Utc(2026, 3, 2, 12, 0)},
      {"cron(0 12 ? * FRI#3 *)", Utc(2026, 3, 1), Utc(2026, 3, 20, 12, 0)},
      // Years: only 2027; and a year that is over.
      {"cron(0 0 1 1 ? 2027)", Utc(2026, 6, 1), Utc(2027, 1, 1, 0, 0)},
      {"cron(0 0 1 1 ? 2025)", Utc(2026, 6, 1), 0},
      // February 30th never comes.
      {"cron(0 0 30 2 ? 2026-2030)", Utc(2026, 1, 1), 0},
  };
  for (const auto& c : cases) {
    auto s = ParseSchedule(c.expression);
    ASSERT_TRUE(s.ok()) << c.expression << ": " << s.status().message();
    auto next = NextFire(*s, c.after, 0);
    if (c.want == 0) {
      EXPECT_FALSE(next.has_value()) << c.expression << ": " << Show(next.value_or(0));
      continue;
    }
    ASSERT_TRUE(next.has_value()) << c.expression;
    EXPECT_EQ(*next, c.want) << c.expression << " after " << Show(c.after) << ": got "
                             << Show(*next) << ", want " << Show(c.want);
  }
}

TEST(ScheduleTest, StartFiresAMissedRunOnceUnlessCatchUpIsOff) {
  auto s = ParseSchedule("rate(5 minutes)");
  ASSERT_TRUE(s.ok());
  FakeClock clock(Utc(2026, 3, 1, 10, 0));
  const int64_t anchor = clock.WallMicros();
  // Down for an hour after the first firing: twelve runs missed, one fires at start.
  const int64_t last = anchor + 300'000'000;
  clock.Advance(3'630'000'000LL);
  struct Case {
    int64_t last_fire;
    bool catch_up;
    bool fire_now;
  } cases[] = {
      {last, true, true},
      {last, false, false},
      // Never fired, deployed an hour ago: its first run was missed.
      {0, true, true},
      // Fired at its last regular time, half a minute ago: nothing missed.
      {anchor + 3'600'000'000LL, true, false},
  };
  for (const auto& c : cases) {
    StartPlan plan = PlanStart(*s, c.last_fire, anchor, clock.WallMicros(), c.catch_up);
    EXPECT_EQ(plan.fire_now, c.fire_now) << c.last_fire << " " << c.catch_up;
    ASSERT_TRUE(plan.next_us.has_value());
    EXPECT_GT(*plan.next_us, clock.WallMicros());
    EXPECT_EQ((*plan.next_us - anchor) % 300'000'000, 0);
  }
}

TEST(ScheduleTest, ScheduledEventPayloadHasEventBridgesShape) {
  const std::string p = ScheduledEventPayload(
      "id-1", "000000000000", "us-east-1",
      "arn:aws:events:us-east-1:000000000000:rule/thaw-hello-0", Utc(2026, 3, 1, 12, 0));
  EXPECT_EQ(p,
            R"({"version":"0","id":"id-1","detail-type":"Scheduled Event","source":"aws.events",)"
            R"("account":"000000000000","time":"2026-03-01T12:00:00Z","region":"us-east-1",)"
            R"("resources":["arn:aws:events:us-east-1:000000000000:rule/thaw-hello-0"],)"
            R"("detail":{}})");
}

}  // namespace
}  // namespace thaw::queue

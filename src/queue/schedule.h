// Schedule: a function's `schedule:` entries in EventBridge's syntax, `rate(5 minutes)` or
// `cron(0 12 * * ? *)` (six fields, UTC), parsed once and asked for their next firing time.
// Everything here is pure: times are wall-clock microseconds passed in, so tests run on a fake
// clock. Value types; thread-safe to copy.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace thaw::queue {

// EventBridge's cron fields. Day-of-month and day-of-week: exactly one is `?` (any).
struct CronSpec {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  // Day of month: days[1..31], or one of the special forms below; dom_any for `?`.
  std::bitset<32> days;
  bool dom_any = false;
  bool last_day = false;      // L
  bool last_weekday = false;  // LW: the last Monday-Friday of the month
  int nearest_weekday = 0;    // nW: the Monday-Friday nearest day n, within the month
  std::bitset<13> months;     // months[1..12]
  // Day of week, 1 = Sunday .. 7 = Saturday: weekdays[1..7], or nL / n#k; dow_any for `?`.
  std::bitset<8> weekdays;
  bool dow_any = false;
  int last_of_weekday = 0;  // nL: the last weekday n of the month
  int nth_weekday = 0;      // n#k: the k-th weekday n of the month
  int nth = 0;
  std::bitset<230> years;  // years[y - 1970], 1970..2199
};

struct Schedule {
  enum class Kind { kRate, kCron };
  Kind kind = Kind::kRate;
  std::string expression;  // as written
  int64_t period_us = 0;   // kRate
  CronSpec cron;           // kCron
};

inline constexpr int kMinYear = 1970;
inline constexpr int kMaxYear = 2199;

// Parses `rate(N unit)` (minute[s] | hour[s] | day[s], the singular for 1) or
// `cron(MIN HOUR DOM MONTH DOW YEAR)`. InvalidArgument says what is wrong and where.
[[nodiscard]] StatusOr<Schedule> ParseSchedule(const std::string& expression);

// The first firing strictly after `after_us`. A rate fires at anchor_us + k * period (anchor:
// when the schedule was first deployed); a cron at the whole minutes its fields match. Nullopt:
// it never fires again (its years are over).
std::optional<int64_t> NextFire(const Schedule& schedule, int64_t after_us, int64_t anchor_us);

// What a schedule does when the server starts at `now_us`, having last fired at last_fire_us
// (0: never; then anchor_us counts as the last firing). A firing missed while the server was
// down runs once now when catch_up is set (never more than once, however many were missed).
struct StartPlan {
  bool fire_now = false;
  std::optional<int64_t> next_us;  // the next regular firing after now
};
StartPlan PlanStart(const Schedule& schedule, int64_t last_fire_us, int64_t anchor_us,
                    int64_t now_us, bool catch_up);

// EventBridge's "Scheduled Event" payload for a firing at `fire_us`: id, detail-type, source
// aws.events, account, time (ISO 8601, UTC), region, resources [rule ARN], detail {}.
std::string ScheduledEventPayload(const std::string& id, const std::string& account,
                                  const std::string& region, const std::string& rule_arn,
                                  int64_t fire_us);

}  // namespace thaw::queue

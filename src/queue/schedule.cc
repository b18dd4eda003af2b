#include "queue/schedule.h"

#include <boost/json.hpp>
#include <cctype>
#include <ctime>
#include <string_view>
#include <vector>

#include "common/json_text.h"

namespace thaw::queue {
namespace {

constexpr int64_t kMinuteUs = 60'000'000;
constexpr int64_t kDayUs = 24 * 60 * kMinuteUs;

// Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
int64_t DaysFromCivil(int y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct Civil {
  int y, m, d;
};

Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return Civil{static_cast<int>(yoe + era * 400 + (m <= 2)), m, d};
}

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// 1 = Sunday .. 7 = Saturday, as EventBridge numbers them.
int Weekday(int y, int m, int d) {
  const int64_t days = DaysFromCivil(y, m, d);
  return static_cast<int>(((days % 7 + 7 + 4) % 7) + 1);  // 1970-01-01 was a Thursday
}

// The Monday-Friday nearest day n of the month, never leaving it (Quartz's nW); 0: none.
int NearestWeekday(int y, int m, int n) {
  const int dim = DaysInMonth(y, m);
  if (n > dim) return 0;
  const int wd = Weekday(y, m, n);
  if (wd == 7) return n == 1 ? 3 : n - 1;        // Saturday
  if (wd == 1) return n == dim ? n - 2 : n + 1;  // Sunday
  return n;
}

int LastWeekday(int y, int m) {
  int d = DaysInMonth(y, m);
  while (Weekday(y, m, d) == 1 || Weekday(y, m, d) == 7) --d;
  return d;
}

Status Bad(const std::string& expression, const std::string& why) {
  return InvalidArgument("schedule '" + expression + "': " + why);
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// A number in [lo, hi], or a name from `names` (names[i] is lo + i).
std::optional<int> Value(std::string_view text, int lo, int hi,
                         const std::vector<std::string_view>& names) {
  if (text.empty()) return std::nullopt;
  const std::string upper = Upper(text);
  for (size_t i = 0; i < names.size(); ++i) {
    if (upper == names[i]) return lo + static_cast<int>(i);
  }
  if (text.size() > 4) return std::nullopt;
  int v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// One field of `,`-separated `*`, `N`, `A-B`, each optionally `/STEP`; sets bits [lo, hi].
Status ParseField(const std::string& expression, const std::string& field_name,
                  std::string_view text, int lo, int hi, const std::vector<std::string_view>& names,
                  std::vector<bool>& out) {
  out.assign(hi + 1, false);
  auto bad = [&](std::string_view part) {
    return Bad(expression, field_name + " '" + std::string(part) + "' is not a value in " +
                               std::to_string(lo) + "-" + std::to_string(hi) +
                               ", a range A-B, * or a step X/N");
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view part = text.substr(start, comma - start);
    std::string_view range = part;
    int step = 1;
    if (size_t slash = part.find('/'); slash != std::string_view::npos) {
      range = part.substr(0, slash);
      auto s = Value(part.substr(slash + 1), 1, hi - lo + 1, {});
      if (!s) return bad(part);
      step = *s;
    }
    int a = lo, b = hi;
    if (range != "*") {
      size_t dash = range.find('-');
      auto first = Value(range.substr(0, dash), lo, hi, names);
      if (!first) return bad(part);
      a = *first;
      b = part.find('/') != std::string_view::npos ? hi : a;
      if (dash != std::string_view::npos) {
        auto last = Value(range.substr(dash + 1), lo, hi, names);
        if (!last || *last < a) return bad(part);
        b = *last;
      }
    }
    for (int v = a; v <= b; v += step) out[v] = true;
    start = comma + 1;
  }
  return Status::Ok();
}

template <size_t N>
void Fill(std::bitset<N>& bits, const std::vector<bool>& v, int offset = 0) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i]) bits.set(i - offset);
  }
}

const std::vector<std::string_view> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
const std::vector<std::string_view> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

Status ParseDayOfMonth(const std::string& expr, std::string_view text, CronSpec& c) {
  if (text == "?") {
    c.dom_any = true;
    return Status::Ok();
  }
  if (text == "L") {
    c.last_day = true;
    return Status::Ok();
  }
  if (text == "LW") {
    c.last_weekday = true;
    return Status::Ok();
  }
  if (text.size() >= 2 && text.back() == 'W') {
    auto n = Value(text.substr(0, text.size() - 1), 1, 31, {});
    if (!n) return Bad(expr, "day-of-month '" + std::string(text) + "': W needs a day 1-31 (15W)");
    c.nearest_weekday = *n;
    return Status::Ok();
  }
  std::vector<bool> v;
  THAW_RETURN_IF_ERROR(ParseField(expr, "day-of-month", text, 1, 31, {}, v));
  Fill(c.days, v);
  return Status::Ok();
}

Status ParseDayOfWeek(const std::string& expr, std::string_view text, CronSpec& c) {
  if (text == "?") {
    c.dow_any = true;
    return Status::Ok();
  }
  if (text == "L") {  // Quartz: the last day of the week, Saturday
    c.weekdays.set(7);
    return Status::Ok();
  }
  if (text.size() >= 2 && text.back() == 'L') {
    auto n = Value(text.substr(0, text.size() - 1), 1, 7, kDayNames);
    if (!n) return Bad(expr, "day-of-week '" + std::string(text) + "': L needs a day 1-7 (6L)");
    c.last_of_weekday = *n;
    return Status::Ok();
  }
  if (size_t hash = text.find('#'); hash != std::string_view::npos) {
    auto n = Value(text.substr(0, hash), 1, 7, kDayNames);
    auto k = Value(text.substr(hash + 1), 1, 5, {});
    if (!n || !k) {
      return Bad(expr, "day-of-week '" + std::string(text) + "': # needs DAY#N, N 1-5 (6#3)");
    }
    c.nth_weekday = *n;
    c.nth = *k;
    return Status::Ok();
  }
  std::vector<bool> v;
  THAW_RETURN_IF_ERROR(ParseField(expr, "day-of-week", text, 1, 7, kDayNames, v));
  Fill(c.weekdays, v);
  return Status::Ok();
}

StatusOr<Schedule> ParseRate(const std::string& expr, std::string_view body) {
  size_t space = body.find(' ');
  if (space == std::string_view::npos || body.find(' ', space + 1) != std::string_view::npos) {
    return Bad(expr, "a rate is rate(VALUE UNIT), e.g. rate(5 minutes)");
  }
  auto n = Value(body.substr(0, space), 1, 9999, {});
  if (!n) return Bad(expr, "the rate's value must be a whole number from 1 to 9999");
  const std::string_view unit = body.substr(space + 1);
  int64_t unit_us = 0;
  std::string_view singular;
  if (unit == "minute" || unit == "minutes") {
    unit_us = kMinuteUs;
    singular = "minute";
  } else if (unit == "hour" || unit == "hours") {
    unit_us = 60 * kMinuteUs;
    singular = "hour";
  } else if (unit == "day" || unit == "days") {
    unit_us = kDayUs;
    singular = "day";
  } else {
    return Bad(expr, "the rate's unit must be minute(s), hour(s) or day(s), got '" +
                         std::string(unit) + "'");
  }
  if ((*n == 1) != (unit == singular)) {
    return Bad(expr,
               *n == 1
                   ? "a rate of 1 takes the singular unit (rate(1 " + std::string(singular) + "))"
                   : "a rate above 1 takes the plural unit (" + std::string(singular) + "s)");
  }
  Schedule s;
  s.kind = Schedule::Kind::kRate;
  s.expression = expr;
  s.period_us = *n * unit_us;
  return s;
}

StatusOr<Schedule> ParseCron(const std::string& expr, std::string_view body) {
  std::vector<std::string_view> f;
  size_t start = 0;
  while (start < body.size()) {
    size_t space = body.find(' ', start);
    if (space == std::string_view::npos) space = body.size();
    if (space > start) f.push_back(body.substr(start, space - start));
    start = space + 1;
  }
  if (f.size() != 6) {
    return Bad(expr,
               "a cron has 6 fields (minutes hours day-of-month month day-of-week year), got " +
                   std::to_string(f.size()));
  }
  Schedule s;
  s.kind = Schedule::Kind::kCron;
  s.expression = expr;
  CronSpec& c = s.cron;
  std::vector<bool> v;
  THAW_RETURN_IF_ERROR(ParseField(expr, "minutes", f[0], 0, 59, {}, v));
  Fill(c.minutes, v);
  THAW_RETURN_IF_ERROR(ParseField(expr, "hours", f[1], 0, 23, {}, v));
  Fill(c.hours, v);
  THAW_RETURN_IF_ERROR(ParseDayOfMonth(expr, f[2], c));
  THAW_RETURN_IF_ERROR(ParseField(expr, "month", f[3], 1, 12, kMonthNames, v));
  Fill(c.months, v);
  THAW_RETURN_IF_ERROR(ParseDayOfWeek(expr, f[4], c));
  THAW_RETURN_IF_ERROR(ParseField(expr, "year", f[5], kMinYear, kMaxYear, {}, v));
  for (int y = kMinYear; y <= kMaxYear; ++y) {
    if (v[y]) c.years.set(y - kMinYear);
  }
  if (c.dom_any == c.dow_any) {
    return Bad(expr,
               "exactly one of day-of-month and day-of-week must be '?' (cron(0 12 * * ? *))");
  }
  return s;
}

bool DayMatches(const CronSpec& c, int y, int m, int d) {
  if (y < kMinYear || y > kMaxYear || !c.years[y - kMinYear] || !c.months[m]) return false;
  const int dim = DaysInMonth(y, m);
  if (c.dom_any) {
    const int wd = Weekday(y, m, d);
    if (c.last_of_weekday != 0) return wd == c.last_of_weekday && d + 7 > dim;
    if (c.nth_weekday != 0) return wd == c.nth_weekday && (d - 1) / 7 + 1 == c.nth;
    return c.weekdays[wd];
  }
  if (c.last_day) return d == dim;
  if (c.last_weekday) return d == LastWeekday(y, m);
  if (c.nearest_weekday != 0) return d == NearestWeekday(y, m, c.nearest_weekday);
  return c.days[d];
}

std::optional<int64_t> NextCron(const CronSpec& c, int64_t after_us) {
  // Whole minutes strictly after `after_us`.
  int64_t minute = after_us >= 0 ? after_us / kMinuteUs + 1 : -((-after_us) / kMinuteUs);
  int64_t day = minute * kMinuteUs >= 0 ? minute * kMinuteUs / kDayUs : -1;
  int first_minute_of_day = static_cast<int>(minute - day * (kDayUs / kMinuteUs));
  for (;; ++day, first_minute_of_day = 0) {
    const Civil civ = CivilFromDays(day);
    if (civ.y > kMaxYear) return std::nullopt;
    if (!DayMatches(c, civ.y, civ.m, civ.d)) continue;
    for (int h = first_minute_of_day / 60; h < 24; ++h) {
      if (!c.hours[h]) continue;
      const int from = h == first_minute_of_day / 60 ? first_minute_of_day % 60 : 0;
      for (int mi = from; mi < 60; ++mi) {
        if (c.minutes[mi]) return (day * 24 * 60 + h * 60 + mi) * kMinuteUs;
      }
    }
  }
}

}  // namespace

StatusOr<Schedule> ParseSchedule(const std::string& expression) {
  std::string_view e = expression;
  if (e.ends_with(")")) {
    if (e.starts_with("rate(")) return ParseRate(expression, e.substr(5, e.size() - 6));
    if (e.starts_with("cron(")) return ParseCron(expression, e.substr(5, e.size() - 6));
  }
  return Bad(expression, "must be rate(VALUE UNIT) or cron(MIN HOUR DOM MONTH DOW YEAR)");
}

std::optional<int64_t> NextFire(const Schedule& schedule, int64_t after_us, int64_t anchor_us) {
  if (schedule.kind == Schedule::Kind::kCron) return NextCron(schedule.cron, after_us);
  if (after_us < anchor_us) return anchor_us + schedule.period_us;
  const int64_t k = (after_us - anchor_us) / schedule.period_us + 1;
  return anchor_us + k * schedule.period_us;
}

StartPlan PlanStart(const Schedule& schedule, int64_t last_fire_us, int64_t anchor_us,
                    int64_t now_us, bool catch_up) {
  StartPlan plan;
  const int64_t last = last_fire_us > 0 ? last_fire_us : anchor_us;
  auto due = NextFire(schedule, last, anchor_us);
  plan.fire_now = catch_up && due && *due <= now_us;
  plan.next_us = NextFire(schedule, now_us, anchor_us);
  return plan;
}

std::string ScheduledEventPayload(const std::string& id, const std::string& account,
                                  const std::string& region, const std::string& rule_arn,
                                  int64_t fire_us) {
  time_t secs = static_cast<time_t>(fire_us / 1'000'000);
  tm t;
  gmtime_r(&secs, &t);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
  boost::json::object o{{"version", "0"},
                        {"id", id},
                        {"detail-type", "Scheduled Event"},
                        {"source", "aws.events"},
                        {"account", account},
                        {"time", when},
                        {"region", region},
                        {"resources", boost::json::array{boost::json::value(rule_arn)}},
                        {"detail", boost::json::object{}}};
  return JsonText(o);
}

}  // namespace thaw::queue

// The trace simulator (src/sim/): parsing the Azure Functions 2019 formats, a small hand-made
// trace whose figures are worked out below, a timer the adaptive policy learns, and synthetic
// days of timers, bursty HTTP and rare functions generated here.
#include "sim/simulator.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "sim/synthetic.h"
#include "sim/trace.h"

namespace thaw::sim {
namespace {

// An invocations file of `minutes` columns: function name -> {minute (0-based) -> calls}.
std::string Invocations(
    int64_t minutes, const std::vector<std::pair<std::string, std::map<int64_t, int64_t>>>& fns) {
  std::string csv = "HashOwner,HashApp,HashFunction,Trigger";
  for (int64_t m = 1; m <= minutes; ++m) csv += "," + std::to_string(m);
  csv += "\n";
  for (const auto& [name, calls] : fns) {
    csv += "owner,app-" + name + "," + name + ",http";
    for (int64_t m = 0; m < minutes; ++m) {
      auto it = calls.find(m);
      csv += "," + std::to_string(it == calls.end() ? 0 : it->second);
    }
    csv += "\n";
  }
  return csv;
}

std::map<std::string, PolicyResult> RunAll(const Trace& trace) {
  std::map<std::string, PolicyResult> out;
  for (const PolicySpec& p : StandardPolicies()) out[p.name] = Simulate(trace, p);
  return out;
}

Trace MustParse(const std::string& invocations, const std::string& durations = "",
                const std::string& memory = "") {
  auto trace = ParseInvocations(invocations, "invocations.csv");
  EXPECT_TRUE(trace.ok()) << trace.status().message();
  if (!durations.empty()) {
    Status st = ApplyDurations(durations, "durations.csv", *trace);
    EXPECT_TRUE(st.ok()) << st.message();
  }
  if (!memory.empty()) {
    Status st = ApplyMemory(memory, "memory.csv", *trace);
    EXPECT_TRUE(st.ok()) << st.message();
  }
  return *trace;
}

const char kDurationsHeader[] =
    "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
    "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
    "percentile_Average_99,percentile_Average_100\n";
const char kMemoryHeader[] =
    "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,"
    "AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,"
    "AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,"
    "AverageAllocatedMb_pct100\n";

// One hour, four functions:
//   A: a 15-minute timer (minutes 0, 15, 30, 45), 1 s calls, 1024 MB.
//   B: 3 calls in minute 0 and 1 in minute 2, 30 s each, 2048 MB. Minute 0 needs
//      ceil(3 x 30 / 60) = 2 instances, busy until 40 + 30 = 70 s; minute 2 needs 1.
//   C: one call in the last minute, 1 s, 1024 MB.
//   D: a call every minute, 1 s, no memory row: 128 MB.
// No function reaches 10 idle times, so the adaptive policies use their 300 s fallback.
TEST(SimulatorTest, HandMadeHourMatchesTheWorkedFigures) {
  const std::string invocations = Invocations(60, {{"A", {{0, 1}, {15, 1}, {30, 1}, {45, 1}}},
                                                   {"B", {{0, 3}, {2, 1}}},
                                                   {"C", {{59, 1}}},
                                                   {"D", [] {
                                                      std::map<int64_t, int64_t> every;
                                                      for (int64_t m = 0; m < 60; ++m) every[m] = 1;
                                                      return every;
                                                    }()}});
  const std::string durations = std::string(kDurationsHeader) +
                                "owner,app-A,A,1000,4,1000,1000,0,0,0,0,0,0,0\n"
                                "owner,app-B,B,30000,4,30000,30000,0,0,0,0,0,0,0\n"
                                "owner,app-D,D,1000,60,1000,1000,0,0,0,0,0,0,0\n";
  const std::string memory = std::string(kMemoryHeader) +
                             "owner,app-A,10,1024,0,0,0,0,0,0,0,0\n"
                             "owner,app-B,10,2048,0,0,0,0,0,0,0,0\n"
                             "owner,app-C,10,1024,0,0,0,0,0,0,0,0\n";
  auto r = RunAll(MustParse(invocations, durations, memory));
  // D wastes 59 s after each of its 60 calls (the last until the end of the hour), at 1/8 GB:
  // 442.5 GB-s under every policy (its template is never alone).
  //
  // fixed-10m. A: 4 cold, 600 s idle after each (the last ends at 55:01): 2,400 GB-s.
  // B: 2 cold; one instance reused at 120 s after 50 s idle, then both idle 600 s: 1,250 s at
  // 2 GB = 2,500. C: 1 cold, 59 s to the end: 59. Cold %: A 100, B 50, C 100, D 1/60.
  const PolicyResult& f10 = r["fixed-10m"];
  EXPECT_EQ(f10.invocations, 69);
  EXPECT_EQ(f10.cold_starts, 8);
  EXPECT_EQ(f10.fork_starts, 0);
  EXPECT_NEAR(f10.cold_start_pct, 100.0 * 8 / 69, 1e-9);
  EXPECT_NEAR(f10.p75_function_cold_start_pct, 100, 1e-9);  // 3rd of [1.7, 50, 100, 100]
  EXPECT_NEAR(f10.wasted_gb_s, 2400 + 2500 + 59 + 442.5, 1e-6);
  // fixed-20m. A: 1 cold, 899 s idle x 3 and 899 s to the end: 3,596. B: 50 + 1,200 + 1,200 s
  // at 2 GB: 4,900. C: 59. Cold %: A 25, B 50, C 100.
  const PolicyResult& f20 = r["fixed-20m"];
  EXPECT_EQ(f20.cold_starts, 5);
  EXPECT_NEAR(f20.p75_function_cold_start_pct, 50, 1e-9);  // 3rd of [1.7, 25, 50, 100]
  EXPECT_NEAR(f20.wasted_gb_s, 3596 + 4900 + 59 + 442.5, 1e-6);
  // adaptive (300 s fallback). A: 4 cold, 300 s each: 1,200. B: (50 + 300 + 300) x 2: 1,300.
  const PolicyResult& ad = r["adaptive"];
  EXPECT_EQ(ad.cold_starts, 8);
  EXPECT_NEAR(ad.p75_function_cold_start_pct, 100, 1e-9);
  EXPECT_NEAR(ad.wasted_gb_s, 1200 + 1300 + 59 + 442.5, 1e-6);
  // adaptive+templates. A: 4 cold; each time the instance idles 300 s, then the template
  // alone 300 s more (the fallback's twice the window): 2,400. B: minute 0 is one cold start
  // (its init becomes the template) and one fork; at 120 s one instance is reused (50 s idle);
  // at the end the most recent idles 300 s, the surplus one 60 s (it went at 130 s), and the
  // template is alone from 450 s to 750 s: (50 + 300 + 60 + 300) x 2 = 1,420. C: 59 (its
  // instance outlives the hour, so its template is never alone).
  const PolicyResult& at = r["adaptive+templates"];
  EXPECT_EQ(at.cold_starts, 7);
  EXPECT_EQ(at.fork_starts, 1);
  EXPECT_NEAR(at.p75_function_cold_start_pct, 100, 1e-9);  // 3rd of [1.7, 25, 100, 100]
  EXPECT_NEAR(at.wasted_gb_s, 2400 + 1420 + 59 + 442.5, 1e-6);
}

// A 15-minute timer for a day, 1 s calls, 1 GB. After its 10th idle time (the plan for the
// idle time after call 10) the histogram is representative: bin 14, so pre-warm 12.6 min after
// the call ends and keep 3.9 min; every later call finds the pre-warmed instance.
TEST(SimulatorTest, AdaptiveLearnsATimerAfterTenIdleTimes) {
  std::map<int64_t, int64_t> calls;
  for (int64_t m = 0; m < 1440; m += 15) calls[m] = 1;
  const std::string memory = std::string(kMemoryHeader) + "owner,app-T,10,1024,0,0,0,0,0,0,0,0\n";
  auto r = RunAll(MustParse(Invocations(1440, {{"T", calls}}), "", memory));
  EXPECT_EQ(r["fixed-10m"].invocations, 96);
  EXPECT_EQ(r["fixed-10m"].cold_starts, 96);
  EXPECT_NEAR(r["fixed-10m"].wasted_gb_s, 96 * 600, 1e-6);
  EXPECT_EQ(r["fixed-20m"].cold_starts, 1);
  // Calls 0-10 are cold (300 s fallback); 11-95 find the pre-warmed instance. Idle: 10 x 300 s
  // of fallback, then 86 pre-warmed instances idle 899 - 756 = 143 s each.
  EXPECT_EQ(r["adaptive"].cold_starts, 11);
  EXPECT_NEAR(r["adaptive"].wasted_gb_s, 10 * 300 + 86 * 143, 1e-6);
  EXPECT_EQ(r["adaptive+templates"].cold_starts, 11);
}

TEST(SimulatorTest, EmptyDayHasNoInvocationsAndNoWaste) {
  auto r = RunAll(MustParse(Invocations(1440, {{"idle", {}}})));
  for (const auto& [name, result] : r) {
    EXPECT_EQ(result.invocations, 0) << name;
    EXPECT_EQ(result.cold_starts, 0) << name;
    EXPECT_EQ(result.wasted_gb_s, 0) << name;
    EXPECT_EQ(result.p75_function_cold_start_pct, 0) << name;
  }
}

// Synthetic days generated here (sim/synthetic.h): each kind of function on its own, then the
// 500-function mix of the target.
Trace Synthetic(int64_t functions, uint64_t seed, int64_t only_kind_below = 10,
                int64_t only_kind_from = 0) {
  SyntheticFiles files = MakeSyntheticDay({.functions = functions, .seed = seed});
  Trace all = MustParse(files.invocations, files.durations, files.memory);
  Trace some;
  some.minutes = all.minutes;
  for (size_t i = 0; i < all.functions.size(); ++i) {
    const int64_t kind = static_cast<int64_t>(i) % 10;
    if (kind >= only_kind_from && kind < only_kind_below)
      some.functions.push_back(all.functions[i]);
  }
  return some;
}

TEST(SimulatorTest, SyntheticDayIsDeterministicAndInTheDatasetFormat) {
  SyntheticFiles a = MakeSyntheticDay({.functions = 20, .seed = 7});
  SyntheticFiles b = MakeSyntheticDay({.functions = 20, .seed = 7});
  SyntheticFiles c = MakeSyntheticDay({.functions = 20, .seed = 8});
  EXPECT_EQ(a.invocations, b.invocations);
  EXPECT_NE(a.invocations, c.invocations);
  EXPECT_EQ(a.invocations.substr(0, 42), "HashOwner,HashApp,HashFunction,Trigger,1,2");
  Trace t = MustParse(a.invocations, a.durations, a.memory);
  ASSERT_EQ(t.functions.size(), 20u);
  EXPECT_EQ(t.minutes, 1440);
  EXPECT_EQ(t.functions[0].trigger, "timer");
  EXPECT_EQ(t.functions[5].trigger, "http");
  EXPECT_EQ(t.functions[9].trigger, "queue");
  for (const FunctionTrace& f : t.functions) {
    EXPECT_NE(f.memory_mb, kDefaultMemoryMb);  // every app has its memory row
    EXPECT_GE(f.duration_ms, 20);
  }
}

TEST(SimulatorTest, TimersAreLearntAndPrewarmed) {
  Trace timers = Synthetic(200, 3, 3, 0);  // kinds 0-2
  auto r = RunAll(timers);
  // Timers of up to 10 minutes stay warm under fixed-10m; slower ones are cold every time.
  // The adaptive policy pre-warms them once learnt: far fewer cold starts, less memory.
  EXPECT_LT(r["adaptive"].cold_starts * 2, r["fixed-10m"].cold_starts);
  EXPECT_LT(r["adaptive"].wasted_gb_s, r["fixed-10m"].wasted_gb_s);
}

TEST(SimulatorTest, RareFunctionsAreColdUnderEveryPolicy) {
  Trace rare = Synthetic(200, 4, 10, 7);  // kinds 7-9: a few calls a day
  auto r = RunAll(rare);
  const int64_t calls = r["fixed-10m"].invocations;
  ASSERT_GT(calls, 0);
  // Calls hours apart: nearly every one is cold whatever the policy, and the adaptive ones
  // (300 s fallback) hold idle instances half as long as fixed-10m.
  EXPECT_GT(r["fixed-20m"].cold_starts * 10, calls * 9);
  EXPECT_GT(r["adaptive"].cold_starts * 10, calls * 9);
  EXPECT_NEAR(r["adaptive"].wasted_gb_s * 2, r["fixed-10m"].wasted_gb_s,
              r["fixed-10m"].wasted_gb_s * 0.05);
}

TEST(SimulatorTest, TemplatesTurnScaleOutOfBurstyHttpIntoForks) {
  Trace http = Synthetic(200, 5, 7, 3);  // kinds 3-6
  auto r = RunAll(http);
  EXPECT_GT(r["adaptive+templates"].fork_starts, 0);
  // Scale-out starts fork from the live template: well under 60% of adaptive's cold starts.
  EXPECT_LT(r["adaptive+templates"].cold_starts * 10, r["adaptive"].cold_starts * 6);
}

// The target: on a synthetic day of 500 functions, adaptive+templates has at most half
// the cold starts of fixed-10m, with no more wasted memory-time.
TEST(SimulatorTest, FiveHundredFunctionDayMeetsTheTarget) {
  auto r = RunAll(Synthetic(500, 1));
  EXPECT_GT(r["fixed-10m"].invocations, 100'000);
  EXPECT_LE(r["adaptive+templates"].cold_starts * 2, r["fixed-10m"].cold_starts);
  EXPECT_LE(r["adaptive+templates"].wasted_gb_s, r["fixed-10m"].wasted_gb_s);
}

struct BadInput {
  std::string name;
  std::string invocations;
  std::string durations;
  std::string memory;
  std::string error;  // a substring of the message
};

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, NamesTheFileAndLine) {
  const BadInput& c = GetParam();
  auto trace = ParseInvocations(c.invocations, "invocations.csv");
  Status st = trace.status();
  if (trace.ok() && !c.durations.empty()) st = ApplyDurations(c.durations, "durations.csv", *trace);
  if (trace.ok() && st.ok() && !c.memory.empty()) st = ApplyMemory(c.memory, "memory.csv", *trace);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(c.error), std::string::npos) << st.message();
}

std::vector<BadInput> BadInputs() {
  const std::string header = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n";
  const std::string good = header + "o,a,f,http,1,0,2\n";
  return {
      {"Empty", "", "", "", "invocations.csv: empty"},
      {"NotTheHeader", "a,b,c\n", "", "", "invocations.csv line 1: expected the header"},
      {"NoMinutes", "HashOwner,HashApp,HashFunction,Trigger\n", "", "",
       "line 1: expected between 1 and"},
      {"MinutesOutOfOrder", "HashOwner,HashApp,HashFunction,Trigger,1,3\n", "", "",
       "column 6 of the header must be '2', got '3'"},
      {"ShortRow", header + "o,a,f,http,1,0,2\no,a,g,http,1,0\n", "", "",
       "invocations.csv line 3: has 6 fields, the header 7"},
      {"NotACount", header + "o,a,f,http,1,x,2\n", "", "",
       "invocations.csv line 2: minute 2: 'x' is not a count"},
      {"NegativeCount", header + "\no,a,f,http,1,0,-2\n", "", "",
       "invocations.csv line 3: minute 3: '-2'"},
      {"DuplicateFunction", good + "o,a,f,timer,0,0,0\n", "", "",
       "line 3: function f is already on line 2"},
      {"EmptyFunction", header + "o,a,,http,1,0,2\n", "", "", "line 2: HashFunction is empty"},
      {"DurationsWithoutAverage", good, "HashOwner,HashApp,HashFunction,Count\n", "",
       "durations.csv line 1: the header has no column 'Average'"},
      {"DurationNotANumber", good, "HashOwner,HashApp,HashFunction,Average\no,a,f,fast\n", "",
       "durations.csv line 2: Average: 'fast' is not a duration"},
      {"MemoryWithoutAverage", good, "", "HashOwner,HashApp,SampleCount\n",
       "memory.csv line 1: the header has no column 'AverageAllocatedMb'"},
      {"MemoryRowTooLong", good, "",
       "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,128\no,b,1,128,9\n",
       "memory.csv line 3: has 5 fields, the header 4"},
      {"MemoryNegative", good, "", "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,-1\n",
       "memory.csv line 2: AverageAllocatedMb: '-1'"},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInputTest, ::testing::ValuesIn(BadInputs()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return info.param.name;
                         });

TEST(TraceTest, CrlfAndMissingRowsUseDefaults) {
  Trace t = MustParse("HashOwner,HashApp,HashFunction,Trigger,1,2\r\no,a,f,http,3,0\r\n",
                      "HashOwner,HashApp,HashFunction,Average\r\nother,a,f,5\r\n",
                      "HashOwner,HashApp,SampleCount,AverageAllocatedMb\r\no,a,1,300.5\r\n");
  ASSERT_EQ(t.functions.size(), 1u);
  EXPECT_EQ(t.functions[0].per_minute, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(t.functions[0].duration_ms, kDefaultDurationMs);  // its row is another owner's
  EXPECT_EQ(t.functions[0].memory_mb, 300.5);
}

}  // namespace
}  // namespace thaw::sim

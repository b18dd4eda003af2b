// `thaw simulate` as a user runs it: the real binary on trace files in a temp dir (no server):
// its table and JSON, and one-line errors with a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace thaw::testing {
namespace {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

class SimulateCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-simulate-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
    return dir_ + "/" + name;
  }
  CliResult Thaw(const std::string& args) {
    const std::string cmd = std::string(THAW_BINARY) + " " + args + " 2>&1";
    CliResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }
  std::string dir_;
};

// Two functions over 30 minutes: f is called in minutes 0 and 20 (1 s calls), g once in
// minute 5. fixed-10m: all three cold; fixed-20m: f's second call is warm (19:59 idle).
const char kTrace[] =
    "HashOwner,HashApp,HashFunction,Trigger,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,"
    "21,22,23,24,25,26,27,28,29,30\n"
    "o,a,f,http,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0\n"
    "o,b,g,timer,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n";

TEST_F(SimulateCliTest, JsonHasEveryPolicyWithItsFigures) {
  const std::string trace = Write("invocations.csv", kTrace);
  const std::string memory = Write(
      "memory.csv", "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,1024\no,b,1,512\n");
  CliResult r = Thaw("simulate --trace " + trace + " --memory " + memory + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  boost::json::object out = boost::json::parse(r.out).as_object();
  EXPECT_EQ(out.at("functions").as_int64(), 2);
  EXPECT_EQ(out.at("minutes").as_int64(), 30);
  const boost::json::array& policies = out.at("policies").as_array();
  ASSERT_EQ(policies.size(), 4u);
  const char* names[] = {"fixed-10m", "fixed-20m", "adaptive", "adaptive+templates"};
  const int64_t cold[] = {3, 2, 3, 3};
  // fixed-10m: f 600 s x 1 GB twice (the second ends 30:00 - 20:01 = 599 s, within the 30
  // minutes: 599), g 600 s x 0.5 GB = 300. fixed-20m: f 1,199 + 599 s, g 1,200 s x 0.5.
  const double wasted[] = {600 + 599 + 300, 1199 + 599 + 600, 300 + 300 + 150, -1};
  for (size_t i = 0; i < 4; ++i) {
    const boost::json::object& p = policies[i].as_object();
    EXPECT_EQ(p.at("name").as_string(), names[i]);
    EXPECT_EQ(p.at("invocations").as_int64(), 3) << names[i];
    EXPECT_EQ(p.at("cold_starts").as_int64(), cold[i]) << names[i];
    EXPECT_NEAR(p.at("cold_start_pct").to_number<double>(), 100.0 * cold[i] / 3, 1e-9);
    EXPECT_TRUE(p.contains("p75_function_cold_start_pct"));
    if (wasted[i] >= 0) {
      EXPECT_NEAR(p.at("wasted_gb_s").to_number<double>(), wasted[i], 1e-6) << names[i];
    }
  }
}

TEST_F(SimulateCliTest, TablePrintsOneRowPerPolicy) {
  CliResult r = Thaw("simulate --trace " + Write("inv.csv", kTrace));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("2 functions, 30 minutes"), std::string::npos) << r.out;
  for (const char* name : {"fixed-10m ", "fixed-20m ", "adaptive ", "adaptive+templates "}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name << "\n" << r.out;
  }
}

TEST_F(SimulateCliTest, BadInputIsOneLineNamingTheFileAndLine) {
  std::string bad = kTrace;
  bad += "o,c,h,http,1,2,three\n";
  CliResult r = Thaw("simulate --trace " + Write("invocations.csv", bad));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "thaw: invocations.csv line 4: has 7 fields, the header 34\n");

  const std::string trace = Write("ok.csv", kTrace);
  r = Thaw("simulate --trace " + trace + " --durations " +
           Write("durations.csv", "HashOwner,HashApp,HashFunction,Average\no,a,f,-3\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "thaw: durations.csv line 2: Average: '-3' is not a duration in ms\n");

  r = Thaw("simulate --trace " + dir_ + "/missing.csv");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("thaw: cannot read --trace " + dir_ + "/missing.csv"), std::string::npos)
      << r.out;

  r = Thaw("simulate");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--trace"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace thaw::testing

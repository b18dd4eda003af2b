// The Lambda formats of a runtime's environment (pool/lambda_env.h) and of its trace header
// (common/ids.h), as tables.
#include "pool/lambda_env.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <regex>

#include "common/ids.h"
#include "pool/pool_internal.h"

namespace thaw::pool {
namespace {

TEST(LambdaEnvTest, ShownVersionIsLatestUnlessTheCallerNamedOne) {
  EXPECT_EQ(ShownVersion(3, true), "$LATEST");
  EXPECT_EQ(ShownVersion(3, false), "3");
  EXPECT_EQ(ShownVersion(12, false), "12");
}

TEST(LambdaEnvTest, LogStreamNameIsUtcDayVersionAndInstance) {
  const std::string hex(32, 'a');
  const struct {
    int64_t wall_us;
    std::string version, want;
  } cases[] = {
      {0, "$LATEST", "1970/01/01/[$LATEST]" + hex},
      {1'717'199'999'000'000, "$LATEST", "2024/05/31/[$LATEST]" + hex},  // 23:59:59 UTC
      {1'717'200'000'000'000, "7", "2024/06/01/[7]" + hex},
  };
  for (const auto& c : cases) EXPECT_EQ(LogStreamName(c.wall_us, c.version, hex), c.want);
}

TEST(LambdaEnvTest, TraceIdHasTimeTwentyFourHexDigitsParentAndSampled) {
  const std::string a = NewTraceId(0x66a1b2c3);
  EXPECT_TRUE(
      std::regex_match(a, std::regex("Root=1-66a1b2c3-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0")))
      << a;
  EXPECT_NE(a, NewTraceId(0x66a1b2c3));
}

// The REPORT line's durations: printf's "%.2f" of milliseconds, byte for byte (ties included:
// 0.125 ms is exactly halfway and rounds to even), now without printf.
TEST(LambdaEnvTest, ReportMillisecondsAreWhatPrintfWrites) {
  EXPECT_EQ(FormatMs(0), "0.00");
  EXPECT_EQ(FormatMs(125), "0.12");
  EXPECT_EQ(FormatMs(375), "0.38");
  EXPECT_EQ(FormatMs(1005), "1.00");  // 1.005 is a hair below in binary
  EXPECT_EQ(FormatMs(12'345'678), "12345.68");
  for (int64_t us = -2000; us < 200'000; ++us) {
    char want[32];
    std::snprintf(want, sizeof(want), "%.2f", static_cast<double>(us) / 1000.0);
    ASSERT_EQ(FormatMs(us), want) << us;
  }
}

}  // namespace
}  // namespace thaw::pool

// The Lambda formats of a runtime's environment (pool/lambda_env.h) and of its trace header
// (common/ids.h), as tables.
#include "pool/lambda_env.h"

#include <gtest/gtest.h>

#include <regex>

#include "common/ids.h"

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

}  // namespace
}  // namespace thaw::pool

// Who a function URL request came from (gateway/function_url.h ResolveForwarded) and the
// address ranges trusted_proxies names (common/cidr.h), as tables of cases.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/cidr.h"
#include "gateway/function_url.h"

namespace thaw::gateway {
namespace {

TEST(CidrTest, MatchesRanges) {
  auto ranges = ParseCidrList("10.0.0.0/8, 192.0.2.7 ,fd00::/8,,");
  ASSERT_TRUE(ranges.ok()) << ranges.status().message();
  EXPECT_EQ(ranges->size(), 3u);
  EXPECT_TRUE(CidrContains(*ranges, "10.200.3.4"));
  EXPECT_TRUE(CidrContains(*ranges, "::ffff:10.1.1.1"));  // IPv4-mapped counts as IPv4
  EXPECT_TRUE(CidrContains(*ranges, "192.0.2.7"));
  EXPECT_FALSE(CidrContains(*ranges, "192.0.2.8"));
  EXPECT_TRUE(CidrContains(*ranges, "fd12::1"));
  EXPECT_FALSE(CidrContains(*ranges, "fe80::1"));
  EXPECT_FALSE(CidrContains(*ranges, "not an address"));
  EXPECT_FALSE(CidrContains({}, "127.0.0.1"));
  auto all = ParseCidrList("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(CidrContains(*all, "8.8.8.8"));
  EXPECT_FALSE(CidrContains(*all, "::1"));
  EXPECT_FALSE(ParseCidrList("10.0.0.0/33").ok());
  EXPECT_FALSE(ParseCidrList("example.com").ok());
  EXPECT_FALSE(ParseCidrList("10.0.0.0/x").ok());
}

struct ForwardedCase {
  const char* name;
  const char* trusted;
  const char* peer;
  std::vector<std::pair<const char*, const char*>> headers;
  Forwarded want;
};

class ForwardedTest : public ::testing::TestWithParam<ForwardedCase> {};

TEST_P(ForwardedTest, Resolves) {
  const ForwardedCase& c = GetParam();
  auto trusted = ParseCidrList(c.trusted);
  ASSERT_TRUE(trusted.ok());
  Request req;
  for (const auto& [k, v] : c.headers) req.insert(k, v);
  Forwarded got = ResolveForwarded(req, c.peer, 8080, *trusted);
  EXPECT_EQ(got.source_ip, c.want.source_ip);
  EXPECT_EQ(got.for_chain, c.want.for_chain);
  EXPECT_EQ(got.proto, c.want.proto);
  EXPECT_EQ(got.port, c.want.port);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ForwardedTest,
    ::testing::Values(
        ForwardedCase{"NoHeaders", "", "1.2.3.4", {}, {"1.2.3.4", "1.2.3.4", "http", "8080"}},
        ForwardedCase{"UntrustedPeerIsNotBelieved",
                      "",
                      "1.2.3.4",
                      {{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-Proto", "https"}},
                      {"1.2.3.4", "1.2.3.4", "http", "8080"}},
        ForwardedCase{"TrustedProxyNamesTheClient",
                      "10.0.0.0/8",
                      "10.0.0.1",
                      {{"X-Forwarded-For", "6.6.6.6"},
                       {"X-Forwarded-Proto", "https"},
                       {"X-Forwarded-Port", "443"}},
                      {"6.6.6.6", "6.6.6.6, 10.0.0.1", "https", "443"}},
        ForwardedCase{"SpoofedLeftEntriesAreSkipped",
                      "10.0.0.0/8",
                      "10.0.0.1",
                      {{"X-Forwarded-For", "9.9.9.9, 5.5.5.5, 10.0.0.2"}},
                      {"5.5.5.5", "9.9.9.9, 5.5.5.5, 10.0.0.2, 10.0.0.1", "http", "8080"}},
        ForwardedCase{"SeveralHeaderLines",
                      "10.0.0.0/8",
                      "10.0.0.1",
                      {{"X-Forwarded-For", "7.7.7.7"}, {"X-Forwarded-For", "10.0.0.3"}},
                      {"7.7.7.7", "7.7.7.7, 10.0.0.3, 10.0.0.1", "http", "8080"}},
        ForwardedCase{"TrustedPeerWithoutHeader",
                      "10.0.0.0/8",
                      "10.0.0.1",
                      {},
                      {"10.0.0.1", "10.0.0.1", "http", "8080"}}),
    [](const ::testing::TestParamInfo<ForwardedCase>& info) { return info.param.name; });

// A call forwarded by another node carries the cluster token (gateway/forwarder.h): the
// function never sees it, public URL or not; the hop header it may see.
TEST(UrlEventTest, NeverCarriesTheClusterToken) {
  Request req{http::verb::get, "/fn/f/x", 11};
  req.set("X-Thaw-Cluster-Token", "secret-token");
  req.set("X-Thaw-Forwarded-By", "a");
  req.set("X-Other", "kept");
  for (bool strip : {false, true}) {
    UrlRequest url;
    url.function = "f";
    url.raw_path = "/x";
    url.strip_credentials = strip;
    const std::string event = BuildUrlEvent(req, url);
    EXPECT_EQ(event.find("secret-token"), std::string::npos) << event;
    EXPECT_EQ(event.find("x-thaw-cluster-token"), std::string::npos) << event;
    EXPECT_NE(event.find(R"("x-thaw-forwarded-by":"a")"), std::string::npos) << event;
    EXPECT_NE(event.find(R"("x-other":"kept")"), std::string::npos) << event;
  }
}

}  // namespace
}  // namespace thaw::gateway

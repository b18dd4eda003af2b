// GET /v1/functions/{name}/stats against the real server: the ledger's buckets, the live ring's
// instance counts, tenant scoping and refused parameters; the console's files at /ui/ and the
// admin-only load figures of GET /v1/node. No browser here (tests/ui_test.cc has one).
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

json::object Parse(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << body;
    return {};
  }
  return v.as_object();
}

int64_t Sum(const json::object& o, const char* key) {
  int64_t total = 0;
  for (const auto& v : o.at(key).as_array()) total += v.as_int64();
  return total;
}

class StatsApiTest : public ServerTest {
 protected:
  void SetUp() override {
    server_ = ThawServer::Start();
    DeployPython("stats-fn",
                 "def handler(event, context):\n"
                 "    if event.get('fail'):\n"
                 "        raise ValueError('asked to fail')\n"
                 "    return {'ok': True}\n");
  }
  HttpResult As(const std::string& secret, const std::string& target) const {
    return server_->Call("GET", target, "", {{"Authorization", "Bearer " + secret}}, false);
  }
};

TEST_F(StatsApiTest, CountsCallsErrorsColdStartsAndPercentilesPerMinute) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(server_->Invoke("stats-fn", "{}").status, 200);
  ASSERT_EQ(server_->Invoke("stats-fn", R"({"fail": true})").status, 502);

  auto r = server_->Call("GET", "/v1/functions/stats-fn/stats?window=1h&step=60");
  ASSERT_EQ(r.status, 200) << r.body;
  json::object s = Parse(r.body);
  EXPECT_EQ(s.at("function").as_string(), "stats-fn");
  EXPECT_EQ(s.at("window_s").as_int64(), 3600);
  EXPECT_EQ(s.at("step_s").as_int64(), 60);
  const auto& t = s.at("t").as_array();
  ASSERT_EQ(t.size(), 60u);
  EXPECT_EQ(t[1].as_int64() - t[0].as_int64(), 60);
  for (const char* key : {"calls", "errors", "cold_starts", "p50_ms", "p99_ms", "concurrency_avg",
                          "inflight_max", "queued_max"}) {
    EXPECT_EQ(s.at(key).as_array().size(), 60u) << key;
  }
  EXPECT_EQ(Sum(s, "calls"), 4);
  EXPECT_EQ(Sum(s, "errors"), 1);
  EXPECT_EQ(Sum(s, "cold_starts"), 1);  // one instance served all four
  // Starts by kind: the one cold start forked from the template or started in full, the three
  // calls after it warm; the totals say the same.
  const auto& starts = s.at("starts").as_object();
  for (const char* kind : {"warm", "fork", "full"}) {
    ASSERT_TRUE(starts.contains(kind)) << r.body;
    EXPECT_EQ(starts.at(kind).as_array().size(), 60u) << kind;
  }
  EXPECT_EQ(Sum(starts, "warm"), 3);
  EXPECT_EQ(Sum(starts, "fork") + Sum(starts, "full"), 1);
  const auto& by_kind = s.at("totals").at("starts_by_kind").as_object();
  EXPECT_EQ(by_kind.at("warm").as_int64(), 3);
  EXPECT_EQ(by_kind.at("fork").as_int64(), Sum(starts, "fork"));
  EXPECT_EQ(by_kind.at("full").as_int64(), Sum(starts, "full"));
  // The calls fall in the last bucket or two; their percentiles are there, the others are null.
  int with_p99 = 0;
  for (const auto& v : s.at("p99_ms").as_array()) with_p99 += v.is_null() ? 0 : 1;
  EXPECT_GE(with_p99, 1);
  EXPECT_LE(with_p99, 2);
  const auto& totals = s.at("totals").as_object();
  EXPECT_EQ(totals.at("calls").as_int64(), 4);
  EXPECT_EQ(totals.at("errors").as_int64(), 1);
  EXPECT_DOUBLE_EQ(totals.at("cold_start_percent").to_number<double>(), 25.0);
  EXPECT_GT(totals.at("p99_ms").to_number<double>(), 0.0);
  EXPECT_GE(totals.at("p99_ms").to_number<double>(), totals.at("p50_ms").to_number<double>());
  EXPECT_TRUE(totals.at("last_called").is_string());

  // The live ring is sampled about once a second: the ready instance shows up in a minute.
  std::string last;
  EXPECT_TRUE(Eventually(
      [&] {
        auto again = server_->Call("GET", "/v1/functions/stats-fn/stats");
        last = again.body;
        if (again.status != 200) return false;
        int64_t most = 0;
        const json::object o = Parse(again.body);
        for (const auto& v : o.at("instances").as_object().at("ready").as_array()) {
          if (!v.is_null()) most = std::max(most, v.to_number<int64_t>());
        }
        return most >= 1;
      },
      60000))
      << last;
}

TEST_F(StatsApiTest, AFunctionWithoutCallsHasZerosAndNoLastCall) {
  auto r = server_->Call("GET", "/v1/functions/stats-fn/stats?window=1d&step=3600");
  ASSERT_EQ(r.status, 200) << r.body;
  json::object s = Parse(r.body);
  EXPECT_EQ(s.at("t").as_array().size(), 24u);
  EXPECT_EQ(Sum(s, "calls"), 0);
  EXPECT_TRUE(s.at("totals").as_object().at("last_called").is_null());
  EXPECT_TRUE(s.at("totals").as_object().at("p50_ms").is_null());
}

TEST_F(StatsApiTest, BadParametersAre400NamingTheParameter) {
  struct Case {
    const char* query;
    const char* names;
  } cases[] = {{"window=abc", "window"},
               {"step=7", "step"},
               {"window=1h&step=7200", "window"},
               {"window=30d", "window"},
               {"window=7d&step=60", "step"}};
  for (const auto& c : cases) {
    auto r = server_->Call("GET", std::string("/v1/functions/stats-fn/stats?") + c.query);
    EXPECT_EQ(r.status, 400) << c.query;
    json::object o = Parse(r.body);
    EXPECT_EQ(o.at("errorType").as_string(), "InvalidParameterValueException");
    EXPECT_EQ(std::string(o.at("errorMessage").as_string()).rfind(std::string(c.names) + ":", 0),
              0u)
        << r.body;
  }
  EXPECT_EQ(server_->Call("GET", "/v1/functions/nope/stats").status, 404);
  EXPECT_EQ(server_->Call("GET", "/v1/functions/stats-fn/stats", "", {}, false).status, 401);
  EXPECT_EQ(server_->Call("POST", "/v1/functions/stats-fn/stats").status, 405);
}

TEST_F(StatsApiTest, ATenantSeesItsOwnFunctionsStatsOnly) {
  server_->CreateTenant("acme");
  dirs_.push_back(PythonBundle("mine", "def handler(event, context):\n    return 1\n"));
  ASSERT_EQ(server_->Deploy("acme.mine", dirs_.back()).status, 201);
  const std::string secret = server_->CreateKey("acme").second;
  ASSERT_EQ(server_->Invoke("acme.mine", "{}").status, 200);

  auto own = As(secret, "/v1/functions/mine/stats");
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(Parse(own.body).at("function").as_string(), "mine");
  EXPECT_EQ(Parse(own.body).at("totals").as_object().at("calls").as_int64(), 1);
  // Another tenant's function is not found, by any name.
  EXPECT_EQ(As(secret, "/v1/functions/stats-fn/stats").status, 404);
  EXPECT_EQ(As(secret, "/v1/functions/default.stats-fn/stats").status, 404);
  // The admin addresses it as TENANT.NAME.
  auto admin = server_->Call("GET", "/v1/functions/acme.mine/stats");
  ASSERT_EQ(admin.status, 200) << admin.body;
  EXPECT_EQ(Parse(admin.body).at("function").as_string(), "acme.mine");

  // The node's load is the admin's to see.
  auto node = server_->Call("GET", "/v1/node");
  ASSERT_EQ(node.status, 200);
  json::object n = Parse(node.body);
  EXPECT_TRUE(n.contains("instances"));
  EXPECT_GT(n.at("memory_mb").as_object().at("budget").as_int64(), 0);
  auto tenant_node = As(secret, "/v1/node");
  ASSERT_EQ(tenant_node.status, 200);
  EXPECT_FALSE(Parse(tenant_node.body).contains("instances"));
}

TEST_F(StatsApiTest, TheConsoleIsServedWithoutAKeyUnderAStrictPolicy) {
  auto page = server_->Call("GET", "/ui/", "", {}, false);
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("id=\"api-key\""), std::string::npos);
  const std::string csp = page.Header("content-security-policy");
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(page.Header("x-content-type-options"), "nosniff");

  auto js = server_->Call("GET", "/ui/app.js", "", {}, false);
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.Header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(server_->Call("GET", "/ui/nope.js", "", {}, false).status, 404);
  EXPECT_EQ(server_->Call("GET", "/ui/../v1/functions", "", {}, false).status, 404);
  auto bare = server_->Call("GET", "/ui", "", {}, false);
  EXPECT_EQ(bare.status, 301);
  EXPECT_EQ(bare.Header("location"), "/ui/");
  EXPECT_EQ(server_->Call("POST", "/ui/", "", {}, false).status, 405);
}

}  // namespace
}  // namespace thaw::testing

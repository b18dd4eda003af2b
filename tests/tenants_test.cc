// Tenants and their keys against the real server: each tenant sees, deploys, invokes and is
// billed for its own functions only, and is held to its concurrency, rate and budget limits.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/files.h"
#include "raw_conn.h"
#include "registry/archive.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kWho = R"(import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0) if isinstance(event, dict) else 0)
    return {"owner": os.environ.get("OWNER", ""), "name": context.function_name}
)";

class TenantsTest : public ServerTest {
 protected:
  void SetUp() override { Start({}); }
  void Start(std::vector<std::string> flags) { server_ = ThawServer::Start(std::move(flags)); }
  // A request with `secret` as the Bearer key.
  HttpResult As(const std::string& secret, const std::string& method, const std::string& target,
                const std::string& body = "") const {
    return server_->Call(method, target, body, {{"Authorization", "Bearer " + secret}}, false);
  }
  // Deploys the kWho function as `name` with OWNER=`owner`, using `secret`.
  void DeployAs(const std::string& secret, const std::string& name, const std::string& owner) {
    dirs_.push_back(PythonBundle(name, kWho, "environment:\n  OWNER: " + owner + "\n"));
    auto archive = registry::PackDirectory(dirs_.back());
    ASSERT_TRUE(archive.ok());
    auto r = As(secret, "PUT", "/v1/functions/" + name, *archive);
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::string NewTenantKey(const std::string& tenant, const std::string& limits = "") {
    server_->CreateTenant(tenant, limits);
    return server_->CreateKey(tenant).second;
  }
};

TEST_F(TenantsTest, KeysAreShownOnceStoredHashedAndRevocable) {
  server_->CreateTenant("acme");
  auto created = server_->Call("POST", "/v1/keys", R"({"tenant":"acme","description":"ci"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = JsonField(created.body, "id"), secret = JsonField(created.body, "secret");
  EXPECT_EQ(secret.size(), 40u);
  auto listed = server_->Call("GET", "/v1/keys?tenant=acme");
  ASSERT_EQ(listed.status, 200);
  EXPECT_NE(listed.body.find(id), std::string::npos);
  EXPECT_EQ(listed.body.find(secret), std::string::npos);
  EXPECT_EQ(listed.body.find("secret"), std::string::npos) << listed.body;
  for (const char* file : {"/thaw.db", "/thaw.db-wal"}) {
    auto bytes = ReadFile(server_->data_dir() + file);
    if (bytes.ok()) {
      EXPECT_EQ(bytes->find(secret), std::string::npos) << file;
    }
  }
  for (const char* file : {"/master.key", "/admin.key"}) {
    struct stat st;
    ASSERT_EQ(::stat((server_->data_dir() + file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
  EXPECT_EQ(server_->Output().find(secret), std::string::npos) << "the secret reached the log";

  auto who = As(secret, "GET", "/v1/whoami");
  ASSERT_EQ(who.status, 200) << who.body;
  EXPECT_EQ(JsonField(who.body, "tenant"), "acme");
  EXPECT_EQ(JsonField(who.body, "role"), "tenant");
  EXPECT_EQ(JsonField(who.body, "key_id"), id);

  // Tenant keys cannot manage tenants or keys, nor scrape every function's metrics.
  EXPECT_EQ(As(secret, "GET", "/v1/tenants").status, 403);
  EXPECT_EQ(As(secret, "POST", "/v1/keys", R"({"tenant":"acme","role":"admin"})").status, 403);
  EXPECT_EQ(As(secret, "GET", "/metrics").status, 403);

  // Bad input names the field.
  auto bad_role = server_->Call("POST", "/v1/keys", R"({"tenant":"acme","role":"root"})");
  EXPECT_EQ(bad_role.status, 400);
  EXPECT_NE(bad_role.body.find("role"), std::string::npos);
  EXPECT_EQ(server_->Call("POST", "/v1/keys", R"({"tenant":"nope"})").status, 404);
  auto bad_tenant = server_->Call("POST", "/v1/tenants", R"({"name":"Not_Valid"})");
  EXPECT_EQ(bad_tenant.status, 400);
  EXPECT_NE(bad_tenant.body.find("tenant name"), std::string::npos) << bad_tenant.body;
  EXPECT_EQ(server_->Call("POST", "/v1/tenants", R"({"name":"acme"})").status, 409);
  auto bad_limit = server_->Call("POST", "/v1/tenants", R"({"name":"x","concurrency":0})");
  EXPECT_EQ(bad_limit.status, 400);
  EXPECT_NE(bad_limit.body.find("concurrency"), std::string::npos);
  EXPECT_EQ(server_->Call("POST", "/v1/tenants", R"({"name":"y","colour":"red"})").status, 400);
  EXPECT_EQ(server_->Call("GET", "/v1/tenants/x").status, 404) << "a refused create left a tenant";

  ASSERT_EQ(server_->Call("DELETE", "/v1/keys/" + id).status, 204);
  EXPECT_EQ(As(secret, "GET", "/v1/whoami").status, 401);
}

// Each request is authenticated once, on its headers, and that caller is its own: on one
// keep-alive connection a second request with another key is the other tenant, and a key
// revoked between two requests is refused at the next.
TEST_F(TenantsTest, EachRequestOnAConnectionHasItsOwnCaller) {
  const std::string acme = NewTenantKey("acme");
  server_->CreateTenant("beta");
  const auto [beta_id, beta] = server_->CreateKey("beta");
  RawConn conn(server_->url());
  auto whoami = [](const std::string& secret, const char* connection) {
    return "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret +
           "\r\nConnection: " + connection + "\r\n\r\n";
  };
  ASSERT_TRUE(conn.Send(whoami(acme, "keep-alive")));
  ASSERT_TRUE(conn.ReadUntil("\"tenant\":\"acme\"")) << conn.received();
  ASSERT_TRUE(conn.Send(whoami(beta, "keep-alive")));
  ASSERT_TRUE(conn.ReadUntil("\"tenant\":\"beta\"")) << conn.received();
  ASSERT_EQ(server_->Call("DELETE", "/v1/keys/" + beta_id).status, 204);
  ASSERT_TRUE(conn.Send(whoami(beta, "close")));
  conn.ReadToEnd();
  const std::string& got = conn.received();
  EXPECT_NE(got.find("HTTP/1.1 401"), std::string::npos) << got;
  EXPECT_EQ(got.find("HTTP/1.1 200", got.rfind("\"tenant\":\"beta\"")), std::string::npos)
      << "the revoked key was served: " << got;
}

TEST_F(TenantsTest, TenantsSeeDeployInvokeAndDeleteOnlyTheirOwnFunctions) {
  const std::string acme = NewTenantKey("acme"), beta = NewTenantKey("beta");
  DeployAs(acme, "hello", "acme");
  DeployAs(beta, "hello", "beta");
  DeployAs(beta, "private", "beta");

  auto a = As(acme, "POST", "/v1/functions/hello/invoke", "{}");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(JsonField(a.body, "owner"), "acme");
  EXPECT_EQ(JsonField(a.body, "name"), "hello");  // the runtime sees the tenant's own name
  EXPECT_EQ(JsonField(As(beta, "POST", "/v1/functions/hello/invoke", "{}").body, "owner"), "beta");

  // beta's private function does not exist for acme: read, invoke, logs, delete, by any name.
  for (const std::string& name : {std::string("private"), std::string("beta.private")}) {
    EXPECT_EQ(As(acme, "GET", "/v1/functions/" + name).status, 404) << name;
    EXPECT_EQ(As(acme, "POST", "/v1/functions/" + name + "/invoke", "{}").status, 404) << name;
    EXPECT_EQ(As(acme, "GET", "/v1/functions/" + name + "/logs").status, 404) << name;
    EXPECT_EQ(As(acme, "DELETE", "/v1/functions/" + name).status, 404) << name;
  }
  EXPECT_EQ(As(beta, "POST", "/v1/functions/private/invoke", "{}").status, 200);
  auto listed = As(acme, "GET", "/v1/functions");
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(json::parse(listed.body).at("functions").as_array().size(), 1u) << listed.body;
  EXPECT_EQ(listed.body.find("private"), std::string::npos);
  // Nor may acme call its function URL (url_auth: key wants a key of the owner).
  EXPECT_EQ(As(acme, "GET", "/fn/beta.private/").status, 401);
  EXPECT_EQ(As(beta, "GET", "/fn/beta.private/").status, 200);

  // Deleting its own "hello" leaves beta's.
  EXPECT_EQ(As(acme, "DELETE", "/v1/functions/hello").status, 204);
  EXPECT_EQ(JsonField(As(beta, "POST", "/v1/functions/hello/invoke", "{}").body, "owner"), "beta");

  // The admin sees every tenant's functions by their full names.
  auto all = server_->Call("GET", "/v1/functions");
  EXPECT_NE(all.body.find("\"beta.hello\""), std::string::npos) << all.body;
  EXPECT_NE(all.body.find("\"beta.private\""), std::string::npos);
  EXPECT_EQ(server_->Invoke("beta.private").status, 200);

  // Usage: a tenant's own only; another tenant's is not found.
  auto usage = As(acme, "GET", "/v1/usage");
  ASSERT_EQ(usage.status, 200) << usage.body;
  EXPECT_EQ(usage.body.find("private"), std::string::npos) << usage.body;
  EXPECT_EQ(As(acme, "GET", "/v1/usage?tenant=beta").status, 404);
  EXPECT_EQ(server_->Call("GET", "/v1/usage?tenant=nope").status, 404);
  auto beta_only = server_->Call("GET", "/v1/usage?tenant=beta");
  EXPECT_EQ(beta_only.body.find("acme"), std::string::npos) << beta_only.body;
  auto beta_usage = As(beta, "GET", "/v1/usage?function=private");
  ASSERT_EQ(beta_usage.status, 200);
  EXPECT_EQ(json::parse(beta_usage.body).at("total").at("invocations").as_int64(), 3);

  // A tenant with functions cannot be deleted; without, it goes with its keys.
  EXPECT_EQ(server_->Call("DELETE", "/v1/tenants/beta").status, 409);
  EXPECT_EQ(server_->Call("DELETE", "/v1/tenants/acme").status, 204);
  EXPECT_EQ(As(acme, "GET", "/v1/whoami").status, 401);
}

// Regression: an admin deploying "default.x" beside "x" made a second function, which the
// default tenant also saw as "x". "default.x" is the default tenant's "x": the same function.
TEST_F(TenantsTest, AdminsDefaultDotNameIsTheDefaultTenantsFunction) {
  const std::string mine = server_->CreateKey("default").second;
  DeployAs(server_->key(), "x", "bare");
  // thaw.yaml names the function as its tenant knows it: x.
  dirs_.push_back(PythonBundle("x", kWho, "environment:\n  OWNER: prefixed\n"));
  auto archive = registry::PackDirectory(dirs_.back());
  ASSERT_TRUE(archive.ok());
  auto deployed = server_->Call("PUT", "/v1/functions/default.x", *archive);
  ASSERT_EQ(deployed.status, 201) << deployed.body;  // a new version of the same function
  auto listed = As(mine, "GET", "/v1/functions");
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(json::parse(listed.body).at("functions").as_array().size(), 1u) << listed.body;
  auto all = server_->Call("GET", "/v1/functions");
  EXPECT_EQ(all.body.find("default.x"), std::string::npos) << all.body;
  auto got = server_->Call("GET", "/v1/functions/default.x");
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(JsonField(got.body, "name"), "x");
  EXPECT_EQ(JsonField(got.body, "version"), "2");
  EXPECT_EQ(JsonField(As(mine, "POST", "/v1/functions/x/invoke", "{}").body, "owner"), "prefixed");
}

TEST_F(TenantsTest, ConcurrencyAndRateLimitsRefuseWithWhichLimitAndWhen) {
  const std::string slow = NewTenantKey("slow", R"("concurrency":1)");
  DeployAs(slow, "nap", "slow");
  ASSERT_EQ(As(slow, "POST", "/v1/functions/nap/invoke", "{}").status, 200);  // warm
  auto first = std::async(std::launch::async, [&] {
    return As(slow, "POST", "/v1/functions/nap/invoke", R"({"sleep":2})");
  });
  ASSERT_TRUE(server_->WaitForFunction("slow.nap", "\"inflight\":1", 10000));
  auto refused = As(slow, "POST", "/v1/functions/nap/invoke", "{}");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("concurrency limit of 1"), std::string::npos) << refused.body;
  EXPECT_EQ(refused.Header("retry-after"), "1");
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(As(slow, "POST", "/v1/functions/nap/invoke", "{}").status, 200);

  const std::string fast = NewTenantKey("fast", R"("rate_per_second":1)");
  DeployAs(fast, "ping", "fast");
  // The deploy above did not spend the token: the first call passes, the next is over.
  HttpResult over;
  int ok = 0;
  for (int i = 0; i < 5 && over.status != 429; ++i) {
    over = As(fast, "POST", "/v1/functions/ping/invoke", "{}");
    ok += over.status == 200;
  }
  EXPECT_EQ(over.status, 429) << over.body;
  EXPECT_GE(ok, 1);
  EXPECT_NE(over.body.find("rate limit of 1 requests per second"), std::string::npos) << over.body;
  EXPECT_EQ(over.Header("retry-after"), "1");
  // Raising the limit applies at once.
  ASSERT_EQ(server_->Call("PATCH", "/v1/tenants/fast", R"({"rate_per_second":1000})").status, 200);
  EXPECT_EQ(As(fast, "POST", "/v1/functions/ping/invoke", "{}").status, 200);
}

// Reserved concurrency is admitted by the same dispatcher as the tenant's limits: a function
// reserved to one instance refuses a second call while the first runs, and takes calls again
// once it has ended (its slot is given back).
TEST_F(TenantsTest, ReservedConcurrencyRefusesPastItsCapUntilACallEnds) {
  const std::string key = NewTenantKey("resv");
  DeployAs(key, "nap", "resv");
  auto put = As(key, "PUT", "/2017-10-31/functions/nap/concurrency",
                R"({"ReservedConcurrentExecutions":1})");
  ASSERT_EQ(put.status, 200) << put.body;
  ASSERT_EQ(As(key, "POST", "/v1/functions/nap/invoke", "{}").status, 200);  // warm
  auto first = std::async(std::launch::async, [&] {
    return As(key, "POST", "/v1/functions/nap/invoke", R"({"sleep":2})");
  });
  ASSERT_TRUE(server_->WaitForFunction("resv.nap", "\"inflight\":1", 10000));
  auto refused = As(key, "POST", "/v1/functions/nap/invoke", "{}");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("Rate Exceeded."), std::string::npos) << refused.body;
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(As(key, "POST", "/v1/functions/nap/invoke", "{}").status, 200);
}

TEST_F(TenantsTest, BudgetWarnsAtEightyPercentThenStopsWith402) {
  // Requests alone are priced ($0.20 per million: 200,000 pico-dollars each), so five
  // invocations spend exactly one micro-dollar. The template made at deploy bills its init
  // apart (init_gb_s), whenever it finishes: priced at 0 here, or it lands in the budget.
  Start({"--price-gb-second-pico", "0", "--price-init-gb-second-pico", "0"});
  const std::string key = NewTenantKey("thrifty", R"("monthly_budget_micros":1)");
  DeployAs(key, "fn", "thrifty");
  for (int i = 1; i <= 5; ++i) {
    auto r = As(key, "POST", "/v1/functions/fn/invoke", "{}");
    ASSERT_EQ(r.status, 200) << i << ": " << r.body;
    // The fifth call is admitted with 80% spent.
    EXPECT_EQ(r.Header("x-thaw-budget-warning").empty(), i < 5) << i;
  }
  auto stopped = As(key, "POST", "/v1/functions/fn/invoke", "{}");
  EXPECT_EQ(stopped.status, 402) << stopped.body;
  EXPECT_EQ(JsonField(stopped.body, "errorType"), "BudgetExceededException");
  EXPECT_NE(stopped.body.find("monthly budget of $0.000001"), std::string::npos) << stopped.body;
  EXPECT_FALSE(stopped.Header("retry-after").empty());
  EXPECT_TRUE(server_->WaitForOutput("of the monthly budget", 5000)) << "no warning logged";
  auto tenant = server_->Call("GET", "/v1/tenants/thrifty");
  EXPECT_EQ(JsonField(tenant.body, "month_to_date_micros"), "1") << tenant.body;
  // Refused calls are metered as throttled and cost nothing.
  auto usage = As(key, "GET", "/v1/usage");
  auto total = json::parse(usage.body).at("total");
  EXPECT_EQ(total.at("throttles").as_int64(), 1) << usage.body;
  EXPECT_EQ(total.at("cost_lambda").at("micro").as_int64(), 1) << usage.body;
  // A larger budget lets it go on.
  ASSERT_EQ(
      server_->Call("PATCH", "/v1/tenants/thrifty", R"({"monthly_budget_micros":100})").status,
      200);
  EXPECT_EQ(As(key, "POST", "/v1/functions/fn/invoke", "{}").status, 200);
}

// N concurrent invocations from two tenants: exactly N records, one per request id, whose sums
// are what the usage API reports per tenant.
TEST_F(TenantsTest, ConcurrentInvocationsFromTwoTenantsAddUpExactly) {
  const std::string acme = NewTenantKey("acme"), beta = NewTenantKey("beta");
  DeployAs(acme, "count", "acme");
  DeployAs(beta, "count", "beta");
  constexpr int kPerTenant = 40;
  std::mutex mu;
  std::map<std::string, std::string> tenant_of;  // request id -> tenant
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::string& key = t % 2 == 0 ? acme : beta;
      for (int i = 0; i < kPerTenant / 4; ++i) {
        auto r = As(key, "POST", "/v1/functions/count/invoke", "{}");
        EXPECT_EQ(r.status, 200) << r.body;
        std::lock_guard lock(mu);
        tenant_of[r.Header("x-thaw-request-id")] = t % 2 == 0 ? "acme" : "beta";
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(tenant_of.size(), 2u * kPerTenant);

  auto usage = server_->Call("GET", "/v1/usage?group_by=tenant");
  ASSERT_EQ(usage.status, 200) << usage.body;
  std::map<std::string, json::object> by_tenant;
  const json::value parsed = json::parse(usage.body);
  for (const auto& row : parsed.at("tenants").as_array()) {
    by_tenant[std::string(row.at("tenant").as_string())] = row.as_object();
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((server_->data_dir() + "/thaw.db").c_str(), &db, SQLITE_OPEN_READONLY,
                            nullptr),
            SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT request_id, tenant, billed_ms FROM invocations WHERE "
                               "function IN ('acme.count', 'beta.count') AND "
                               "status != 'template_init'",
                               -1, &st, nullptr),
            SQLITE_OK);
  std::map<std::string, int64_t> rows, billed;
  std::set<std::string> seen;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const std::string id = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    const std::string tenant = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    EXPECT_TRUE(seen.insert(id).second) << "two records for " << id;
    EXPECT_EQ(tenant_of[id], tenant) << id;
    ++rows[tenant];
    billed[tenant] += sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  for (const std::string tenant : {"acme", "beta"}) {
    // The deploy warmed no instance (its template's init is a record of its own, left out
    // above): every record is one of this test's invocations.
    EXPECT_EQ(rows[tenant], kPerTenant) << tenant;
    EXPECT_EQ(by_tenant[tenant].at("invocations").as_int64(), kPerTenant) << tenant;
    EXPECT_EQ(by_tenant[tenant].at("billed_ms").as_int64(), billed[tenant]) << tenant;
    auto own = As(tenant == "acme" ? acme : beta, "GET", "/v1/usage");
    EXPECT_EQ(json::parse(own.body).at("total").at("billed_ms").as_int64(), billed[tenant]);
  }
}

}  // namespace
}  // namespace thaw::testing

namespace thaw::testing {
namespace {

// One tenant's Event flood once filled the shared queue and refused every other tenant's
// Event invokes with 429 until it drained.
TEST(AsyncFairShareTest, OneTenantsFloodLeavesRoomForAnother) {
  auto server = ThawServer::Start({"--async-queue-events", "10"});
  std::vector<std::string> dirs;
  auto deploy = [&](const std::string& tenant) {
    server->CreateTenant(tenant);
    const std::string secret = server->CreateKey(tenant).second;
    dirs.push_back(PythonBundle("work", "import time\ndef handler(e, c):\n    time.sleep(2)\n",
                                "timeout_s: 10\n"));
    auto archive = registry::PackDirectory(dirs.back());
    EXPECT_TRUE(archive.ok());
    auto r = server->Call("PUT", "/v1/functions/work", *archive,
                          {{"Authorization", "Bearer " + secret}}, false);
    EXPECT_EQ(r.status, 201) << r.body;
    return secret;
  };
  const std::string flood = deploy("flood"), calm = deploy("calm");
  auto event = [&](const std::string& secret) {
    return server->Call("POST", "/2015-03-31/functions/work/invocations", "{}",
                        {{"Authorization", "Bearer " + secret}, {"X-Amz-Invocation-Type", "Event"}},
                        false);
  };
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = event(flood);
    if (r.status == 202) ++accepted;
    if (r.status == 429) {
      ++refused;
      EXPECT_NE(r.body.find("fair share"), std::string::npos) << r.body;
    }
  }
  EXPECT_EQ(accepted, 5);  // half the queue, then its share
  EXPECT_EQ(refused, 15);
  EXPECT_EQ(event(calm).status, 202);
  for (const auto& d : dirs) RemoveDir(d);
}

// Warm instances once escaped both: min_instances: 1000 started 1,000 processes, and a tenant
// limited to concurrency 2 kept 50 warm. Now a deploy that cannot fit is refused, and a cold
// start past the node's memory budget is a 429 that says so.
TEST(WarmCapacityServerTest, WarmInstancesCountAgainstTheNodeAndTheTenant) {
  auto server = ThawServer::Start({"--node-memory-mb", "1024"});
  std::vector<std::string> dirs;
  auto deploy = [&](const std::string& name, const std::string& yaml,
                    const std::string& secret = "") {
    dirs.push_back(PythonBundle(name, "def handler(e, c):\n    return 1\n", yaml));
    auto archive = registry::PackDirectory(dirs.back());
    EXPECT_TRUE(archive.ok());
    return server->Call("PUT", "/v1/functions/" + name, *archive,
                        {{"Authorization", "Bearer " + (secret.empty() ? server->key() : secret)}},
                        false);
  };
  auto refused = deploy("many", "min_instances: 1000\nmax_instances: 1000\nmemory_mb: 512\n");
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("node_memory_mb"), std::string::npos) << refused.body;
  EXPECT_EQ(server->Call("GET", "/v1/functions/many").status, 404);  // nothing half-deployed
  EXPECT_EQ(deploy("warm", "min_instances: 1\nmemory_mb: 512\n").status, 201);
  // 512 MB are warm; a 1024 MB cold start cannot fit beside them.
  EXPECT_EQ(deploy("big", "memory_mb: 1024\n").status, 201);
  auto big = server->Invoke("big");
  EXPECT_EQ(big.status, 429) << big.body;
  EXPECT_NE(big.body.find("node_memory_mb"), std::string::npos) << big.body;
  server->CreateTenant("acme", R"("concurrency":2)");
  const std::string secret = server->CreateKey("acme").second;
  auto tenant = deploy("fleet", "min_instances: 3\nmemory_mb: 128\n", secret);
  EXPECT_EQ(tenant.status, 400) << tenant.body;
  EXPECT_NE(tenant.body.find("concurrency limit of 2"), std::string::npos) << tenant.body;
  for (const auto& d : dirs) RemoveDir(d);
}

}  // namespace
}  // namespace thaw::testing

// Shared truth across nodes: two `thaw serve` processes on one PostgreSQL (tests/pg_server.h)
// and one etcd (tests/etcd_server.h), sharing a master key file. A function deployed through A
// runs through B (B fetches its bundle from A by digest and checks it), a new version on A
// replaces B's pools, a key revoked on A is refused by B within a second, a tenant's limits
// changed on A show on B, and B's LISTEN connection, cut, comes back and catches up. Skips
// without PostgreSQL's binaries or etcd.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>

#include "common/files.h"
#include "common/hmac.h"
#include "common/sha256.h"
#include "etcd_server.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

class SharedTruthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    const std::string skip = StartClusterBackends(store_, etcd_, error);
    if (!skip.empty()) GTEST_SKIP() << skip;
    ASSERT_NE(etcd_, nullptr) << error;
    char tmpl[] = "/tmp/thaw-master-XXXXXX";
    key_dir_ = ::mkdtemp(tmpl);
    master_ = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ASSERT_TRUE(WriteFileAtomic(key_dir_ + "/master.key", master_ + "\n", 0600).ok());
  }
  void TearDown() override {
    for (auto& d : dirs_) RemoveDir(d);
    if (!key_dir_.empty()) RemoveDir(key_dir_);
  }
  std::unique_ptr<ThawServer> Node(const std::string& name) {
    auto node =
        ThawServer::Start({"--store", store_, "--etcd", etcd_->url(), "--node-name", name,
                           "--node-lease-s", "2", "--master-key-file", key_dir_ + "/master.key"});
    EXPECT_NE(node, nullptr);
    return node;
  }
  // Both nodes list each other (B then knows where to fetch bundles from).
  static bool Members(const ThawServer& server, size_t n) {
    auto r = server.Call("GET", "/v1/nodes");
    return r.status == 200 && json::parse(r.body).at("nodes").as_array().size() == n;
  }
  static int WhoAmI(const ThawServer& server, const std::string& secret) {
    return server.Call("GET", "/v1/whoami", "", {{"Authorization", "Bearer " + secret}}, false)
        .status;
  }
  std::string Bundle(const std::string& answer) {
    dirs_.push_back(PythonBundle(
        "hello", "def handler(event, context):\n    return {\"answer\": \"" + answer + "\"}\n"));
    return dirs_.back();
  }

  std::string store_, key_dir_, master_;
  std::unique_ptr<EtcdServer> etcd_;
  std::vector<std::string> dirs_;
};

TEST_F(SharedTruthTest, DeployThroughAInvokeThroughB) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Eventually([&] { return Members(*a, 2) && Members(*b, 2); }, 20000));

  auto deployed = a->Deploy("hello", Bundle("one"));
  ASSERT_EQ(deployed.status, 201) << deployed.body;
  const auto start = Clock::now();
  // B's registry hears of it within a second.
  ASSERT_TRUE(Eventually([&] { return b->Call("GET", "/v1/functions/hello").status == 200; }, 1000))
      << "B did not see the deploy within 1 s";
  std::printf("deploy on A seen on B after %lld ms\n", static_cast<long long>(MsSince(start)));
  const std::string sha = JsonField(a->Call("GET", "/v1/functions/hello").body, "sha256");
  ASSERT_EQ(sha.size(), 64u);

  // B had no bundle: it fetches it from A (at once, for the version's template, or for the
  // call), checks it, and runs it.
  auto r = b->Invoke("hello");
  ASSERT_EQ(r.status, 200) << r.body << b->Output();
  EXPECT_NE(r.body.find("one"), std::string::npos) << r.body;
  EXPECT_TRUE(b->WaitForOutput(
      "bundle " + sha.substr(0, 12) + " of hello:1 fetched from " + a->url(), 1000))
      << b->Output();
  EXPECT_TRUE(PathExists(b->data_dir() + "/bundles/" + sha));
  EXPECT_TRUE(PathExists(b->data_dir() + "/blobs/" + sha));

  // A new version on A: B's pools of the old one drain, and its calls run the new code.
  auto again = a->Deploy("hello", Bundle("two"));
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_TRUE(Eventually(
      [&] {
        auto got = b->Invoke("hello");
        return got.status == 200 && got.body.find("two") != std::string::npos;
      },
      10000))
      << b->Output();

  // The internal route wants the cluster token: not an admin key, not nothing.
  const std::string target = "/v1/internal/bundles/" + sha;
  EXPECT_EQ(a->Call("GET", target).status, 403);
  EXPECT_EQ(a->Call("GET", target, "", {}, false).status, 403);
  const std::string token = HmacSha256Hex(master_, "thaw cluster token v1");
  auto fetched = a->Call("GET", target, "", {{"X-Thaw-Cluster-Token", token}}, false);
  EXPECT_EQ(fetched.status, 200);
  EXPECT_EQ(Sha256Hex(fetched.body), sha);
  // Neither node logs the master key.
  EXPECT_EQ(a->Output().find(master_), std::string::npos);
  EXPECT_EQ(b->Output().find(master_), std::string::npos);
}

TEST_F(SharedTruthTest, KeyRevokedOnAIsRefusedByBWithinASecond) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme");
  auto [id, secret] = a->CreateKey("acme");
  // The secret is derived from the shared master key: B accepts it once it heard of the key.
  ASSERT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 200; }, 1000));
  ASSERT_EQ(a->Call("DELETE", "/v1/keys/" + id).status, 204);
  const auto start = Clock::now();
  EXPECT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 401; }, 1000))
      << "B still accepts a key revoked on A after 1 s";
  std::printf("revocation on A refused by B after %lld ms\n",
              static_cast<long long>(MsSince(start)));
}

TEST_F(SharedTruthTest, TenantLimitChangeOnAIsSeenOnB) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme", R"("concurrency":5)");
  ASSERT_TRUE(Eventually([&] { return b->Call("GET", "/v1/tenants/acme").status == 200; }, 1000));
  ASSERT_EQ(a->Call("PATCH", "/v1/tenants/acme", R"({"concurrency":2,"rate_per_second":7})").status,
            200);
  EXPECT_TRUE(Eventually(
      [&] {
        const json::value t = json::parse(b->Call("GET", "/v1/tenants/acme").body);
        return t.at("concurrency") == 2 && t.at("rate_per_second") == 7;
      },
      1000))
      << b->Call("GET", "/v1/tenants/acme").body;
}

// B's LISTEN connection is cut by the server: B reconnects, reads everything again, and a
// revocation made meanwhile still reaches it.
TEST_F(SharedTruthTest, ListenerReconnectsAndCatchesUp) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme");
  auto [id, secret] = a->CreateKey("acme");
  ASSERT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 200; }, 1000));
  PGconn* conn = PQconnectdb(store_.c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* r = PQexec(conn,
                       "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'thaw-listen'");
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  EXPECT_EQ(PQntuples(r), 2);  // A's and B's
  PQclear(r);
  PQfinish(conn);
  ASSERT_EQ(a->Call("DELETE", "/v1/keys/" + id).status, 204);
  EXPECT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 401; }, 3000));
  EXPECT_TRUE(b->WaitForOutput("store changes: listening again", 3000)) << b->Output();
}

}  // namespace
}  // namespace thaw::testing

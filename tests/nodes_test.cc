// Nodes in a cluster, against a real etcd (Debian's etcd-server, started here on loopback with
// private ports and a temp data dir) and real `thaw serve` processes: both nodes list each
// other, a node killed with SIGKILL leaves within its lease, a drain shows everywhere and stops
// new starts on the drained node, and the CLI's `thaw nodes`. The etcd watch the members are
// followed through (cluster/etcd_client.h EtcdWatch): puts and deletes in order from a
// revision, a close ends it; a node joining or leaving is seen from the watch, not a poll.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <optional>

#include "cluster/etcd_client.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#include "etcd_server.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

constexpr int kLeaseS = 2;

const std::string kHello = R"(def handler(event, context):
    return {"ok": True}
)";

class NodesTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::access(kEtcd, X_OK) != 0)
      GTEST_SKIP() << kEtcd << " is missing: apt-get install etcd-server";
    std::string why;
    etcd_ = EtcdServer::Start(why);
    ASSERT_NE(etcd_, nullptr) << why;
  }
  std::unique_ptr<ThawServer> Node(const std::string& name) {
    return ThawServer::Start(
        {"--etcd", etcd_->url(), "--node-name", name, "--node-lease-s", std::to_string(kLeaseS)});
  }
  // GET /v1/nodes on `server`: name -> node object (empty on an error answer).
  static std::map<std::string, json::object> Nodes(const ThawServer& server) {
    std::map<std::string, json::object> out;
    auto r = server.Call("GET", "/v1/nodes");
    if (r.status != 200) return out;
    const json::value body = json::parse(r.body);
    for (const auto& n : body.at("nodes").as_array()) {
      out[std::string(n.at("name").as_string())] = n.as_object();
    }
    return out;
  }
  static bool Lists(const ThawServer& server, const std::set<std::string>& names) {
    std::set<std::string> got;
    for (const auto& [name, _] : Nodes(server)) got.insert(name);
    return got == names;
  }
  std::unique_ptr<EtcdServer> etcd_;
};

namespace asio = boost::asio;

// Runs `work` on an io_context of its own to its end (at most 20 s): what it returned.
template <typename T>
std::optional<T> RunCoroutine(asio::awaitable<T> work) {
  asio::io_context io;
  std::optional<T> out;
  asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, T value) {
    if (!e) out = std::move(value);
  });
  io.run_for(std::chrono::seconds(20));
  return out;
}

cluster::EtcdClient Etcd(const std::string& url) {
  auto client = cluster::EtcdClient::Create(url);
  EXPECT_TRUE(client.ok()) << client.status().message();
  return std::move(*client);
}

// Puts and deletes under a prefix arrive in order from the revision asked for, keys outside
// it do not, a watch from an older revision replays what followed it, and Close ends a Next
// that waits.
TEST_F(NodesTest, EtcdWatchSeesChangesInOrderAndCloseEndsIt) {
  cluster::EtcdClient etcd = Etcd(etcd_->url());
  const std::string end = cluster::PrefixEnd("/w/");
  auto result = RunCoroutine([&]() -> asio::awaitable<std::string> {
    if (!(co_await etcd.Put("/w/a", "1")).ok()) co_return "put failed";
    auto at = co_await etcd.RangeBetween("/w/", end);
    if (!at.ok() || at->kvs.size() != 1) co_return "range failed";
    const int64_t r = at->revision;
    auto watch = co_await etcd.Watch("/w/", end, r + 1);
    if (!watch.ok()) co_return "watch: " + watch.status().message();
    if (!(co_await etcd.Put("/w/b", "2")).ok()) co_return "put b failed";
    if (!(co_await etcd.Put("/x/other", "3")).ok()) co_return "put x failed";
    if (!(co_await etcd.Delete("/w/a")).ok()) co_return "delete failed";
    std::vector<cluster::WatchEvent> seen;
    while (seen.size() < 2) {
      auto events = co_await (*watch)->Next();
      if (!events.ok()) co_return "next: " + events.status().message();
      seen.insert(seen.end(), events->begin(), events->end());
    }
    if (seen.size() != 2) co_return "saw " + std::to_string(seen.size()) + " events";
    if (seen[0].deleted || seen[0].kv.key != "/w/b" || seen[0].kv.value != "2") {
      co_return "first event: " + seen[0].kv.key;
    }
    if (!seen[1].deleted || seen[1].kv.key != "/w/a") co_return "second: " + seen[1].kv.key;
    // From the older revision: the put of /w/a first.
    auto replay = co_await etcd.Watch("/w/", end, r);
    if (!replay.ok()) co_return "replay watch: " + replay.status().message();
    auto first = co_await (*replay)->Next();
    if (!first.ok() || first->empty() || first->front().kv.key != "/w/a" ||
        first->front().kv.value != "1") {
      co_return "the replay did not begin with /w/a";
    }
    // Nothing changes now: Next waits until Close ends it.
    asio::steady_timer closer(co_await asio::this_coro::executor);
    closer.expires_after(std::chrono::milliseconds(100));
    closer.async_wait([&w = **watch](boost::system::error_code) { w.Close(); });
    auto closed = co_await (*watch)->Next();
    if (closed.ok()) co_return "Next returned events after Close";
    if (closed.status().code() != StatusCode::kUnavailable) co_return closed.status().message();
    co_return "ok";
  }());
  ASSERT_TRUE(result.has_value()) << "the watch coroutine did not finish";
  EXPECT_EQ(*result, "ok");
}

// A node joining (a key put under a lease) and leaving (its lease revoked) is listed by a
// running node as soon as etcd tells it: the members follow a watch, not the poll (500 ms
// here), so the median delay is well under a poll and none is near one.
TEST_F(NodesTest, JoinAndLeaveAreSeenFromTheWatch) {
  auto a = Node("a");
  ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a"}); }, 10000));
  ASSERT_TRUE(a->WaitForOutput("following the members through an etcd watch", 5000)) << a->Output();
  json::object record = Nodes(*a).at("a");
  record["name"] = "ghost";
  record["advertise"] = "127.0.0.1:1";
  cluster::EtcdClient etcd = Etcd(etcd_->url());
  std::vector<int64_t> delays_ms;
  auto since = [](std::chrono::steady_clock::time_point t) {
    return static_cast<int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
            .count());
  };
  for (int round = 0; round < 8; ++round) {
    auto lease = RunCoroutine([&]() -> asio::awaitable<int64_t> {
      auto granted = co_await etcd.GrantLease(30);
      if (!granted.ok()) co_return 0;
      const Status put = co_await etcd.Put("/thaw/nodes/ghost", json::serialize(record), *granted);
      co_return put.ok() ? *granted : 0;
    }());
    ASSERT_TRUE(lease.has_value() && *lease != 0);
    const auto joined = std::chrono::steady_clock::now();
    ASSERT_TRUE(Eventually(
        [&] {
          return Lists(*a, {"a", "ghost"});
        },
        5000))
        << a->Call("GET", "/v1/nodes").body;
    delays_ms.push_back(since(joined));
    auto revoked = RunCoroutine(
        [&]() -> asio::awaitable<bool> { co_return (co_await etcd.Revoke(*lease)).ok(); }());
    ASSERT_TRUE(revoked.value_or(false));
    const auto left = std::chrono::steady_clock::now();
    ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a"}); }, 5000))
        << a->Call("GET", "/v1/nodes").body;
    delays_ms.push_back(since(left));
  }
  std::vector<int64_t> sorted = delays_ms;
  std::sort(sorted.begin(), sorted.end());
  const int64_t median = sorted[sorted.size() / 2], most = sorted.back();
  std::printf("joins and leaves seen after (ms): median %ld, max %ld of %zu\n",
              static_cast<long>(median), static_cast<long>(most), sorted.size());
  EXPECT_LE(median, 100);
  EXPECT_LE(most, 400);
}

// etcd killed and started again under a running node: its watch breaks, it reads the members
// by polling until a new watch opens (a node that joins meanwhile is seen), then follows a new
// watch, which sees the next leave at once.
TEST_F(NodesTest, BrokenWatchFallsBackToPollingAndWatchesAgain) {
  const std::string kWatching = "following the members through an etcd watch";
  auto a = Node("a");
  ASSERT_TRUE(a->WaitForOutput(kWatching, 10000)) << a->Output();
  auto watches = [&] {
    const std::string out = a->Output();
    int n = 0;
    for (size_t at = out.find(kWatching); at != std::string::npos;
         at = out.find(kWatching, at + 1)) {
      ++n;
    }
    return n;
  };
  std::string why;
  ASSERT_TRUE(etcd_->Restart(why)) << why;
  ASSERT_TRUE(a->WaitForOutput("until a watch opens", 10000)) << a->Output();
  cluster::EtcdClient etcd = Etcd(etcd_->url());
  auto lease = RunCoroutine([&]() -> asio::awaitable<int64_t> {
    auto granted = co_await etcd.GrantLease(30);
    if (!granted.ok()) co_return 0;
    const Status put = co_await etcd.Put("/thaw/nodes/ghost",
                                         R"({"name":"ghost","advertise":"127.0.0.1:1"})", *granted);
    co_return put.ok() ? *granted : 0;
  }());
  ASSERT_TRUE(lease.has_value() && *lease != 0);
  const int watches_before = watches();
  ASSERT_TRUE(Eventually(
      [&] {
        return Lists(*a, {"a", "ghost"});
      },
      5000))
      << a->Call("GET", "/v1/nodes").body;
  std::printf("a node joining after etcd's restart was seen %s\n",
              watches() == watches_before ? "before a new watch opened (by the poll)"
                                          : "after a new watch opened");
  ASSERT_TRUE(Eventually([&] { return watches() >= 2; }, 10000)) << a->Output();
  auto revoked = RunCoroutine(
      [&]() -> asio::awaitable<bool> { co_return (co_await etcd.Revoke(*lease)).ok(); }());
  ASSERT_TRUE(revoked.value_or(false));
  EXPECT_TRUE(Eventually([&] { return Lists(*a, {"a"}); }, 300))
      << a->Call("GET", "/v1/nodes").body;
}

TEST_F(NodesTest, TwoNodesJoinAndEachListsBoth) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(Eventually(
      [&] {
        return Lists(*a, {"a", "b"}) && Lists(*b, {"a", "b"});
      },
      10000))
      << a->Call("GET", "/v1/nodes").body;
  auto nodes = Nodes(*a);
  const json::object& na = nodes.at("a");
  EXPECT_TRUE(na.at("self").as_bool());
  EXPECT_FALSE(nodes.at("b").at("self").as_bool());
  EXPECT_GE(na.at("cores").as_int64(), 1);
  EXPECT_GT(na.at("memory_mb").as_int64(), 0);
  EXPECT_EQ(na.at("health").as_string(), "ok");
  EXPECT_EQ(na.at("lease").at("granted_ttl_s").as_int64(), kLeaseS);
  EXPECT_FALSE(na.at("draining").as_bool());
  // Each advertises the address it listens on.
  EXPECT_EQ("http://" + std::string(nodes.at("b").at("advertise").as_string()), b->url());
  // A tenant's key may not see the cluster.
  a->CreateTenant("t1");
  auto secret = a->CreateKey("t1").second;
  auto denied =
      a->Call("GET", "/v1/nodes", "", {{"Authorization", "Bearer " + secret}}, /*auth=*/false);
  EXPECT_EQ(denied.status, 403) << denied.body;
}

TEST_F(NodesTest, WarmVersionsArePublished) {
  auto a = Node("a");
  auto b = Node("b");
  server_ = std::move(b);
  DeployPython("warmfn", kHello);
  ASSERT_EQ(server_->Invoke("warmfn").status, 200);
  // A node without it does not list it; the node with its warm instance does, within a second
  // or two (the record is republished at most once a second).
  ASSERT_TRUE(Eventually(
      [&] {
        auto nodes = Nodes(*a);
        if (!nodes.count("b")) return false;
        for (const auto& v : nodes.at("b").at("warm").as_array()) {
          if (v.as_string().find("warmfn:1") != json::string::npos) return true;
        }
        return false;
      },
      5000))
      << a->Call("GET", "/v1/nodes").body;
  EXPECT_TRUE(Nodes(*a).at("a").at("warm").as_array().empty());
}

TEST_F(NodesTest, KilledNodeLeavesWithinItsLease) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a", "b"}); }, 10000));
  b->Kill9();
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a"}); }, (kLeaseS + 2) * 1000))
      << a->Call("GET", "/v1/nodes").body;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - killed)
                      .count();
  std::printf("node b left the member list %ld ms after SIGKILL (lease %d s)\n",
              static_cast<long>(ms), kLeaseS);
}

TEST_F(NodesTest, StoppedNodeLeavesAtOnce) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a", "b"}); }, 10000));
  EXPECT_EQ(b->Stop(), 0);
  // SIGTERM revokes the lease: well before the lease would run out.
  EXPECT_TRUE(Eventually([&] { return Lists(*a, {"a"}); }, 1500))
      << a->Call("GET", "/v1/nodes").body;
}

TEST_F(NodesTest, DrainShowsEverywhereAndStopsNewStarts) {
  auto a = Node("a");
  server_ = Node("b");
  ASSERT_TRUE(Eventually(
      [&] {
        return Lists(*a, {"a", "b"}) && Lists(*server_, {"a", "b"});
      },
      10000));
  DeployPython("warm", kHello);
  DeployPython("cold", kHello);
  ASSERT_EQ(server_->Invoke("warm").status, 200);

  auto unknown = a->Call("POST", "/v1/nodes/nosuch/drain");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  auto drained = a->Call("POST", "/v1/nodes/b/drain");
  ASSERT_EQ(drained.status, 200) << drained.body;
  // Both nodes see it, and b itself publishes it.
  ASSERT_TRUE(Eventually(
      [&] {
        auto on_a = Nodes(*a), on_b = Nodes(*server_);
        return on_a.count("b") && on_a.at("b").at("draining").as_bool() && on_b.count("b") &&
               on_b.at("b").at("draining").as_bool() && !on_b.at("a").at("draining").as_bool();
      },
      5000));
  ASSERT_TRUE(server_->WaitForOutput("is draining", 5000)) << server_->Output();
  // Its ready instance still serves; a version with none is refused, saying why. (Marked as
  // forwarded so that b answers itself: a draining node sends a call it cannot serve warm to a
  // node with room, and here a has other data.)
  EXPECT_EQ(server_->Invoke("warm").status, 200);
  auto refused =
      server_->Call("POST", "/v1/functions/cold/invoke", "{}", {{"X-Thaw-Forwarded-By", "test"}});
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("draining"), std::string::npos) << refused.body;
  // a is not draining: it starts instances.
  dirs_.push_back(PythonBundle("cold", kHello));
  ASSERT_EQ(a->Deploy("cold", dirs_.back()).status, 201);
  EXPECT_EQ(a->Invoke("cold").status, 200);

  auto undrained = a->Call("DELETE", "/v1/nodes/b/drain");
  ASSERT_EQ(undrained.status, 200) << undrained.body;
  // Undrained, b starts instances again. (Marked as forwarded so that b runs it itself: a holds
  // it warm and would get it otherwise, and a refuses b's admin key: their data dirs differ.)
  EXPECT_TRUE(Eventually(
      [&] {
        return server_
                   ->Call("POST", "/v1/functions/cold/invoke", "{}",
                          {{"X-Thaw-Forwarded-By", "test"}})
                   .status == 200;
      },
      5000));
}

TEST_F(NodesTest, CliListsAndDrains) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(Eventually([&] { return Lists(*a, {"a", "b"}); }, 10000));
  std::vector<std::string> env = {"THAW_SERVER=" + a->url(), "THAW_API_KEY=" + a->key(),
                                  "PATH=/usr/bin:/bin"};
  auto listed = RunProcess({THAW_BINARY, "nodes"}, &env);
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("NAME"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find(b->url().substr(7)), std::string::npos) << listed.out;
  auto as_json = RunProcess({THAW_BINARY, "nodes", "--json"}, &env);
  ASSERT_EQ(as_json.exit_code, 0) << as_json.err;
  EXPECT_EQ(json::parse(as_json.out).at("nodes").as_array().size(), 2u) << as_json.out;
  auto drain = RunProcess({THAW_BINARY, "nodes", "drain", "b"}, &env);
  ASSERT_EQ(drain.exit_code, 0) << drain.err;
  EXPECT_NE(drain.out.find("b is draining"), std::string::npos) << drain.out;
  ASSERT_TRUE(Eventually([&] { return Nodes(*a).at("b").at("draining").as_bool(); }, 5000));
  auto nosuch = RunProcess({THAW_BINARY, "nodes", "drain", "nosuch"}, &env);
  EXPECT_NE(nosuch.exit_code, 0);
  EXPECT_NE(nosuch.err.find("no node nosuch"), std::string::npos) << nosuch.err;
}

// Every /metrics series of a node names it; a node on its own has no such label.
TEST_F(NodesTest, MetricsNameTheNode) {
  auto a = Node("a");
  auto r = a->Call("GET", "/metrics");
  ASSERT_EQ(r.status, 200) << r.body;
  size_t series = 0;
  for (size_t start = 0, end; start < r.body.size(); start = end + 1) {
    end = r.body.find('\n', start);
    if (end == std::string::npos) end = r.body.size();
    const std::string line = r.body.substr(start, end - start);
    if (line.empty() || line[0] == '#') continue;
    ++series;
    EXPECT_NE(line.find("{node=\"a\""), std::string::npos) << line;
  }
  EXPECT_GT(series, 0u);
}

TEST(NodesStandaloneTest, WithoutEtcdThereIsNoCluster) {
  auto server = ThawServer::Start();
  auto r = server->Call("GET", "/v1/nodes");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("--etcd"), std::string::npos) << r.body;
  auto metrics = server->Call("GET", "/metrics");
  EXPECT_EQ(metrics.body.find("node=\""), std::string::npos) << metrics.body;
}

}  // namespace
}  // namespace thaw::testing

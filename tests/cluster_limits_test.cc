// Tenant limits over a cluster: three real `thaw serve` nodes on one PostgreSQL (tests/
// pg_server.h) and one etcd (tests/etcd_server.h), on loopback. A tenant's concurrency limit of
// N holds over calls through all nodes at once (the function reports when each call ran; at no
// instant do more than N overlap), the rest are throttled (429), a node whose calls need more
// takes a larger share once the others' demand falls, usage totals read through any node are
// exact, and a budget spent through one node stops calls through another.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <thread>

#include "common/files.h"
#include "etcd_server.h"
#include "overlap.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

constexpr int kLimit = 4;

// Holds each call for `hold` seconds and says when it ran (wall clock: one host, one clock).
const std::string kHold = R"(import time
def handler(event, context):
    t0 = time.time()
    time.sleep(event.get("hold", 0))
    return {"t0": t0, "t1": time.time()}
)";

struct Call {
  int status = 0;
  double t0 = 0, t1 = 0;
};

class ClusterLimitsTest : public ServerTest {
 protected:
  void SetUp() override {
    std::string error;
    const std::string skip = StartClusterBackends(store_, etcd_, error);
    if (!skip.empty()) GTEST_SKIP() << skip;
    ASSERT_NE(etcd_, nullptr) << error;
  }
  void TearDown() override {
    nodes_.clear();
    ServerTest::TearDown();
  }
  // Node `name` on the shared store and etcd; after the first, each gets the first's admin and
  // master keys (one platform: a key made through any node works on all).
  ThawServer& AddNode(const std::string& name, std::vector<std::string> flags = {}) {
    std::string data_dir;
    if (!nodes_.empty()) {
      data_dir = MakeBundle({});
      dirs_.push_back(data_dir);
      for (const char* file : {"admin.key", "master.key"}) {
        auto text = ReadFile(nodes_.front()->data_dir() + "/" + file);
        EXPECT_TRUE(text.ok()) << file;
        EXPECT_TRUE(WriteFileAtomic(data_dir + "/" + file, text.ok() ? *text : "", 0600).ok());
      }
    }
    nodes_.push_back(ThawServer::Start(
        {"--store", store_, "--etcd", etcd_->url(), "--node-name", name, "--node-lease-s", "2"},
        data_dir));
    return *nodes_.back();
  }
  // `per_node` calls through each node (or only through `only`), all at once.
  std::vector<Call> Burst(int per_node, double hold_s, int only = -1) {
    std::vector<Call> calls;
    std::vector<std::pair<size_t, size_t>> who;  // node index, call index
    for (size_t n = 0; n < nodes_.size(); ++n) {
      if (only >= 0 && static_cast<int>(n) != only) continue;
      for (int i = 0; i < per_node; ++i) who.emplace_back(n, who.size());
    }
    calls.resize(who.size());
    std::vector<std::thread> threads;
    const std::string payload = R"({"hold":)" + std::to_string(hold_s) + "}";
    for (const auto& [n, i] : who) {
      threads.emplace_back([&, n = n, i = i] {
        auto r = nodes_[n]->Invoke("t1.hold", payload);
        calls[i].status = r.status;
        ++made_[n];
        if (r.status == 200) {
          ++succeeded_;
          const json::object o = json::parse(r.body).as_object();
          calls[i].t0 = o.at("t0").to_number<double>();
          calls[i].t1 = o.at("t1").to_number<double>();
        } else if (r.status == 429) {
          ++throttled_;
        }
      });
    }
    for (auto& t : threads) t.join();
    return calls;
  }
  std::string store_;
  std::unique_ptr<EtcdServer> etcd_;
  std::vector<std::unique_ptr<ThawServer>> nodes_;
  std::atomic<int> made_[3] = {0, 0, 0};
  std::atomic<int> succeeded_{0}, throttled_{0};
};

TEST_F(ClusterLimitsTest, ConcurrencyLimitHoldsAcrossNodesAndUsageIsExact) {
  ThawServer& a = AddNode("a");
  a.CreateTenant("t1", R"("concurrency":)" + std::to_string(kLimit));
  // Each node deploys the function itself: bundles are in each node's data dir.
  const std::string bundle = PythonBundle("hold", kHold, "max_instances: 8\n");
  dirs_.push_back(bundle);
  ASSERT_EQ(a.Deploy("t1.hold", bundle).status, 201);
  for (const char* name : {"b", "c"}) {
    ThawServer& n = AddNode(name);
    auto deployed = n.Deploy("t1.hold", bundle);
    ASSERT_EQ(deployed.status, 201) << deployed.body;
  }
  // Every node holds a share (and a warm instance) once a call through it gets through.
  for (size_t n = 0; n < nodes_.size(); ++n) {
    ASSERT_TRUE(Eventually(
        [&] {
          ++made_[n];
          const int status = nodes_[n]->Invoke("t1.hold").status;
          if (status == 200) ++succeeded_;
          if (status == 429) ++throttled_;
          return status == 200;
        },
        30000))
        << nodes_[n]->Output();
  }

  // Three times the limit at once, through all three nodes: never more than the limit running.
  const auto burst = Burst(kLimit, 1.5);
  int ok = 0;
  for (const auto& c : burst) {
    EXPECT_TRUE(c.status == 200 || c.status == 429) << c.status;
    ok += c.status == 200 ? 1 : 0;
  }
  EXPECT_LE(MaxOverlap(burst), kLimit);
  EXPECT_LE(ok, kLimit);
  EXPECT_GE(ok, 1);
  std::printf("burst of %zu through 3 nodes: %d ran (at most %d at once), %zu throttled\n",
              burst.size(), ok, MaxOverlap(burst), burst.size() - ok);

  // Demand moves to node a alone: the others lower their shares and a raises its own until it
  // runs the whole limit at once; no burst ever runs more.
  int best = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        const auto calls = Burst(kLimit + 2, 0.5, 0);
        EXPECT_LE(MaxOverlap(calls), kLimit);
        best = std::max(best, MaxOverlap(calls));
        return MaxOverlap(calls) == kLimit;
      },
      30000))
      << "node a never ran the whole limit at once; best " << best;

  // Usage through any node counts every call made through every node, once.
  const int made = made_[0] + made_[1] + made_[2];
  auto exact = [&](const ThawServer& n) {
    auto r = n.Call("GET", "/v1/usage?function=t1.hold");
    if (r.status != 200) return false;
    const json::object total = json::parse(r.body).at("total").as_object();
    return total.at("invocations").as_int64() == made &&
           total.at("by_status").at("success").as_int64() == succeeded_ &&
           total.at("throttles").as_int64() == throttled_;
  };
  for (auto& n : nodes_) {
    EXPECT_TRUE(Eventually([&] { return exact(*n); }, 10000))
        << "made " << made << " (" << succeeded_ << " ok, " << throttled_
        << " throttled): " << n->Call("GET", "/v1/usage?function=t1.hold").body;
  }
}

TEST_F(ClusterLimitsTest, BudgetSpentThroughOneNodeStopsAnother) {
  // Requests alone are priced: five calls spend one micro-dollar (as in tenants_test.cc).
  const std::vector<std::string> prices = {"--price-gb-second-pico", "0",
                                           "--price-init-gb-second-pico", "0"};
  ThawServer& a = AddNode("a", prices);
  a.CreateTenant("thrifty", R"("monthly_budget_micros":1)");
  const std::string bundle = PythonBundle("hold", kHold);
  dirs_.push_back(bundle);
  ASSERT_EQ(a.Deploy("thrifty.hold", bundle).status, 201);
  ThawServer& b = AddNode("b", prices);
  ASSERT_EQ(b.Deploy("thrifty.hold", bundle).status, 201);
  // The whole budget is spent through b: five calls at $0.0000002 each.
  int calls = 0;
  while (calls < 50 && b.Invoke("thrifty.hold").status == 200) ++calls;
  ASSERT_LT(calls, 50) << "b never stopped";
  EXPECT_GE(calls, 1);
  EXPECT_LE(calls, 5) << b.Call("GET", "/v1/usage?tenant=thrifty").body;
  EXPECT_EQ(b.Invoke("thrifty.hold").status, 402);
  // a reads the ledger's month-to-date total once a second (its own calls it counts at once):
  // it sees b's spend without making a call, and from then on refuses.
  auto month_to_date = [&] {
    const auto r = a.Call("GET", "/v1/tenants/thrifty");
    if (r.status != 200) return int64_t{-1};
    return json::parse(r.body).at("month_to_date_micros").to_number<int64_t>();
  };
  EXPECT_TRUE(Eventually([&] { return month_to_date() >= 1; }, 5000)) << month_to_date();
  const auto refused = a.Invoke("thrifty.hold");
  EXPECT_EQ(refused.status, 402) << refused.body;
}

}  // namespace
}  // namespace thaw::testing

// Two thaw nodes on loopback sharing one private PostgreSQL (tests/pg_server.h): Event
// invocations accepted by node B, still running there when B is killed -9, are taken over by
// node A once B's event lease has passed and complete there, each try metered once; so do B's
// jobs, and a webhook delivery B had pending is posted once, by A. Skips, saying why, without
// PostgreSQL's server binaries.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "pg_server.h"
#include "server_fixture.h"
#include "webhook_receiver.h"

namespace thaw::testing {
namespace {

const std::string kHelloCpp = std::string(THAW_BUILD_DIR) + "/examples/hello-cpp";
constexpr int64_t kLeaseS = 2;

// A data dir for a second node on `a`'s store: a copy of its keys and bundles. The registry is
// the store's, one for both; without --etcd no peer serves a bundle, so it is copied.
class DirBeside {
 public:
  explicit DirBeside(const ThawServer& a) {
    namespace fs = std::filesystem;
    char tmpl[] = "/tmp/thaw-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    for (const char* f : {"admin.key", "master.key"}) {
      fs::copy_file(a.data_dir() + "/" + f, dir_ + "/" + f);
    }
    for (const char* sub : {"bundles", "blobs"}) {
      if (fs::exists(a.data_dir() + "/" + sub)) {
        fs::copy(a.data_dir() + "/" + sub, dir_ + "/" + sub, fs::copy_options::recursive);
      }
    }
  }
  ~DirBeside() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

int64_t Count(const std::string& url, const std::string& sql) {
  auto rows = Query(url, sql);
  return rows.empty() ? -1 : std::stoll(rows[0][0]);
}

TEST(QueueTakeoverTest, KilledNodesEventsCompleteOnAnotherWithinTheLease) {
  std::string why;
  PgServer* pg = PgServer::Shared(why);
  if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL: " << why;
  const std::string url = pg->CreateDatabase();
  ASSERT_FALSE(url.empty());
  auto node = [&](const std::string& name, const std::string& dir = "") {
    return ThawServer::Start(
        {"--store", url, "--node-name", name, "--event-lease-s", std::to_string(kLeaseS)}, dir);
  };
  auto a = node("a");
  ASSERT_EQ(a->Deploy("hello-cpp", kHelloCpp).status, 201);
  ASSERT_EQ(a->Invoke("hello-cpp").status, 200);  // warm on A, as a version elsewhere would be
  DirBeside dir_b(*a);
  auto b = node("b", dir_b.path());

  constexpr int kEvents = 6;
  std::set<std::string> accepted;
  for (int i = 0; i < kEvents; ++i) {
    auto r = b->Call("POST", "/2015-03-31/functions/hello-cpp/invocations", R"({"sleep_ms":2000})",
                     {{"X-Amz-Invocation-Type", "Event"}});
    ASSERT_EQ(r.status, 202) << r.body;
    accepted.insert(r.Header("x-amzn-requestid"));
  }
  ASSERT_EQ(accepted.size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM events WHERE owner = 'b'"), kEvents);
  // B runs them (each sleeps 2 s, under the 3 s timeout): kill it mid-run.
  ASSERT_TRUE(Eventually(
      [&] {
        return Count(url, "SELECT COUNT(*) FROM events WHERE owner = 'b' AND state = 'running'") >
               0;
      },
      30'000));
  b->Kill9();
  const int64_t killed_us = WallNowMicros();

  // All complete on A: within the lease, the 2 s target, the 2 s sleep and a loaded machine's
  // slack (the take-over time itself is checked below, from the meter's start times).
  ASSERT_TRUE(Eventually(
      [&] {
        return Count(url, "SELECT COUNT(*) FROM events WHERE state = 'succeeded'") == kEvents;
      },
      30'000))
      << a->Output();
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM events WHERE owner = 'a'"), kEvents);
  EXPECT_NE(a->Output().find("took over"), std::string::npos);

  // Each try is metered once, under its request id (a re-run try keeps its id): A's records,
  // flushed by the usage query.
  ASSERT_EQ(a->Call("GET", "/v1/usage?function=hello-cpp").status, 200);
  auto rows = Query(url,
                    "SELECT request_id, COUNT(*), MIN(start_us) FROM invocations WHERE "
                    "function = 'hello-cpp' AND status = 'success' GROUP BY request_id");
  std::map<std::string, std::pair<int64_t, int64_t>> metered;  // id -> (rows, start)
  for (const auto& r : rows) metered[r[0]] = {std::stoll(r[1]), std::stoll(r[2])};
  int64_t takeover_us = 0;
  for (const std::string& id : accepted) {
    auto it = metered.find(id);
    ASSERT_NE(it, metered.end()) << id << " never metered";
    EXPECT_EQ(it->second.first, 1) << id;
    EXPECT_GT(it->second.second, killed_us) << id << " ran before the kill: B never finished it";
    takeover_us = std::max(takeover_us, it->second.second - killed_us);
  }
  std::printf("node death to its events running on another node: %.2f s (event lease %lld s)\n",
              static_cast<double>(takeover_us) / 1e6, static_cast<long long>(kLeaseS));
  EXPECT_LE(takeover_us, (kLeaseS + 2) * 1'000'000);
  EXPECT_EQ(a->Stop(), 0);
}

// A job accepted by B and running there when B is killed -9 runs again on A once B's lease has
// passed, and succeeds there, metered once.
TEST(QueueTakeoverTest, KilledNodesJobsFinishOnAnother) {
  std::string why;
  PgServer* pg = PgServer::Shared(why);
  if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL: " << why;
  const std::string url = pg->CreateDatabase();
  ASSERT_FALSE(url.empty());
  auto node = [&](const std::string& name, const std::string& dir = "") {
    return ThawServer::Start(
        {"--store", url, "--node-name", name, "--event-lease-s", std::to_string(kLeaseS)}, dir);
  };
  auto a = node("a");
  ASSERT_EQ(a->Deploy("hello-cpp", kHelloCpp).status, 201);
  DirBeside dir_b(*a);
  auto b = node("b", dir_b.path());

  constexpr int kJobs = 3;
  for (int i = 0; i < kJobs; ++i) {
    auto r = b->Call("POST", "/v1/functions/hello-cpp/jobs", R"({"input":{"sleep_ms":2000}})");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM jobs WHERE owner = 'b'"), kJobs);
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM jobs WHERE owner = 'a'"), 0) << "A's start took none";
  ASSERT_TRUE(Eventually(
      [&] {
        return Count(url, "SELECT COUNT(*) FROM jobs WHERE owner = 'b' AND status = 'running'") > 0;
      },
      30'000));
  b->Kill9();
  const int64_t killed_us = WallNowMicros();

  ASSERT_TRUE(Eventually(
      [&] { return Count(url, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'") == kJobs; },
      30'000))
      << a->Output();
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM jobs WHERE owner = 'a'"), kJobs);
  EXPECT_NE(a->Output().find("took over " + std::to_string(kJobs) + " jobs"), std::string::npos)
      << a->Output();
  ASSERT_EQ(a->Call("GET", "/v1/usage?function=hello-cpp").status, 200);
  for (const auto& row : Query(url, "SELECT id FROM jobs")) {
    auto metered = Query(url,
                         "SELECT COUNT(*), MIN(start_us) FROM invocations WHERE status = "
                         "'success' AND request_id = '" +
                             row[0] + "'");
    ASSERT_EQ(metered.size(), 1u);
    EXPECT_EQ(metered[0][0], "1") << row[0];
    if (metered[0][0] == "1") {
      EXPECT_GT(std::stoll(metered[0][1]), killed_us) << row[0];
    }
  }
  EXPECT_EQ(a->Stop(), 0);
}

// A webhook delivery B had pending (its receiver failing) when B is killed -9 is posted by A
// once B's lease has passed, once.
TEST(QueueTakeoverTest, KilledNodesPendingDeliveryIsPostedOnceByAnother) {
  std::string why;
  PgServer* pg = PgServer::Shared(why);
  if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL: " << why;
  const std::string url = pg->CreateDatabase();
  ASSERT_FALSE(url.empty());
  WebhookReceiver hook;
  hook.set_status(500);
  auto node = [&](const std::string& name, const std::string& dir = "") {
    return ThawServer::Start(
        {"--store", url, "--node-name", name, "--event-lease-s", std::to_string(kLeaseS),
         "--webhook-private-addresses", "true", "--async-retry-base-ms", "300"},
        dir);
  };
  auto a = node("a");
  ASSERT_EQ(a->Deploy("hello-cpp", kHelloCpp).status, 201);
  auto put =
      a->Call("PUT", "/2019-09-25/functions/hello-cpp/event-invoke-config",
              R"({"DestinationConfig":{"OnSuccess":{"Destination":")" + hook.url() + R"("}}})");
  ASSERT_EQ(put.status, 200) << put.body;
  DirBeside dir_b(*a);
  auto b = node("b", dir_b.path());

  auto r = b->Call("POST", "/2015-03-31/functions/hello-cpp/invocations", "{}",
                   {{"X-Amz-Invocation-Type", "Event"}});
  ASSERT_EQ(r.status, 202) << r.body;
  // B posts, the receiver fails it: the delivery waits for its retry, B's.
  ASSERT_TRUE(hook.WaitFor([](const auto& reqs) { return !reqs.empty(); }, 30'000)) << b->Output();
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM deliveries WHERE owner = 'b' AND state = 'queued'"),
            1);
  b->Kill9();
  const size_t before = hook.requests().size();
  hook.set_status(200);

  ASSERT_TRUE(Eventually(
      [&] { return Count(url, "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'") == 1; },
      30'000))
      << a->Output();
  EXPECT_EQ(Count(url, "SELECT COUNT(*) FROM deliveries WHERE owner = 'a'"), 1);
  const auto reqs = hook.requests();
  ASSERT_EQ(reqs.size(), before + 1) << "posted once after the kill, by A";
  EXPECT_NE(reqs.back().body.find(r.Header("x-amzn-requestid")), std::string::npos);
  EXPECT_NE(a->Output().find("took over 1 webhook deliveries"), std::string::npos);
  EXPECT_EQ(a->Stop(), 0);
}

}  // namespace
}  // namespace thaw::testing

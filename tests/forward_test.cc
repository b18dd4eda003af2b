// Calls forwarded between two real `thaw serve` nodes on loopback: one shared PostgreSQL
// (tests/pg_server.h) and one etcd (tests/etcd_server.h). A call through node A of a function
// warm only on node B runs on B (native invoke, Lambda's Invoke, a stream relayed as it comes);
// a call already forwarded is never forwarded again; a function URL call is forwarded too; B
// unreachable before the call is sent means A runs it; B dying after means a 502 naming B; draining
// B moves its warm work to A with no call failing. Skips without etcd or PostgreSQL.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "auth/sigv4.h"
#include "common/clock.h"
#include "etcd_server.h"
#include "pg_server.h"
#include "raw_conn.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

constexpr int kLeaseS = 2;

const std::string kHello = "def handler(event, context):\n    return {'ok': True}\n";
const std::string kSlow =
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(30)\n"
    "    return {'slept': True}\n";
// A function URL answer that tells what the function saw.
const std::string kEchoUrl =
    "import json\n"
    "def handler(event, context):\n"
    "    http = event.get('requestContext', {}).get('http', {})\n"
    "    seen = {'path': event.get('rawPath'), 'query': event.get('rawQueryString'),\n"
    "            'body': event.get('body', ''), 'headers': event.get('headers', {}),\n"
    "            'sourceIp': http.get('sourceIp')}\n"
    "    return {'statusCode': 200, 'headers': {'x-echo': 'yes'}, 'body': json.dumps(seen)}\n";
// Chunk 2 carries the wall time it was produced at, half a second after chunk 1.
const std::string kTwoEvents =
    "import time\n"
    "def handler(event, context):\n"
    "    yield 'data: one\\n\\n'\n"
    "    time.sleep(0.5)\n"
    "    yield 'data: T=%.6f\\n\\n' % time.time()\n";

class ForwardTest : public ServerTest {
 protected:
  void SetUp() override {
    std::string error;
    const std::string skip = StartClusterBackends(store_, etcd_, error);
    if (!skip.empty()) GTEST_SKIP() << skip;
    ASSERT_NE(etcd_, nullptr) << error;
    dir_a_ = MakeBundle({});
    dirs_.push_back(dir_a_);
    a_ = Node("a", dir_a_);
    server_ = nullptr;
  }

  std::unique_ptr<ThawServer> Node(const std::string& name, const std::string& data_dir) {
    return ThawServer::Start({"--etcd", etcd_->url(), "--node-name", name, "--node-lease-s",
                              std::to_string(kLeaseS), "--store", store_},
                             data_dir);
  }

  // Node b, sharing a's store, keys and bundles. The registry is read from the store at
  // start; its bundles are copied over, as fetching them from a peer is not built yet.
  void StartB() {
    const std::string dir = MakeBundle({});
    dirs_.push_back(dir);
    for (const char* f : {"admin.key", "master.key"}) {
      fs::copy_file(dir_a_ + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
      fs::permissions(dir + "/" + f, fs::perms::owner_read | fs::perms::owner_write);
    }
    for (const char* sub : {"bundles", "blobs"}) {
      if (fs::exists(dir_a_ + "/" + sub)) {
        fs::copy(dir_a_ + "/" + sub, dir + "/" + sub, fs::copy_options::recursive);
      }
    }
    b_ = Node("b", dir);
    ASSERT_TRUE(Eventually([&] { return Lists(*a_, "b") && Lists(*b_, "a"); }, 10000))
        << a_->Call("GET", "/v1/nodes").body;
  }

  void Deploy(const std::string& name, const std::string& code, const std::string& yaml = "") {
    dirs_.push_back(PythonBundle(name, code, yaml));
    auto r = a_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }

  static bool Lists(const ThawServer& server, const std::string& node) {
    auto r = server.Call("GET", "/v1/nodes");
    return r.status == 200 && r.body.find("\"name\":\"" + node + "\"") != std::string::npos;
  }

  // Whether `on` sees `function` version 1 warm on node `node`.
  static bool SeesWarm(const ThawServer& on, const std::string& node, const std::string& function) {
    auto r = on.Call("GET", "/v1/nodes");
    if (r.status != 200) return false;
    const json::value body = json::parse(r.body);
    for (const auto& n : body.at("nodes").as_array()) {
      if (n.at("name").as_string() != node) continue;
      for (const auto& v : n.at("warm").as_array()) {
        const std::string s(v.as_string());
        if (s.size() >= function.size() + 2 && s.ends_with(function + ":1")) return true;
      }
    }
    return false;
  }

  // A call on b that b runs itself (marked as forwarded already: a cold call would otherwise
  // go where placement says, which may be a).
  HttpResult OnB(const std::string& function) {
    return b_->Call("POST", "/v1/functions/" + function + "/invoke", "{}",
                    {{"X-Thaw-Forwarded-By", "test"}});
  }

  // Warms `function` on b and waits until a knows.
  void WarmOnB(const std::string& function) {
    auto r = OnB(function);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-thaw-node"), "b");
    ASSERT_TRUE(Eventually([&] { return SeesWarm(*a_, "b", function); }, 10000))
        << a_->Call("GET", "/v1/nodes").body;
  }

  std::string store_, dir_a_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<ThawServer> a_, b_;
};

TEST_F(ForwardTest, CallsRunWhereTheVersionIsWarm) {
  Deploy("hello", kHello);
  Deploy("two", kTwoEvents);
  StartB();
  WarmOnB("hello");

  // Native invoke through a: the answer is b's, with b's headers.
  auto native = a_->Invoke("hello");
  ASSERT_EQ(native.status, 200) << native.body;
  EXPECT_EQ(native.Header("x-thaw-node"), "b");
  EXPECT_EQ(native.Header("x-thaw-cold-start"), "false");
  EXPECT_NE(native.body.find("\"ok\""), std::string::npos) << native.body;
  EXPECT_FALSE(native.Header("x-thaw-request-id").empty());

  // Lambda's Invoke through a.
  auto lambda = a_->Call("POST", "/2015-03-31/functions/hello/invocations", "{}");
  ASSERT_EQ(lambda.status, 200) << lambda.body;
  EXPECT_EQ(lambda.Header("x-thaw-node"), "b");
  EXPECT_EQ(lambda.Header("x-amz-executed-version"), "$LATEST");

  // Already forwarded once: a runs it itself (a cold start there), whatever the cluster says.
  auto hop =
      a_->Call("POST", "/v1/functions/hello/invoke", "{}", {{"X-Thaw-Forwarded-By", "elsewhere"}});
  ASSERT_EQ(hop.status, 200) << hop.body;
  EXPECT_EQ(hop.Header("x-thaw-node"), "a");
  EXPECT_EQ(hop.Header("x-thaw-cold-start"), "true");

  // A stream passes through a as it comes: the first chunk arrives before the second is made.
  WarmOnB("two");
  RawConn conn(a_->url());
  const std::string body = "{}";
  ASSERT_TRUE(conn.Send(
      "POST /v1/functions/two/invoke HTTP/1.1\r\nHost: x\r\n"
      "Connection: close\r\nAuthorization: Bearer " +
      a_->key() + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_TRUE(conn.ReadUntil("data: one")) << conn.received();
  const double first_arrived = WallSeconds();
  conn.ReadUntil("\r\n0\r\n");
  conn.ReadUntil("never", 3000);  // the trailers, then a closes
  const std::string& got = conn.received();
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Node: b"), std::string::npos) << got;
  const auto at = got.find("data: T=");
  ASSERT_NE(at, std::string::npos) << got;
  EXPECT_LT(first_arrived, std::stod(got.substr(at + 8)));
  const auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Billed-Ms: ", last), std::string::npos) << got;
}

// A function URL call through a, of a function warm only on b, runs on b as it came (path,
// query, headers), with the hop header and never the cluster token in the event b's function
// gets; a URL call already forwarded runs where it arrives.
TEST_F(ForwardTest, FunctionUrlCallsRunWhereTheVersionIsWarm) {
  Deploy("echo", kEchoUrl);
  StartB();
  WarmOnB("echo");

  auto r = a_->Call("POST", "/fn/echo/some/path?x=1", "hi", {{"X-Custom", "kept"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-thaw-node"), "b");
  EXPECT_EQ(r.Header("x-thaw-cold-start"), "false");
  EXPECT_EQ(r.Header("x-echo"), "yes");
  const json::object seen = json::parse(r.body).as_object();
  EXPECT_EQ(seen.at("path"), "/some/path");
  EXPECT_EQ(seen.at("query"), "x=1");
  EXPECT_EQ(seen.at("body"), "hi");
  const json::object& headers = seen.at("headers").as_object();
  EXPECT_EQ(headers.at("x-thaw-forwarded-by"), "a") << r.body;
  EXPECT_EQ(headers.at("x-custom"), "kept") << r.body;
  EXPECT_FALSE(headers.contains("x-thaw-cluster-token")) << r.body;
  EXPECT_FALSE(headers.contains("authorization")) << r.body;
  // The client's address, as a saw it (one host here: see cluster3_test for distinct ones).
  EXPECT_EQ(seen.at("sourceIp"), "127.0.0.1") << r.body;

  // Already forwarded once: a runs it itself.
  auto hop = a_->Call("GET", "/fn/echo/", "", {{"X-Thaw-Forwarded-By", "elsewhere"}});
  ASSERT_EQ(hop.status, 200) << hop.body;
  EXPECT_EQ(hop.Header("x-thaw-node"), "a");
  EXPECT_EQ(hop.Header("x-thaw-cold-start"), "true");
}

TEST_F(ForwardTest, NodeLostAfterTheCallWentIs502AndBeforeRunsHere) {
  Deploy("slow", kSlow, "timeout_s: 60\n");
  Deploy("quick", kHello);
  StartB();
  WarmOnB("quick");
  // A call held on b (the function sleeps) keeps an instance of it warm there: the next call
  // through a goes to b.
  auto held = std::async(std::launch::async, [&] { return OnB("slow"); });
  ASSERT_TRUE(Eventually([&] { return SeesWarm(*a_, "b", "slow"); }, 60000))
      << a_->Call("GET", "/v1/nodes").body;
  auto lost = std::async(std::launch::async, [&] { return a_->Invoke("slow"); });
  // Once a's call is on b (two calls there, running or queued), b dies.
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = b_->Call("GET", "/v1/functions/slow");
        if (r.status != 200) return false;
        const json::object f = json::parse(r.body).as_object();
        return f.at("inflight").as_int64() + f.at("queued").as_int64() == 2;
      },
      30000))
      << b_->Call("GET", "/v1/functions/slow").body;
  b_->Kill9();
  auto r = lost.get();
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(r.Header("x-thaw-node"), "b");
  EXPECT_NE(r.body.find("node b"), std::string::npos) << r.body;
  try {
    (void)held.get();  // b died under it: no answer
  } catch (const std::exception&) {
  }

  // b is listed (warm) until its lease runs out, but refuses connections: a runs the call.
  auto here = a_->Invoke("quick");
  EXPECT_EQ(here.status, 200) << here.body;
  EXPECT_EQ(here.Header("x-thaw-node"), "a");
  // ... after trying b (not because b had already left the member list).
  EXPECT_TRUE(a_->WaitForOutput("unreachable, running the call here", 1000)) << a_->Output();
}

// Lambda's Invoke signed with a tenant's key id and secret (SigV4, as awscli signs): a checks
// the signature, b checks it again on the request as it came (Host included) and runs it.
TEST_F(ForwardTest, SignedLambdaInvokeIsVerifiedAgainWhereItRuns) {
  a_->CreateTenant("acme");
  const auto [id, secret] = a_->CreateKey("acme");
  dirs_.push_back(PythonBundle("hello", kHello));
  ASSERT_EQ(a_->Deploy("acme.hello", dirs_.back()).status, 201);
  StartB();
  auto warm =
      b_->Call("POST", "/v1/functions/acme.hello/invoke", "{}", {{"X-Thaw-Forwarded-By", "test"}});
  ASSERT_EQ(warm.status, 200) << warm.body;
  ASSERT_TRUE(Eventually([&] { return SeesWarm(*a_, "b", "hello"); }, 10000))
      << a_->Call("GET", "/v1/nodes").body;

  const std::string target = "/2015-03-31/functions/hello/invocations";
  const std::string body = "{}";
  const time_t now = static_cast<time_t>(WallNowMicros() / 1'000'000);
  tm utc;
  gmtime_r(&now, &utc);
  char date[32];
  std::strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &utc);
  const std::string host = a_->url().substr(std::string("http://").size());
  auth::SigV4Request request{"POST", target, {{"Host", host}, {"X-Amz-Date", date}}, body};
  auth::SigV4Authorization sig{id,       std::string(date).substr(0, 8), "us-east-1",
                               "lambda", {"host", "x-amz-date"},         ""};
  auto signature = auth::SignSigV4(request, sig, secret);
  ASSERT_TRUE(signature.ok()) << signature.status().message();
  sig.signature = *signature;
  auto r = a_->Call("POST", target, body,
                    {{"X-Amz-Date", date}, {"Authorization", auth::FormatSigV4Authorization(sig)}},
                    /*auth=*/false);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-thaw-node"), "b");
  EXPECT_NE(r.body.find("\"ok\""), std::string::npos) << r.body;
}

// `thaw nodes drain b` with a version warm only on b: a starts an instance of it (placement
// picks a, the only other node), calls through b then go to a, and b's idle instance stops.
// Calls through b all along the move: none fails.
TEST_F(ForwardTest, DrainMovesWarmWorkAndNoCallFails) {
  Deploy("moving", kHello);
  StartB();
  WarmOnB("moving");
  ASSERT_FALSE(SeesWarm(*a_, "a", "moving"));

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  std::vector<std::string> failures;  // the caller thread's only, read after join
  std::thread caller([&] {
    while (!stop) {
      try {
        auto r = b_->Invoke("moving");
        if (r.status != 200) failures.push_back(std::to_string(r.status) + " " + r.body);
      } catch (const std::exception& e) {
        failures.push_back(e.what());
      }
      ++calls;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // pacing, not a wait
    }
  });

  auto drained = a_->Call("POST", "/v1/nodes/b/drain");
  ASSERT_EQ(drained.status, 200) << drained.body;
  const auto marked = std::chrono::steady_clock::now();
  // a holds it warm (bounded: the mark is seen within a poll, the instance starts, a's record
  // is republished within a second).
  EXPECT_TRUE(Eventually([&] { return SeesWarm(*a_, "a", "moving"); }, 15000))
      << a_->Call("GET", "/v1/nodes").body;
  const double moved_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - marked).count();
  // A call through b runs on a, warm.
  HttpResult through_b;
  EXPECT_TRUE(Eventually(
      [&] {
        through_b = b_->Invoke("moving");
        return through_b.status == 200 && through_b.Header("x-thaw-node") == "a";
      },
      5000))
      << through_b.status << " " << through_b.Header("x-thaw-node") << " " << through_b.body;
  // b lets its idle instance go once a holds the version warm.
  EXPECT_TRUE(Eventually([&] { return !SeesWarm(*a_, "b", "moving"); }, 10000))
      << a_->Call("GET", "/v1/nodes").body;
  EXPECT_TRUE(b_->WaitForOutput("its idle instances here stop", 1000)) << b_->Output();
  // Calls through b keep going to a, after b's instance is gone.
  const int before = calls.load();
  EXPECT_TRUE(Eventually([&] { return calls.load() >= before + 5; }, 10000));
  stop = true;
  caller.join();
  // Alone (the caller's calls could have made a start a second instance), a call through b
  // runs warm on a.
  auto last = b_->Invoke("moving");
  EXPECT_EQ(last.status, 200) << last.body;
  EXPECT_EQ(last.Header("x-thaw-node"), "a");
  EXPECT_EQ(last.Header("x-thaw-cold-start"), "false");
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << calls.load()
                                << " calls failed, first: " << failures.front();
  std::printf("drain: warm on a %.2f s after the mark; %d calls through b, %zu failed\n", moved_s,
              calls.load(), failures.size());
}

// The node a call arrives at holds its tenant slot; only a node of the cluster (it shows the
// cluster token) may say it holds one. A client's own hop header, or a wrong token, buys no
// slot past the tenant's limit.
TEST_F(ForwardTest, AClaimedHopWithoutTheTokenStillCountsAgainstTheTenant) {
  a_->CreateTenant("t1", R"("concurrency":1)");
  const std::string hold =
      "import time\n"
      "def handler(event, context):\n"
      "    time.sleep(event.get('hold', 0))\n"
      "    return {'held': True}\n";
  dirs_.push_back(PythonBundle("hold", hold));
  ASSERT_EQ(a_->Deploy("t1.hold", dirs_.back()).status, 201);
  // The node's share of the limit is set once a call gets through.
  ASSERT_TRUE(Eventually([&] { return a_->Invoke("t1.hold").status == 200; }, 30000))
      << a_->Output();
  // The holder asks again while a probe holds the slot; once a probe is refused, the holder
  // holds it, for five seconds.
  std::atomic<bool> held{false};
  std::thread holder([&] {
    for (int i = 0; i < 1000 && !held; ++i) {
      held = a_->Invoke("t1.hold", R"({"hold":5})").status != 429;
    }
  });
  EXPECT_TRUE(Eventually([&] { return a_->Invoke("t1.hold").status == 429; }, 30000));
  for (const auto& token : {std::string(), std::string("not-the-token")}) {
    Headers headers = {{"X-Thaw-Forwarded-By", "b"}};
    if (!token.empty()) headers.emplace_back("X-Thaw-Cluster-Token", token);
    auto r = a_->Call("POST", "/v1/functions/t1.hold/invoke", "{}", headers);
    EXPECT_EQ(r.status, 429) << "token '" << token << "': " << r.body;
  }
  holder.join();
}

}  // namespace
}  // namespace thaw::testing

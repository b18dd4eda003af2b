// Scheduling against real processes: scale out under load, queue then throttle, scale to
// zero, min_instances kept warm and replaced, and redeploys that drain without failures.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <set>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

// Answers with a token naming its instance (in a jail every runtime is PID 1); {"die": true}
// makes the instance exit shortly after answering, as a crash between calls would.
// The token names the instance: made at its first call, since instances forked from one
// template share what import made.
const std::string kSlow =
    "import os, threading, time, uuid\nTOKEN = None\n"
    "def handler(e, c):\n    global TOKEN\n    TOKEN = TOKEN or uuid.uuid4().hex\n"
    "    time.sleep(e.get('s', 0.3))\n"
    "    if e.get('die'): threading.Timer(0.05, lambda: os._exit(9)).start()\n"
    "    return TOKEN\n";

int64_t Instances(const ThawServer& s, const std::string& name, const char* state) {
  auto r = s.Call("GET", "/v1/functions/" + name);
  if (r.status != 200) return -1;
  return json::parse(r.body).as_object()["instances"].as_object()[state].as_int64();
}

TEST(ScalingTest, ScalesOutUnderLoadAndReusesWarmInstances) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("slow", kSlow, "max_instances: 3\n");
  ASSERT_EQ(server->Deploy("slow", dir).status, 201);
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return server->Invoke("slow"); }));
  }
  std::set<std::string> pids;
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_EQ(r.status, 200) << r.body;
    pids.insert(r.body);
  }
  EXPECT_EQ(pids.size(), 3u);  // three instances served the three concurrent calls
  EXPECT_EQ(Instances(*server, "slow", "ready"), 3);
  auto warm = server->Invoke("slow", R"({"s":0})");
  EXPECT_EQ(warm.Header("x-thaw-cold-start"), "false");
  EXPECT_TRUE(pids.count(warm.body));
  RemoveDir(dir);
}

TEST(ScalingTest, ConcurrencyLetsOneInstanceTakeSeveralRequests) {
  auto server = ThawServer::Start();
  // The bootstrap answers requests in parallel threads, each with its own GET /next.
  const std::string bootstrap = R"(#!/usr/bin/python3 -S
import os, threading, time, urllib.request, uuid
TOKEN = uuid.uuid4().hex.encode()
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
def loop():
    while True:
        with urllib.request.urlopen(api + "next") as r:
            rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        time.sleep(0.3)
        urllib.request.urlopen(urllib.request.Request(api + rid + "/response",
                               data=TOKEN, method="POST")).read()
threads = [threading.Thread(target=loop) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
)";
  std::string dir =
      MakeBundle({{"thaw.yaml", "runtime: provided\nconcurrency: 3\nmax_instances: 1\n"},
                  {"bootstrap", bootstrap}},
                 {"bootstrap"});
  ASSERT_EQ(server->Deploy("multi", dir).status, 201);
  ASSERT_EQ(server->Invoke("multi").status, 200);  // warm it up
  auto start = std::chrono::steady_clock::now();
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return server->Invoke("multi"); }));
  }
  std::set<std::string> pids;
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_EQ(r.status, 200);
    pids.insert(r.body);
  }
  EXPECT_EQ(pids.size(), 1u);
  // Served together, not one after another (which would take 0.9 s).
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(850));
  RemoveDir(dir);
}

TEST(ScalingTest, FullQueueAndQueueTimeoutAre429) {
  auto server = ThawServer::Start({"--max-queue", "1", "--queue-timeout-ms", "5000"});
  std::string dir = PythonBundle("slow", kSlow, "max_instances: 1\n");
  ASSERT_EQ(server->Deploy("slow", dir).status, 201);
  ASSERT_EQ(server->Invoke("slow", R"({"s":0})").status, 200);
  auto busy = std::async(std::launch::async, [&] { return server->Invoke("slow", R"({"s":1})"); });
  ASSERT_TRUE(server->WaitForFunction("slow", "\"inflight\":1", 5000));
  auto queued =
      std::async(std::launch::async, [&] { return server->Invoke("slow", R"({"s":0})"); });
  ASSERT_TRUE(server->WaitForFunction("slow", "\"queued\":1", 5000));
  auto rejected = server->Invoke("slow");
  EXPECT_EQ(rejected.status, 429);
  EXPECT_EQ(JsonField(rejected.body, "errorType"), "TooManyRequestsException");
  EXPECT_EQ(rejected.Header("retry-after"), "1");
  EXPECT_EQ(busy.get().status, 200);
  EXPECT_EQ(queued.get().status, 200);

  auto short_wait = ThawServer::Start({"--queue-timeout-ms", "200"});
  ASSERT_EQ(short_wait->Deploy("slow", dir).status, 201);
  auto long_call =
      std::async(std::launch::async, [&] { return short_wait->Invoke("slow", R"({"s":1.5})"); });
  ASSERT_TRUE(short_wait->WaitForFunction("slow", "\"inflight\":1", 5000));
  auto timed_out = short_wait->Invoke("slow");
  EXPECT_EQ(timed_out.status, 429);
  EXPECT_NE(JsonField(timed_out.body, "errorMessage").find("within 200 ms"), std::string::npos);
  EXPECT_EQ(long_call.get().status, 200);
  RemoveDir(dir);
}

TEST(ScalingTest, IdleInstancesScaleToZero) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("brief", kSlow, "idle_timeout_s: 1\n");
  ASSERT_EQ(server->Deploy("brief", dir).status, 201);
  ASSERT_EQ(server->Invoke("brief", R"({"s":0})").status, 200);
  EXPECT_EQ(Instances(*server, "brief", "ready"), 1);
  EXPECT_TRUE(server->WaitForFunction(
      "brief", "\"instances\":{\"starting\":0,\"ready\":0,\"busy\":0,\"stopping\":0}", 5000));
  auto cold = server->Invoke("brief", R"({"s":0})");
  EXPECT_EQ(cold.Header("x-thaw-cold-start"), "true");
  RemoveDir(dir);
}

// The adaptive keep-alive (the default) learns from the server's own calls: the 10 idle times
// between 11 calls a moment apart all fall in the first minute's bin, so its instance is kept
// 1 minute plus 10% (66 s) instead of the 300 s fallback. keep_alive: fixed keeps 300 s.
TEST(ScalingTest, AdaptiveKeepAliveLearnsFromItsOwnIdleTimes) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("learn", kSlow);
  std::string fixed = PythonBundle("steady", kSlow, "keep_alive: fixed\n");
  ASSERT_EQ(server->Deploy("learn", dir).status, 201);
  ASSERT_EQ(server->Deploy("steady", fixed).status, 201);
  auto plan = [&](const std::string& name) {
    json::object f = json::parse(server->Call("GET", "/v1/functions/" + name).body).as_object();
    return std::make_pair(
        std::string(f["keep_alive"].as_string()),
        f.contains("keep_alive_plan") ? f["keep_alive_plan"].as_object() : json::object());
  };
  for (int i = 0; i < 11; ++i) {
    ASSERT_EQ(server->Invoke("learn", R"({"s":0})").status, 200);
    if (i == 0) {
      auto [mode, p] = plan("learn");
      EXPECT_EQ(mode, "adaptive");
      EXPECT_EQ(p["basis"].as_string(), "too-few-samples");
      EXPECT_EQ(p["keep_alive_s"].to_number<double>(), 300);
    }
  }
  auto [mode, p] = plan("learn");
  EXPECT_EQ(p["basis"].as_string(), "histogram") << json::serialize(p);
  EXPECT_EQ(p["idle_samples"].as_int64(), 10);
  EXPECT_EQ(p["prewarm_s"].to_number<double>(), 0);
  EXPECT_EQ(p["keep_alive_s"].to_number<double>(), 66);
  EXPECT_EQ(Instances(*server, "learn", "ready"), 1);
  for (int i = 0; i < 11; ++i) ASSERT_EQ(server->Invoke("steady", R"({"s":0})").status, 200);
  auto [fixed_mode, fp] = plan("steady");
  EXPECT_EQ(fixed_mode, "fixed");
  EXPECT_EQ(fp["basis"].as_string(), "fixed");
  EXPECT_EQ(fp["keep_alive_s"].to_number<double>(), 300);
  RemoveDir(dir);
  RemoveDir(fixed);
}

// The idle times learnt before a restart are the restarted server's too (IdleTimesStore): its
// plan keeps the learnt 66 s window rather than starting over from the 300 s fallback.
TEST(ScalingTest, LearntKeepAliveSurvivesARestart) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("recall", kSlow);
  ASSERT_EQ(server->Deploy("recall", dir).status, 201);
  for (int i = 0; i < 11; ++i) ASSERT_EQ(server->Invoke("recall", R"({"s":0})").status, 200);
  auto plan = [](ThawServer& s) {
    json::object f = json::parse(s.Call("GET", "/v1/functions/recall").body).as_object();
    return f.contains("keep_alive_plan") ? f["keep_alive_plan"].as_object() : json::object();
  };
  ASSERT_EQ(plan(*server)["basis"].as_string(), "histogram") << json::serialize(plan(*server));
  const std::string data_dir = server->data_dir();
  ASSERT_EQ(server->Stop(), 0);
  auto restarted = ThawServer::Start({}, data_dir);
  // One call makes the pool (it records no idle time: none is known across the restart).
  ASSERT_EQ(restarted->Invoke("recall", R"({"s":0})").status, 200);
  json::object p = plan(*restarted);
  EXPECT_EQ(p["basis"].as_string(), "histogram") << json::serialize(p);
  EXPECT_EQ(p["idle_samples"].as_int64(), 10);
  EXPECT_EQ(p["keep_alive_s"].to_number<double>(), 66);
  RemoveDir(dir);
}

TEST(ScalingTest, MinInstancesAreKeptWarmAndReplaced) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("warm", kSlow, "min_instances: 1\nidle_timeout_s: 0\n");
  ASSERT_EQ(server->Deploy("warm", dir).status, 201);
  ASSERT_TRUE(server->WaitForFunction("warm", "\"ready\":1", 5000));
  auto first = server->Invoke("warm", R"({"s":0,"die":true})");
  EXPECT_EQ(first.Header("x-thaw-cold-start"), "true");  // first event on that instance
  EXPECT_TRUE(Eventually(
      [&] {
        auto r = server->Invoke("warm", R"({"s":0})");
        return r.status == 200 && r.body != first.body;
      },
      5000));
  EXPECT_EQ(Instances(*server, "warm", "ready"), 1);
  RemoveDir(dir);
}

TEST(ScalingTest, RedeployDrainsWithoutFailingInFlightRequests) {
  auto server = ThawServer::Start();
  std::string v1 = PythonBundle("svc",
                                "import time\ndef handler(e, c):\n"
                                "    time.sleep(e.get('s', 0))\n    return 'v1'\n");
  std::string v2 = PythonBundle("svc", "def handler(e, c):\n    return 'v2'\n");
  ASSERT_EQ(server->Deploy("svc", v1).status, 201);
  auto inflight =
      std::async(std::launch::async, [&] { return server->Invoke("svc", R"({"s":0.8})"); });
  ASSERT_TRUE(server->WaitForFunction("svc", "\"inflight\":1", 5000));
  ASSERT_EQ(server->Deploy("svc", v2).status, 201);
  EXPECT_EQ(server->Invoke("svc").body, "\"v2\"");
  auto old = inflight.get();
  EXPECT_EQ(old.status, 200);
  EXPECT_EQ(old.body, "\"v1\"");
  // Version 1's instance stops once idle: only version 2's remains.
  EXPECT_TRUE(server->WaitForFunction("svc", "\"ready\":1,", 5000));
  RemoveDir(v1);
  RemoveDir(v2);
}

// Regression: after a redeploy, calls to the old version (an alias or qualifier) were all
// cold starts, because its pool stopped every idle instance at once.
TEST(ScalingTest, OldVersionStillCalledStaysWarm) {
  auto server = ThawServer::Start();
  std::string v1 = PythonBundle("svc", kSlow);
  ASSERT_EQ(server->Deploy("svc", v1).status, 201);
  ASSERT_EQ(server->Deploy("svc", v1).status, 201);  // version 2 replaces 1
  auto first = server->Invoke("svc", R"({"s":0})", "1");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("x-thaw-cold-start"), "true");
  // Several scheduler ticks (every 100 ms) pass: the instance must survive them.
  EXPECT_FALSE(Eventually([&] { return Instances(*server, "svc", "ready") == 0; }, 500));
  auto second = server->Invoke("svc", R"({"s":0})", "1");
  EXPECT_EQ(second.Header("x-thaw-cold-start"), "false");
  EXPECT_EQ(second.body, first.body);
  RemoveDir(v1);
}

TEST(ScalingTest, DeleteLetsInFlightRequestsFinish) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("doomed", kSlow);
  ASSERT_EQ(server->Deploy("doomed", dir).status, 201);
  auto inflight =
      std::async(std::launch::async, [&] { return server->Invoke("doomed", R"({"s":0.5})"); });
  ASSERT_TRUE(server->WaitForFunction("doomed", "\"inflight\":1", 5000));
  EXPECT_EQ(server->Call("DELETE", "/v1/functions/doomed").status, 204);
  EXPECT_EQ(inflight.get().status, 200);
  EXPECT_EQ(server->Invoke("doomed").status, 404);
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

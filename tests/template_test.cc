// Templates (instance/template.h): a python3 (or C++ SDK) version's instances forked from a
// runtime that already ran the function's init. Against the real server and spawner: prewarm at
// deploy and at restart, what siblings must not share (random state, identity, Runtime API), fork
// safety (threads refused), containment of one sibling's crash or OOM, and the fallback to a full
// cold start when the template is gone. As root the instances are jailed, each fork in its own
// cgroup; elsewhere the same behaviour holds for plain processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

constexpr int kTemplateWaitMs = 60'000;  // a template's init, on a machine under load
// tests/template_cpp_main.cc, built with the C++ SDK.
const std::string kTemplateCpp = std::string(THAW_BUILD_DIR) + "/tests/template-cpp/bootstrap";

// A handler that reports who it is; it sleeps when asked, to hold its instance busy.
constexpr char kWhoAmI[] =
    "import os, random, time\n"
    "try:\n"
    "    import numpy\n"
    "except ImportError:\n"
    "    numpy = None\n"
    "def handler(e, c):\n"
    "    time.sleep(e.get('sleep', 0))\n"
    "    return {'pid': os.getpid(), 'random': random.random(),\n"
    "            'numpy': float(numpy.random.random()) if numpy is not None else None,\n"
    "            'api': os.environ['AWS_LAMBDA_RUNTIME_API'],\n"
    "            'stream': c.log_stream_name,\n"
    "            'env_stream': os.environ['AWS_LAMBDA_LOG_STREAM_NAME']}\n";

class TemplateTest : public ServerTest {
 protected:
  // Inits (the templates' too) take seconds on a machine under load: room past the default.
  static std::vector<std::string> Flags(std::vector<std::string> more = {}) {
    std::vector<std::string> flags = {"--init-timeout-ms", "120000", "--queue-timeout-ms",
                                      "120000"};
    flags.insert(flags.end(), more.begin(), more.end());
    return flags;
  }
  void SetUp() override { server_ = ThawServer::Start(Flags()); }

  json::object Function(const std::string& name) const {
    return json::parse(server_->Call("GET", "/v1/functions/" + name).body).as_object();
  }
  static size_t Count(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1)) {
      ++n;
    }
    return n;
  }
  // A C++ function: `bootstrap` (kTemplateCpp unless given) and `files` beside it.
  void DeployCpp(const std::string& name, const std::string& yaml,
                 std::map<std::string, std::string> files = {}) {
    files["thaw.yaml"] = "runtime: cpp\n" + yaml;
    const bool own = files.contains("bootstrap");
    dirs_.push_back(MakeBundle(files, {"bootstrap"}));
    if (!own) {
      ASSERT_EQ(std::system(("cp " + kTemplateCpp + " " + dirs_.back() + "/").c_str()), 0);
    }
    auto r = server_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }
  // `n` calls at once, each forking an instance: their answers, parsed (asserted 200 and forks).
  std::vector<json::object> ForkedAnswers(const std::string& name, int n, double sleep_s) const {
    std::vector<json::object> out;
    for (const auto& r : Concurrently(name, n, sleep_s)) {
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(r.Header("x-thaw-start-kind"), "fork") << r.body;
      if (r.status == 200) out.push_back(json::parse(r.body).as_object());
    }
    return out;
  }
  // `n` calls at once, each holding its instance for `sleep_s`: `n` instances.
  std::vector<HttpResult> Concurrently(const std::string& name, int n, double sleep_s) const {
    std::vector<std::future<HttpResult>> calls;
    for (int i = 0; i < n; ++i) {
      calls.push_back(std::async(std::launch::async, [&] {
        return server_->Invoke(name, "{\"sleep\":" + std::to_string(sleep_s) + "}");
      }));
    }
    std::vector<HttpResult> out;
    for (auto& c : calls) out.push_back(c.get());
    return out;
  }
};

TEST_F(TemplateTest, FirstCallAfterDeployForksThenWarm) {
  DeployPython("who", kWhoAmI);
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << server_->Call("GET", "/v1/functions/who").body;
  auto first = server_->Invoke("who");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.Header("x-thaw-cold-start"), "true");
  EXPECT_EQ(first.Header("x-thaw-start-kind"), "fork");
  auto second = server_->Invoke("who");
  EXPECT_EQ(second.Header("x-thaw-cold-start"), "false");
  EXPECT_EQ(second.Header("x-thaw-start-kind"), "warm");
  // The forked instance is an instance like any other in the listing.
  auto f = Function("who");
  ASSERT_EQ(f.at("instance_list").as_array().size(), 1u) << json::serialize(f);
  const auto& inst = f.at("instance_list").as_array()[0].as_object();
  EXPECT_EQ(inst.at("start_kind").as_string(), "fork");
  EXPECT_GT(inst.at("pid").as_int64(), 0);
  auto logs = Logs("who");
  EXPECT_NE(logs.find("TEMPLATE_REPORT Init Duration: "), std::string::npos) << logs;
  EXPECT_NE(logs.find("Start Kind: fork"), std::string::npos) << logs;
}

// Regression: min_instances' instances at deploy started before the template (a separate
// posted task), so the first found none and started in full, with a private copy of the whole
// init (118 MB of digits-torch's 8-instance group: bench/templates.py memory).
TEST_F(TemplateTest, MinInstancesAtDeployAllFork) {
  DeployPython("floor", kWhoAmI, "min_instances: 2\n");
  ASSERT_TRUE(Eventually(
      [&] {
        auto f = Function("floor");
        return f.at("instances").as_object().contains("ready") &&
               f.at("instances").at("ready").as_int64() == 2;
      },
      kTemplateWaitMs))
      << server_->Call("GET", "/v1/functions/floor").body;
  const json::object f = Function("floor");
  for (const auto& inst : f.at("instance_list").as_array()) {
    EXPECT_EQ(inst.at("start_kind").as_string(), "fork") << json::serialize(inst);
  }
}

TEST_F(TemplateTest, SiblingsHaveTheirOwnRandomStateIdentityAndLogStream) {
  DeployPython("who", kWhoAmI, "max_instances: 4\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("who", "ready"));
  const auto answers = ForkedAnswers("who", 3, 1.5);
  ASSERT_EQ(answers.size(), 3u);
  std::set<std::string> randoms, numpys, apis, streams;
  for (const json::object& o : answers) {
    randoms.insert(json::serialize(o.at("random")));
    numpys.insert(json::serialize(o.at("numpy")));
    apis.insert(std::string(o.at("api").as_string()));
    streams.insert(std::string(o.at("stream").as_string()));
    EXPECT_EQ(o.at("stream"), o.at("env_stream"));
  }
  EXPECT_EQ(randoms.size(), 3u);
  if (*numpys.begin() != "null") {
    EXPECT_EQ(numpys.size(), 3u);
  }
  EXPECT_EQ(apis.size(), 3u);
  EXPECT_EQ(streams.size(), 3u);
  EXPECT_EQ(Function("who").at("instance_list").as_array().size(), 3u);
}

TEST_F(TemplateTest, SiblingCannotTakeAnotherSiblingsEvents) {
  // B, forked while A is busy, connects to A's Runtime API and asks for A's next event.
  DeployPython("spy",
               "import os, socket, time\n"
               "def handler(e, c):\n"
               "    if 'target' in e:\n"
               "        host, port = e['target'].rsplit(':', 1)\n"
               "        try:\n"
               "            s = socket.create_connection((host, int(port)), timeout=5)\n"
               "            s.sendall(b'GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\n'\n"
               "                      b'Host: x\\r\\n\\r\\n')\n"
               "            s.settimeout(5)\n"
               "            got = s.recv(4096)\n"
               "        except OSError as err:\n"
               "            return {'got': 'error: ' + str(err)}\n"
               "        return {'got': got.decode('latin-1')}\n"
               "    time.sleep(e.get('sleep', 0))\n"
               "    return {'api': os.environ['AWS_LAMBDA_RUNTIME_API']}\n",
               "max_instances: 2\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("spy", "ready"));
  auto a = server_->Invoke("spy");
  ASSERT_EQ(a.status, 200) << a.body;
  const std::string a_api = JsonField(a.body, "api");
  auto busy =
      std::async(std::launch::async, [&] { return server_->Invoke("spy", R"({"sleep":3})"); });
  ASSERT_TRUE(server_->WaitForFunction("spy", "\"inflight\":1", 10'000));
  auto b = server_->Invoke("spy", R"({"target":")" + a_api + R"("})");
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(b.Header("x-thaw-start-kind"), "fork");
  const std::string got = JsonField(b.body, "got");
  EXPECT_EQ(got.find("200 OK"), std::string::npos) << got;
  EXPECT_EQ(got.find("lambda-runtime-aws-request-id"), std::string::npos) << got;
  EXPECT_EQ(busy.get().status, 200);
  // A still serves its own events.
  EXPECT_EQ(server_->Invoke("spy").status, 200);
}

TEST_F(TemplateTest, SiblingCrashAndOomTouchNeitherSiblingsNorTemplate) {
  DeployPython("fragile",
               "import os, time\n"
               "def handler(e, c):\n"
               "    if e.get('crash'): os._exit(7)\n"
               "    if e.get('oom'):\n"
               "        hog = []\n"
               "        while True: hog.append(bytearray(16 << 20))\n"
               "    time.sleep(e.get('sleep', 0))\n"
               "    return os.environ['AWS_LAMBDA_LOG_STREAM_NAME']\n",
               "memory_mb: 128\nmax_instances: 3\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("fragile", "ready"));
  const auto template_pid = TemplateOf("fragile").at("pid").as_int64();
  auto survivor =
      std::async(std::launch::async, [&] { return server_->Invoke("fragile", R"({"sleep":4})"); });
  ASSERT_TRUE(server_->WaitForFunction("fragile", "\"inflight\":1", 10'000));
  auto crashed = server_->Invoke("fragile", R"({"crash":true})");
  EXPECT_EQ(crashed.status, 502);
  EXPECT_EQ(JsonField(crashed.body, "errorType"), "Runtime.ExitError") << crashed.body;
  EXPECT_EQ(crashed.Header("x-thaw-start-kind"), "fork");
  auto oom = server_->Invoke("fragile", R"({"oom":true})");
  EXPECT_EQ(oom.status, 502);
  if (::geteuid() == 0) {  // cgroups: the forked instance's own memory limit
    EXPECT_EQ(JsonField(oom.body, "errorType"), "Runtime.OutOfMemory") << oom.body;
  }
  auto s = survivor.get();
  EXPECT_EQ(s.status, 200) << s.body;
  // The template lives on: the next cold start forks again.
  EXPECT_EQ(TemplateOf("fragile").at("pid").as_int64(), template_pid);
  auto busy =
      std::async(std::launch::async, [&] { return server_->Invoke("fragile", R"({"sleep":2})"); });
  ASSERT_TRUE(server_->WaitForFunction("fragile", "\"inflight\":1", 10'000));
  auto again = server_->Invoke("fragile", R"({"sleep":2})");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(busy.get().status, 200);
  EXPECT_TRUE(again.Header("x-thaw-start-kind") == "fork" ||
              again.Header("x-thaw-start-kind") == "warm")
      << again.Header("x-thaw-start-kind");
}

TEST_F(TemplateTest, ThreadsAtInitAreRefusedOncePerVersionAndCallsStartFull) {
  DeployPython("threaded",
               "import threading, time\n"
               "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
               "def handler(e, c):\n"
               "    time.sleep(e.get('sleep', 0))\n"
               "    return 'ok'\n",
               "max_instances: 3\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("threaded", "ready"));
  auto results = Concurrently("threaded", 2, 1.0);
  for (const auto& r : results) {
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  }
  auto t = TemplateOf("threaded");
  EXPECT_EQ(t.at("state").as_string(), "unusable");
  EXPECT_NE(std::string(t.at("why").as_string()).find("2 threads"), std::string::npos)
      << json::serialize(t);
  EXPECT_EQ(Count(Logs("threaded"), "TEMPLATE_REPORT Status: refused"), 1u) << Logs("threaded");
}

// The C++ SDK serves as a template as bootstrap.py does: main()'s init runs once, in the
// template, and each instance is a fork of it with an identity of its own.
TEST_F(TemplateTest, CppInstancesForkAfterMainsInitEachWithItsOwnIdentity) {
  DeployCpp("cppfork", "max_instances: 4\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("cppfork", "ready")) << json::serialize(TemplateOf("cppfork"));
  const auto answers = ForkedAnswers("cppfork", 3, 1.0);
  ASSERT_EQ(answers.size(), 3u);
  std::set<std::string> pids, rands, streams, apis;
  for (const json::object& o : answers) {
    // The init ran in another process (the template), not in this instance.
    EXPECT_NE(o.at("pid"), o.at("init_pid")) << json::serialize(o);
    EXPECT_FALSE(o.at("channel").as_string().empty()) << json::serialize(o);
    pids.insert(json::serialize(o.at("pid")));
    rands.insert(json::serialize(o.at("rand")));
    streams.insert(std::string(o.at("stream").as_string()));
    apis.insert(std::string(o.at("api").as_string()));
  }
  EXPECT_EQ(pids.size(), 3u);
  EXPECT_EQ(rands.size(), 3u);  // rand() reseeded in each fork
  EXPECT_EQ(streams.size(), 3u);
  EXPECT_EQ(apis.size(), 3u);
  auto warm = server_->Invoke("cppfork");
  EXPECT_EQ(warm.Header("x-thaw-start-kind"), "warm") << warm.body;
  EXPECT_NE(Logs("cppfork").find("TEMPLATE_REPORT Init Duration: "), std::string::npos);
}

TEST_F(TemplateTest, CppThreadsAtInitAreRefusedAndCallsStartFull) {
  DeployCpp("cppthreads", "timeout_s: 60\n", {{"threads", ""}});
  ASSERT_TRUE(WaitForTemplate("cppthreads", "ready"));
  auto r = server_->Invoke("cppthreads");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  auto o = json::parse(r.body).as_object();
  EXPECT_EQ(o.at("pid"), o.at("init_pid")) << r.body;
  auto t = TemplateOf("cppthreads");
  EXPECT_EQ(t.at("state").as_string(), "unusable");
  EXPECT_NE(std::string(t.at("why").as_string()).find("2 threads"), std::string::npos)
      << json::serialize(t);
  EXPECT_EQ(Count(Logs("cppthreads"), "TEMPLATE_REPORT Status: refused"), 1u);
}

// Regression: 500 forked instances deadlocked the server, starting and being removed: the
// spawner sent replies and exit events while thaw sent it fork requests and kills, a socket pair
// holds about ten messages each way, and each side blocked in its send.
TEST_F(TemplateTest, FiveHundredForksStartAndTheirFunctionIsRemoved) {
  constexpr int kInstances = 500;
  server_ = ThawServer::Start(Flags({"--node-memory-mb", "1000000"}));  // room for them all
  DeployCpp("many", "min_instances: 500\nmax_instances: 500\nmemory_mb: 64\n");
  ASSERT_TRUE(Eventually(
      [&] {
        auto f = Function("many");
        return f.at("instances").as_object().contains("ready") &&
               f.at("instances").at("ready").as_int64() == kInstances;
      },
      kTemplateWaitMs))
      << json::serialize(Function("many").at("instances"));
  std::vector<pid_t> pids;
  const json::object f = Function("many");
  for (const auto& inst : f.at("instance_list").as_array()) {
    pids.push_back(static_cast<pid_t>(inst.at("pid").as_int64()));
  }
  auto removed =
      std::async(std::launch::async, [&] { return server_->Call("DELETE", "/v1/functions/many"); });
  if (removed.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "DELETE did not answer within 60 s";
    server_->Kill9();  // unblocks the call
  }
  EXPECT_EQ(removed.get().status, 204);
  EXPECT_TRUE(Eventually(
      [&] {
        return std::none_of(pids.begin(), pids.end(), [](pid_t p) { return ProcessAlive(p); });
      },
      30'000));
  EXPECT_EQ(server_->Call("GET", "/v1/functions").status, 200);  // still serving
}

// A bootstrap built with an SDK from before templates (here a shell runtime) is never started
// as a template: it would only fail that init. Its instances start in full, nothing is logged.
TEST_F(TemplateTest, CppBootstrapWithoutTemplateSupportStartsFull) {
  DeployCpp("oldsdk", "",
            {{"bootstrap",
              "#!/bin/sh\n"
              "api=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation\n"
              "while true; do\n"
              "  id=$(curl -sS -D - -o /dev/null $api/next | tr -d '\\r' |\n"
              "    sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: //p')\n"
              "  curl -sS -o /dev/null -d '\"old\"' $api/$id/response\n"
              "done\n"}});
  auto r = server_->Invoke("oldsdk");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "\"old\"");
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  auto t = TemplateOf("oldsdk");
  EXPECT_EQ(t.at("state").as_string(), "unusable") << json::serialize(t);
  EXPECT_NE(std::string(t.at("why").as_string()).find("without template support"),
            std::string::npos)
      << json::serialize(t);
  EXPECT_EQ(Logs("oldsdk").find("TEMPLATE_REPORT"), std::string::npos) << Logs("oldsdk");
}

// The spawner makes cgroups for forks ahead, with the limits the last fork asked for; a fork of
// another version with other limits gets its own limits all the same.
TEST_F(TemplateTest, ForksOfVersionsWithOtherLimitsGetTheirOwn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: cgroups";
  DeployCpp("small", "memory_mb: 64\n");
  DeployCpp("large", "memory_mb: 320\n");
  ASSERT_TRUE(WaitForTemplate("small", "ready"));
  ASSERT_TRUE(WaitForTemplate("large", "ready"));
  // Each instance's memory limit as its cgroup holds it (v1 memory.limit_in_bytes, v2
  // memory.max).
  auto limits_of = [&](const std::string& name) {
    std::vector<int64_t> limits;
    const json::object f = Function(name);
    for (const auto& inst : f.at("instance_list").as_array()) {
      std::ifstream in("/proc/" + std::to_string(inst.at("pid").as_int64()) + "/cgroup");
      int64_t bytes = -1;
      for (std::string line; std::getline(in, line);) {
        const size_t colon = line.find(':'), path = line.find(":/");
        const std::string controllers = line.substr(colon + 1, path - colon - 1);
        std::string file;
        if (controllers == "memory") {
          file = "/sys/fs/cgroup/memory" + line.substr(path + 1) + "/memory.limit_in_bytes";
        } else if (controllers.empty() && line.starts_with("0::/thaw/")) {
          file = "/sys/fs/cgroup" + line.substr(path + 1) + "/memory.max";
        }
        std::ifstream limit(file);
        if (!file.empty() && (limit >> bytes)) break;
      }
      limits.push_back(bytes);
    }
    return limits;
  };
  // The spawner (the server's child) holds each template's spare and, once idle, the cgroups it
  // makes ahead (ready_shells: 2), all named shell-<its pid>-fork<n>: with those made, one of
  // the second forks below takes a cgroup made with the other function's limits.
  std::ifstream children("/proc/" + std::to_string(server_->pid()) + "/task/" +
                         std::to_string(server_->pid()) + "/children");
  std::string spawner;
  children >> spawner;
  const std::string hierarchy = std::filesystem::exists("/sys/fs/cgroup/pids/thaw")
                                    ? "/sys/fs/cgroup/pids/thaw"
                                    : "/sys/fs/cgroup/thaw";
  ASSERT_TRUE(Eventually(
      [&] {
        size_t made = 0;
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(hierarchy, ec)) {
          made += e.path().filename().string().starts_with("shell-" + spawner + "-fork");
        }
        return made >= 4;
      },
      30'000));
  // Two calls at once each: the spare, then a fork into a cgroup made ahead.
  for (const std::string name : {"small", "large"}) {
    for (const auto& r : Concurrently(name, 2, 0.3)) {
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_NE(r.Header("x-thaw-start-kind"), "full") << r.body;
    }
  }
  const auto small = limits_of("small"), large = limits_of("large");
  EXPECT_EQ(small, std::vector<int64_t>(small.size(), int64_t{64} << 20));
  EXPECT_EQ(large, std::vector<int64_t>(large.size(), int64_t{320} << 20));
  EXPECT_GE(small.size(), 2u);
  EXPECT_GE(large.size(), 2u);
}

TEST_F(TemplateTest, DeadTemplateFallsBackToFullThenIsMadeAgain) {
  DeployPython("phoenix", kWhoAmI, "timeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("phoenix", "ready"));
  const pid_t pid = static_cast<pid_t>(TemplateOf("phoenix").at("pid").as_int64());
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(
      Eventually([&] { return TemplateOf("phoenix").at("state").as_string() != "ready"; }, 10'000));
  auto r = server_->Invoke("phoenix");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  EXPECT_NE(Logs("phoenix").find("TEMPLATE_REPORT Status: ended"), std::string::npos);
  // The cold start made a new template: the next new instance forks from it.
  ASSERT_TRUE(WaitForTemplate("phoenix", "ready"));
  EXPECT_NE(TemplateOf("phoenix").at("pid").as_int64(), pid);
  auto busy =
      std::async(std::launch::async, [&] { return server_->Invoke("phoenix", R"({"sleep":2})"); });
  ASSERT_TRUE(server_->WaitForFunction("phoenix", "\"inflight\":1", 10'000));
  auto forked = server_->Invoke("phoenix");
  EXPECT_EQ(forked.Header("x-thaw-start-kind"), "fork");
  EXPECT_EQ(busy.get().status, 200);
}

// The keep-alive plan (pool/keep_alive.h) drops a template once it expects no call soon, and
// the next call makes it again and forks from it. Adaptive with a 1 s fallback window and too
// few idle times to learn from: the instance goes after 1 s idle, the template after 2 s.
TEST_F(TemplateTest, DroppedTemplateIsRemadeAndUsed) {
  DeployPython("napper", kWhoAmI, "keep_alive: adaptive\nidle_timeout_s: 1\n");
  ASSERT_TRUE(WaitForTemplate("napper", "ready"))
      << server_->Call("GET", "/v1/functions/napper").body;
  const int64_t first_pid = TemplateOf("napper").at("pid").as_int64();
  auto first = server_->Invoke("napper");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.Header("x-thaw-start-kind"), "fork");
  ASSERT_TRUE(WaitForTemplate("napper", "none"))
      << server_->Call("GET", "/v1/functions/napper").body;
  EXPECT_TRUE(Function("napper").at("instance_list").as_array().empty());
  EXPECT_EQ(Count(Logs("napper"), "TEMPLATE_REPORT Status: dropped"), 1u) << Logs("napper");
  EXPECT_EQ(Count(Logs("napper"), "TEMPLATE_REPORT Status: ended"), 0u) << Logs("napper");

  auto second = server_->Invoke("napper");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.Header("x-thaw-cold-start"), "true");
  EXPECT_EQ(second.Header("x-thaw-start-kind"), "fork");
  auto remade = TemplateOf("napper");
  EXPECT_EQ(remade.at("state").as_string(), "ready") << json::serialize(remade);
  EXPECT_NE(remade.at("pid").as_int64(), first_pid);
  EXPECT_EQ(Count(Logs("napper"), "TEMPLATE_REPORT Init Duration: "), 2u) << Logs("napper");
}

TEST_F(TemplateTest, InitErrorIsReportedAsWithoutTemplates) {
  DeployPython("broken", "raise RuntimeError('no model here')\ndef handler(e, c):\n    return 1\n");
  ASSERT_TRUE(WaitForTemplate("broken", "unusable"));
  auto r = server_->Invoke("broken");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "RuntimeError") << r.body;
  EXPECT_NE(JsonField(r.body, "errorMessage").find("no model here"), std::string::npos);
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
}

TEST_F(TemplateTest, StartKindsInUsageAndMetrics) {
  DeployPython("metered", kWhoAmI);
  ASSERT_TRUE(WaitForTemplate("metered", "ready"));
  ASSERT_EQ(server_->Invoke("metered").Header("x-thaw-start-kind"), "fork");
  ASSERT_EQ(server_->Invoke("metered").Header("x-thaw-start-kind"), "warm");
  auto usage = json::parse(server_->Call("GET", "/v1/usage?function=metered").body);
  const std::string text = json::serialize(usage);
  EXPECT_NE(text.find(R"("cold_starts_by_kind":{"fork":1,"restore":0,"full":0})"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"("template_inits":1)"), std::string::npos) << text;
  EXPECT_EQ(text.find(R"("init_gb_s":0E0)"), std::string::npos) << text;
  auto metrics = server_->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(thaw_cold_starts_by_kind_total{function="metered",kind="fork"} 1)"),
            std::string::npos)
      << metrics;
}

TEST_F(TemplateTest, TemplateOffAndServerKnobStartFull) {
  DeployPython("plain", kWhoAmI, "template: off\n");
  auto r = server_->Invoke("plain");
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  EXPECT_TRUE(TemplateOf("plain").empty());
  auto bad = server_->Deploy(
      "bad", PythonBundle("bad", "def handler(e, c): pass\n", "template: sometimes\n"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("template"), std::string::npos) << bad.body;
  EXPECT_NE(bad.body.find("must be auto or off"), std::string::npos) << bad.body;

  auto off = ThawServer::Start(Flags({"--templates", "false"}));
  dirs_.push_back(PythonBundle("who", kWhoAmI));
  ASSERT_EQ(off->Deploy("who", dirs_.back()).status, 201);
  EXPECT_EQ(off->Invoke("who").Header("x-thaw-start-kind"), "full");
}

TEST_F(TemplateTest, RestartPrewarmsVersionsCalledLately) {
  DeployPython("again", kWhoAmI);
  ASSERT_TRUE(WaitForTemplate("again", "ready"));
  ASSERT_EQ(server_->Invoke("again").status, 200);
  DeployPython("idle", kWhoAmI);  // deployed, never called: no template after a restart
  const std::string data_dir = server_->data_dir();
  ASSERT_EQ(server_->Stop(), 0);
  auto restarted = ThawServer::Start(Flags(), data_dir);
  auto template_state = [&](const std::string& name) {
    auto f = json::parse(restarted->Call("GET", "/v1/functions/" + name).body).as_object();
    const auto& list = f.at("templates").as_array();
    return list.empty() ? std::string() : std::string(list.back().at("state").as_string());
  };
  ASSERT_TRUE(Eventually([&] { return template_state("again") == "ready"; }, kTemplateWaitMs));
  auto r = restarted->Invoke("again");
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "fork") << r.body;
  EXPECT_EQ(template_state("idle"), "");
}

// Templates nobody waits for (a deploy's) init a few at a time: two per CPU, the rest wait
// their turn (listed as "none"), so a thousand deploys in a row do not start a thousand imports
// at once. A call does not wait in that queue: its template starts at once.
TEST_F(TemplateTest, DeploysInitAFewTemplatesAtATimeAndACallSkipsTheQueue) {
  const int slots = 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Each init waits for the test's gate file in its bundle (the bundles are the same code).
  constexpr char kGated[] =
      "import os, time\n"
      "while not os.path.exists(os.path.join(os.environ['LAMBDA_TASK_ROOT'], 'gate-open')):\n"
      "    time.sleep(0.01)\n"
      "def handler(e, c):\n"
      "    return {'pid': os.getpid()}\n";
  const int n = slots + 2;
  for (int i = 0; i < n; ++i) DeployPython("gated" + std::to_string(i), kGated);
  auto states = [&] {
    std::map<std::string, int> out;
    for (int i = 0; i < n; ++i) {
      auto t = TemplateOf("gated" + std::to_string(i));
      ++out[t.contains("state") ? std::string(t.at("state").as_string()) : "(none listed)"];
    }
    return out;
  };
  ASSERT_TRUE(Eventually([&] { return states()["starting"] == slots && states()["none"] == 2; },
                         kTemplateWaitMs))
      << "starting " << states()["starting"] << ", none " << states()["none"];
  // A call to a function whose template waits for a slot starts that template now.
  auto call = std::async(std::launch::async,
                         [&] { return server_->Invoke("gated" + std::to_string(n - 1)); });
  ASSERT_TRUE(Eventually([&] { return states()["starting"] == slots + 1; }, kTemplateWaitMs))
      << "starting " << states()["starting"];
  for (const auto& e : std::filesystem::directory_iterator(server_->data_dir() + "/bundles")) {
    if (e.is_directory()) std::ofstream(e.path() / "gate-open") << "open";
  }
  EXPECT_EQ(call.get().status, 200);
  EXPECT_TRUE(Eventually([&] { return states()["ready"] == n; }, kTemplateWaitMs))
      << "ready " << states()["ready"];
}

}  // namespace
}  // namespace thaw::testing

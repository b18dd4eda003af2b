// Every way an invocation can fail ends in a clear status and body, the instance is replaced
// when it must be, other requests are unaffected, and no request hangs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>

#include "common/files.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

class FailuresTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
};

TEST_F(FailuresTest, HandlerErrorIs502WithTypeMessageAndRequestId) {
  DeployPython("raiser", "def handler(e, c):\n    raise ValueError('bad input: ' + str(e['x']))\n");
  auto r = server_->Invoke("raiser", R"({"x":42})");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "ValueError");
  EXPECT_EQ(JsonField(r.body, "errorMessage"), "bad input: 42");
  EXPECT_EQ(JsonField(r.body, "requestId"), r.Header("x-thaw-request-id"));
  EXPECT_NE(JsonField(r.body, "stackTrace").find("app.py"), std::string::npos) << r.body;
  // A handled error leaves the instance warm.
  auto again = server_->Invoke("raiser", R"({"x":1})");
  EXPECT_EQ(again.status, 502);
  EXPECT_EQ(again.Header("x-thaw-cold-start"), "false");
}

TEST_F(FailuresTest, RuntimeExitMidInvocationIsExitErrorAndInstanceIsReplaced) {
  // Each instance names itself with a random token (in a jail every runtime is PID 1, which
  // ignores signals sent from inside its namespace: a real fault still kills it). Made at its
  // first call, not at import: instances forked from one template share what import made.
  DeployPython("crasher",
               "import ctypes, os, uuid\n"
               "TOKEN = None\n"
               "def handler(e, c):\n"
               "    global TOKEN\n"
               "    TOKEN = TOKEN or uuid.uuid4().hex\n"
               "    if e.get('exit') is not None: os._exit(e['exit'])\n"
               "    if e.get('segv'): ctypes.string_at(0)\n"
               "    return TOKEN\n");
  std::string first_token = server_->Invoke("crasher").body;
  auto exited = server_->Invoke("crasher", R"({"exit":3})");
  EXPECT_EQ(exited.status, 502);
  EXPECT_EQ(JsonField(exited.body, "errorType"), "Runtime.ExitError");
  EXPECT_NE(JsonField(exited.body, "errorMessage").find("exit status 3"), std::string::npos)
      << exited.body;
  auto killed = server_->Invoke("crasher", R"({"segv":true})");
  EXPECT_EQ(killed.status, 502);
  EXPECT_NE(JsonField(killed.body, "errorMessage").find("signal: segmentation fault"),
            std::string::npos)
      << killed.body;
  auto fresh = server_->Invoke("crasher");
  EXPECT_EQ(fresh.status, 200);
  EXPECT_EQ(fresh.Header("x-thaw-cold-start"), "true");
  EXPECT_NE(fresh.body, first_token);
}

TEST_F(FailuresTest, CrashDoesNotDisturbOtherRequests) {
  DeployPython("crasher",
               "import os, time\ndef handler(e, c):\n"
               "    if e.get('exit'): os._exit(1)\n    time.sleep(0.2)\n    return 'ok'\n",
               "max_instances: 4\n");
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return server_->Invoke("crasher"); }));
  }
  auto crash = server_->Invoke("crasher", R"({"exit":1})");
  EXPECT_EQ(crash.status, 502);
  for (auto& c : calls) EXPECT_EQ(c.get().status, 200);
}

// Finds a process on this machine whose command line contains `marker`.
bool ProcessWithArgExists(const std::string& marker) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    auto cmdline = ReadFile(entry.path().string() + "/cmdline");
    if (cmdline.ok() && cmdline->find(marker) != std::string::npos &&
        ProcessAlive(std::stoi(name))) {
      return true;
    }
  }
  return false;
}

TEST_F(FailuresTest, TimeoutKillsTheWholeProcessTree) {
  // The child detaches into its own session, as a daemon would: it must die all the same.
  DeployPython("sleeper",
               "import subprocess, time\n"
               "def handler(e, c):\n"
               "    subprocess.Popen(['/bin/sleep', '61.4242'], start_new_session=True)\n"
               "    time.sleep(30)\n",
               "timeout_s: 1\n");
  auto r = server_->Invoke("sleeper");
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Sandbox.Timedout");
  EXPECT_EQ(JsonField(r.body, "errorMessage"), "Task timed out after 1.00 seconds");
  EXPECT_GE(std::stoi(r.Header("x-thaw-billed-ms")), 1000);
  EXPECT_TRUE(Eventually([&] { return !ProcessWithArgExists("61.4242"); }, 5000));
  // The next call gets a fresh instance.
  auto next = server_->Invoke("sleeper");
  EXPECT_EQ(next.status, 504);
  EXPECT_EQ(next.Header("x-thaw-cold-start"), "true");
  EXPECT_TRUE(Eventually([&] { return !ProcessWithArgExists("61.4242"); }, 5000));
}

TEST_F(FailuresTest, ImportErrorIsImportModuleErrorWithLogTail) {
  DeployPython("noimport",
               "print('loading model weights')\nimport not_a_module\n"
               "def handler(e, c): return 1\n");
  auto r = server_->Invoke("noimport");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.ImportModuleError");
  std::string msg = JsonField(r.body, "errorMessage");
  EXPECT_TRUE(msg.starts_with("Unable to import module 'app': No module named 'not_a_module'"))
      << msg;
  EXPECT_EQ(r.Header("x-thaw-cold-start"), "true");
  EXPECT_NE(msg.find("loading model weights"), std::string::npos) << msg;
}

TEST_F(FailuresTest, BootstrapThatExitsDuringInitIsExitError) {
  dirs_.push_back(
      MakeBundle({{"thaw.yaml", "runtime: provided\n"},
                  {"bootstrap", "#!/bin/sh\necho 'cannot open model.bin' >&2\nexit 4\n"}},
                 {"bootstrap"}));
  ASSERT_EQ(server_->Deploy("quitter", dirs_.back()).status, 201);
  auto r = server_->Invoke("quitter");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.ExitError");
  std::string msg = JsonField(r.body, "errorMessage");
  EXPECT_NE(msg.find("exit status 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open model.bin"), std::string::npos) << msg;
}

TEST_F(FailuresTest, BootstrapThatNeverAsksForWorkHitsTheInitTimeout) {
  auto server = ThawServer::Start({"--init-timeout-ms", "500"});
  std::string dir = MakeBundle(
      {{"thaw.yaml", "runtime: provided\n"}, {"bootstrap", "#!/bin/sh\nexec sleep 60\n"}},
      {"bootstrap"});
  ASSERT_EQ(server->Deploy("stuck", dir).status, 201);
  auto r = server->Invoke("stuck");
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(JsonField(r.body, "errorMessage").find("init did not finish within 500 ms"),
            std::string::npos)
      << r.body;
  RemoveDir(dir);
}

// With the queue timeout no longer than the init timeout, the waiting caller once got 429
// "no instance became free", counted as a throttle.
TEST_F(FailuresTest, AnInitThatNeverEndsIsAnInitErrorNotAThrottle) {
  auto server = ThawServer::Start({"--init-timeout-ms", "500", "--queue-timeout-ms", "500"});
  std::string dir = MakeBundle(
      {{"thaw.yaml", "runtime: provided\n"}, {"bootstrap", "#!/bin/sh\nexec sleep 60\n"}},
      {"bootstrap"});
  ASSERT_EQ(server->Deploy("stuck", dir).status, 201);
  auto r = server->Invoke("stuck");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.InitError") << r.body;
  auto metrics = server->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("thaw_init_failures_total{function=\"stuck\"} 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("thaw_throttles_total{function=\"stuck\"} 0"), std::string::npos);
  RemoveDir(dir);
}

// min_instances with an init that fails: restarted with back-off (not at once, forever), shown
// as failing, and the inits' time and CPU metered.
TEST_F(FailuresTest, AFailingWarmInitBacksOffShowsAsFailingAndIsMetered) {
  DeployPython("broken",
               "import time\nt = time.time()\nwhile time.time() - t < 0.05: pass\n"
               "raise RuntimeError('no model')\ndef handler(e, c): return 1\n",
               "min_instances: 1\n");
  auto failures = [&] {
    auto body = server_->Call("GET", "/v1/functions/broken").body;
    auto v = json::parse(body).as_object();
    return v.contains("init_failures_in_a_row") ? v["init_failures_in_a_row"].as_int64() : 0;
  };
  ASSERT_TRUE(Eventually([&] { return failures() >= 2; }, 20'000));
  const auto second = std::chrono::steady_clock::now();
  auto f = json::parse(server_->Call("GET", "/v1/functions/broken").body).as_object();
  EXPECT_EQ(f["state"].as_string(), "failing");
  EXPECT_NE(std::string(f["last_init_error"].as_string()).find("no model"), std::string::npos);
  ASSERT_TRUE(Eventually([&] { return failures() >= 3; }, 20'000));
  // After two failures in a row the next start waits 2 s (1 s after the first).
  EXPECT_GE(std::chrono::steady_clock::now() - second, std::chrono::milliseconds(1500));
  auto metrics = server_->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("thaw_function_init_failures_in_a_row{function=\"broken\"} "),
            std::string::npos);
  // Each failed init is metered when its runtime has exited, just after it was reported.
  json::object usage, row;
  EXPECT_TRUE(Eventually(
      [&] {
        usage = json::parse(server_->Call("GET", "/v1/usage?function=broken").body).as_object();
        row = usage["functions"].as_array().at(0).as_object();
        return row["init_failures"].as_int64() >= 3;
      },
      10'000))
      << usage;
  EXPECT_EQ(row["invocations"].as_int64(), 0);
  EXPECT_GE(row["billed_ms"].as_int64(), 150);  // three inits of 50 ms or more
  EXPECT_GT(row["cpu_us"].as_int64(), 0);
}

// The runtime got 413 at once, but its caller waited for the deadline (and was billed for it);
// at 100 MB the caller got a Runtime.ExitError with no word of size.
TEST_F(FailuresTest, AnOversizeResponseIsAnsweredAtOnceWithItsSize) {
  DeployPython("big", "def handler(e, c):\n    return 'x' * e['n']\n",
               "timeout_s: 30\nmemory_mb: 1024\n");
  for (int64_t n : {10'000'000, 100'000'000}) {
    auto r = server_->Invoke("big", "{\"n\":" + std::to_string(n) + "}");
    EXPECT_EQ(r.status, 502) << r.body.substr(0, 300);
    EXPECT_EQ(JsonField(r.body, "errorType"), "Function.ResponseSizeTooLarge") << n;
    EXPECT_NE(JsonField(r.body, "errorMessage").find("6291456 bytes"), std::string::npos) << r.body;
    EXPECT_LT(std::stoll(r.Header("x-thaw-billed-ms")), 10'000) << n;  // not the 30 s deadline
  }
  EXPECT_EQ(server_->Invoke("big", "{\"n\":3}").body, "\"xxx\"");
}

// A function printing without end once took thaw's memory to gigabytes and slowed every other
// function. Now its own full pipe slows it to log_rate_bytes, and nothing it printed is lost.
TEST_F(FailuresTest, APrinterFasterThanTheLogRateIsSlowedNotDropped) {
  auto server = ThawServer::Start({"--log-rate-bytes", "262144"});
  std::string dir = PythonBundle("chatty",
                                 "import sys\n"
                                 "def handler(e, c):\n"
                                 "    for i in range(1000):\n"
                                 "        print(str(i).rjust(999, '.'))\n"
                                 "    sys.stdout.flush()\n"
                                 "    return 'done'\n",
                                 "timeout_s: 30\n");
  ASSERT_EQ(server->Deploy("chatty", dir).status, 201);
  auto r = server->Invoke("chatty");
  EXPECT_EQ(r.body, "\"done\"");
  // 1 MB at 256 KB/s, less the first second's burst and a pipe's worth: 2.5 s at least.
  EXPECT_GE(std::stoll(r.Header("x-thaw-billed-ms")), 2000);
  // Its last lines may still wait in the pipe, read at the rate: all of them arrive.
  EXPECT_TRUE(Eventually(
      [&] {
        return server->Call("GET", "/v1/functions/chatty/logs?limit=2000")
                   .body.find(std::string(996, '.') + "999") != std::string::npos;
      },
      10'000));
  auto logs = server->Call("GET", "/v1/functions/chatty/logs?limit=2000").body;
  EXPECT_NE(logs.find("\"" + std::string(998, '.') + "0\""), std::string::npos);  // the first
  RemoveDir(dir);
}

TEST_F(FailuresTest, MissingBootstrapIsRefusedAtDeploy) {
  dirs_.push_back(MakeBundle({{"thaw.yaml", "runtime: provided\n"}}));
  auto r = server_->Deploy("nothing", dirs_.back());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bootstrap"), std::string::npos);
}

TEST_F(FailuresTest, UnknownFunctionIs404) {
  auto r = server_->Invoke("nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(JsonField(r.body, "errorType"), "ResourceNotFoundException");
  EXPECT_EQ(JsonField(r.body, "requestId"), r.Header("x-thaw-request-id"));
}

TEST_F(FailuresTest, MalformedHttpGetsA400) {
  std::string reply = RawExchange(server_->url(),
                                  "GET /v1/functions HTTP/1.1\r\n"
                                  "Content-Length: abc\r\n\r\n");
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 400")) << reply;
  EXPECT_NE(reply.find("InvalidRequestContentException"), std::string::npos) << reply;
}

// The data dir on a small tmpfs of its own (root only), so the disk can really fill up.
class DiskFullTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs as the data dir";
    char tmpl[] = "/tmp/thaw-diskfull-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    mount_ = tmpl;
    ASSERT_EQ(::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=24m"), 0) << strerror(errno);
    mounted_ = true;
    server_ = ThawServer::Start({}, mount_ + "/data");
  }
  void TearDown() override {
    server_.reset();
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
    if (!mount_.empty()) ::rmdir(mount_.c_str());
    ServerTest::TearDown();
  }
  // Writes a file until the disk refuses more.
  void Fill() {
    std::string block(1 << 16, 'f');
    int fd = ::open((mount_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  std::string mount_;
  bool mounted_ = false;
};

// Regression: a deploy that filled the disk was 500; it is 507, and leaves nothing behind.
TEST_F(DiskFullTest, DeployThatFillsTheDiskIs507AndTheNextDeployWorks) {
  std::mt19937_64 rng(7);
  std::string noise(32 << 20, '\0');  // incompressible: the upload is as big as what it unpacks
  for (size_t i = 0; i + 8 <= noise.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&noise[i], &v, 8);
  }
  dirs_.push_back(PythonBundle("big", "def handler(e, c):\n    return 1\n"));
  { std::ofstream(dirs_.back() + "/noise.bin", std::ios::binary) << noise; }
  auto r = server_->Deploy("big", dirs_.back());
  EXPECT_EQ(r.status, 507) << r.body;
  EXPECT_NE(r.body.find("No space left on device"), std::string::npos) << r.body;
  DeployPython("small", "def handler(e, c):\n    return 1\n");
  EXPECT_EQ(server_->Invoke("small").status, 200);
}

// Regression: function log lines the disk refused were dropped without a count. Once there is
// room again, the function's log file says how many it lacks.
TEST_F(DiskFullTest, LogLinesRefusedByAFullDiskAreCountedInTheFile) {
  DeployPython("talker",
               "def handler(e, c):\n"
               "    for i in range(e.get('n', 1)): print('line', i, flush=True)\n"
               "    return 1\n");
  ASSERT_EQ(server_->Invoke("talker").status, 200);
  const std::string log = server_->data_dir() + "/logs/talker.log";
  ASSERT_TRUE(Eventually([&] { return ReadFile(log).ok(); }, 10'000));
  Fill();
  server_->Invoke("talker", R"({"n": 50})");  // its answer may suffer too; its lines are counted
  // The count is written only once the disk has room, so make some after the lines were tried.
  ASSERT_TRUE(Eventually(
      [&] { return server_->Output().find("log lines dropped") != std::string::npos; }, 10'000))
      << server_->Output();
  ASSERT_EQ(::unlink((mount_ + "/filler").c_str()), 0);
  std::string text;
  EXPECT_TRUE(Eventually(
      [&] {
        auto t = ReadFile(log);
        text = t.ok() ? *t : "";
        return text.find(" log lines were not written here: failed to write") != std::string::npos;
      },
      10'000))
      << text;
  EXPECT_NE(text.find("No space left on device"), std::string::npos) << text;
  auto metrics = server_->Call("GET", "/metrics");
  EXPECT_EQ(metrics.body.find("thaw_log_lines_dropped_total{reason=\"write_failed\"} 0\n"),
            std::string::npos)
      << metrics.body;
}

}  // namespace
}  // namespace thaw::testing

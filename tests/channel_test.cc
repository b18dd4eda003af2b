// The native channel (runtime_api/channel_frame.h): thaw's own runtimes (C++ SDK, python3, nodejs)
// take events and answer on an inherited socketpair instead of the HTTP Runtime API. Calls,
// errors, context fields, streaming (still over HTTP), init errors, an instance's death
// mid-call, a response over the limit, an unmodified HTTP runtime served beside channel ones,
// the same runtimes with the channel off (runtime_channel=false), and a channel moving to the
// shard its calls come from.
#include <gtest/gtest.h>
#include <sched.h>

#include <boost/json.hpp>
#include <future>
#include <string>
#include <vector>

#include "raw_conn.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kChannelCpp = std::string(THAW_BUILD_DIR) + "/tests/channel-cpp";

// Reports the context it got and the address families of the sockets its process holds.
constexpr char kPythonProbe[] =
    "import os, socket, json\n"
    "def families():\n"
    "    out = []\n"
    "    for fd in sorted(os.listdir('/proc/self/fd')):\n"
    "        try:\n"
    "            s = socket.socket(fileno=os.dup(int(fd)))\n"
    "        except OSError:\n"
    "            continue\n"
    "        out.append('unix' if s.family == socket.AF_UNIX else 'inet')\n"
    "        s.close()\n"
    "    return ','.join(sorted(out))\n"
    "def handler(e, c):\n"
    "    if e.get('fail'): raise ValueError('asked to fail')\n"
    "    if e.get('exit') is not None: os._exit(e['exit'])\n"
    "    if e.get('stream'):\n"
    "        return (x for x in ['a', 'b', 'c'])\n"
    "    return {'request_id': c.aws_request_id, 'remaining_ms': "
    "c.get_remaining_time_in_millis(),\n"
    "            'arn': c.invoked_function_arn,\n"
    "            'custom': c.client_context.custom if c.client_context else None,\n"
    "            'trace_id': os.environ.get('_X_AMZN_TRACE_ID', ''),\n"
    "            'channel_env': os.environ.get('THAW_CHANNEL_FD'), 'sockets': families()}\n";

// An unmodified Lambda runtime: HTTP only, whatever it inherits.
constexpr char kHttpRuntime[] = R"(#!/usr/bin/python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    out = json.dumps({"http": True, "request_id": rid, "n": event.get("n")}).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=out,
                                                  method="POST")).read()
)";

// The same probe in node: a socket is "unix" when /proc/net/unix lists its inode.
constexpr char kNodeProbe[] = R"(import fs from 'node:fs';
function sockets() {
  const unix = new Set(fs.readFileSync('/proc/net/unix', 'latin1').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/)[6]).filter(Boolean));
  const out = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let link;
    try { link = fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) out.push(unix.has(m[1]) ? 'unix' : 'inet');
  }
  return out.sort().join(',');
}
export const handler = async (event, context) => {
  if (event.fail) throw new TypeError('asked to fail');
  if (event.exit) process.exit(event.exit);
  return { request_id: context.awsRequestId, remaining_ms: context.getRemainingTimeInMillis(),
           arn: context.invokedFunctionArn, custom: context.clientContext?.custom ?? null,
           channel_env: process.env.THAW_CHANNEL_FD ?? null, sockets: sockets() };
};
)";

class ChannelTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(Flags()); }
  static std::vector<std::string> Flags(std::vector<std::string> more = {}) {
    std::vector<std::string> flags = {"--init-timeout-ms", "60000", "--queue-timeout-ms", "60000"};
    flags.insert(flags.end(), more.begin(), more.end());
    return flags;
  }
  void DeployCpp(const std::string& name, const std::string& yaml = "") {
    std::string dir = MakeBundle({{"thaw.yaml", "runtime: cpp\ntimeout_s: 9\n" + yaml}});
    dirs_.push_back(dir);
    ASSERT_EQ(std::system(("cp " + kChannelCpp + "/bootstrap " + dir + "/").c_str()), 0);
    auto r = server_->Deploy(name, dir);
    ASSERT_EQ(r.status, 201) << r.body;
  }
  json::object InvokeJson(const std::string& name, const std::string& payload = "{}") {
    auto r = server_->Call("POST", "/v1/functions/" + name + "/invoke", payload,
                           {{"X-Thaw-Client-Context", R"({"custom":{"a":1}})"}});
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return {};
    json::object o = json::parse(r.body).as_object();
    o["x_request_id"] = r.Header("x-thaw-request-id");
    return o;
  }
};

TEST_F(ChannelTest, CppCallsCarryTheirContextOverTheChannel) {
  DeployCpp("cpp");
  for (int i = 0; i < 3; ++i) {
    json::object o = InvokeJson("cpp", R"({"n":1})");
    ASSERT_FALSE(o.empty());
    // The SDK never opened the HTTP Runtime API: its only socket is the channel.
    EXPECT_EQ(o["sockets"].as_string(), "unix") << json::serialize(o);
    EXPECT_EQ(o["request_id"].as_string(), o["x_request_id"].as_string());
    EXPECT_GT(o["remaining_ms"].as_int64(), 7000);
    EXPECT_LE(o["remaining_ms"].as_int64(), 9000);
    EXPECT_NE(std::string(o["arn"].as_string()).find(":function:cpp"), std::string::npos);
    EXPECT_EQ(std::string(o["trace_id"].as_string()).rfind("Root=1-", 0), 0u);
    EXPECT_EQ(o["client_context"].as_string(), R"({"custom":{"a":1}})");
    EXPECT_EQ(o["payload"].as_string(), R"({"n":1})");
  }
}

TEST_F(ChannelTest, CppErrorsAndDeathMidCall) {
  DeployCpp("cpp");
  auto failed = server_->Invoke("cpp", R"({"fail":1})");
  EXPECT_EQ(failed.status, 502);
  EXPECT_EQ(JsonField(failed.body, "errorType"), "TestFailure");
  EXPECT_EQ(JsonField(failed.body, "errorMessage"), "asked to fail");
  // The instance answered its error and went on to the next event.
  EXPECT_EQ(server_->Invoke("cpp").status, 200);
  EXPECT_EQ(server_->Invoke("cpp").Header("x-thaw-cold-start"), "false");
  auto exited = server_->Invoke("cpp", R"({"exit":1})");
  EXPECT_EQ(exited.status, 502);
  EXPECT_EQ(JsonField(exited.body, "errorType"), "Runtime.ExitError");
  EXPECT_NE(JsonField(exited.body, "errorMessage").find("exit status 3"), std::string::npos)
      << exited.body;
  auto fresh = server_->Invoke("cpp");
  EXPECT_EQ(fresh.status, 200);
  EXPECT_EQ(fresh.Header("x-thaw-cold-start"), "true");
}

TEST_F(ChannelTest, ResponseOverTheLimitIsTheCallersError) {
  server_ = ThawServer::Start(Flags({"--max-payload-bytes", "4096"}));
  DeployCpp("cpp");
  for (const char* size : {"big", "huge", "big"}) {
    auto r = server_->Invoke("cpp", std::string("{\"") + size + "\":1}");
    EXPECT_EQ(r.status, 502) << size << ": " << r.body.substr(0, 200);
    EXPECT_EQ(JsonField(r.body, "errorType"), "Function.ResponseSizeTooLarge") << size;
    // The frame was skipped whole: the same instance serves the next call.
    auto next = server_->Invoke("cpp");
    EXPECT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.Header("x-thaw-cold-start"), "false");
  }
}

TEST_F(ChannelTest, HttpRuntimeServedBesideChannelOnes) {
  DeployCpp("cpp", "concurrency: 1\n");
  dirs_.push_back(MakeBundle({{"thaw.yaml", "runtime: provided\n"}, {"bootstrap", kHttpRuntime}},
                             {"bootstrap"}));
  ASSERT_EQ(server_->Deploy("http", dirs_.back()).status, 201);
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 12; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      return server_->Invoke(i % 2 ? "http" : "cpp", "{\"n\":" + std::to_string(i) + "}");
    }));
  }
  for (int i = 0; i < 12; ++i) {
    HttpResult r = calls[i].get();
    ASSERT_EQ(r.status, 200) << r.body;
    json::object o = json::parse(r.body).as_object();
    // Each call reached its own function's instance, with its own request id.
    EXPECT_EQ(o["request_id"].as_string(), r.Header("x-thaw-request-id"));
    if (i % 2) {
      EXPECT_EQ(o["n"].as_int64(), i);
      EXPECT_TRUE(o["http"].as_bool());
    } else {
      EXPECT_EQ(o["payload"].as_string(), "{\"n\":" + std::to_string(i) + "}");
      EXPECT_EQ(o["sockets"].as_string(), "unix");
    }
  }
}

TEST_F(ChannelTest, PythonCallsErrorsStreamsAndDeathOverTheChannel) {
  DeployPython("py", kPythonProbe, "timeout_s: 9\n");
  for (int i = 0; i < 2; ++i) {
    json::object o = InvokeJson("py");
    ASSERT_FALSE(o.empty());
    // The channel, and the Runtime API connection kept for streamed answers (made at start,
    // so a runtime that dies mid-stream has been admitted already).
    EXPECT_EQ(o["sockets"].as_string(), "inet,unix") << json::serialize(o);
    EXPECT_TRUE(o["channel_env"].is_null());  // taken out of the function's environment
    EXPECT_EQ(o["request_id"].as_string(), o["x_request_id"].as_string());
    EXPECT_GT(o["remaining_ms"].as_int64(), 7000);
    EXPECT_NE(std::string(o["arn"].as_string()).find(":function:py"), std::string::npos);
    EXPECT_EQ(json::serialize(o["custom"]), R"({"a":1})");
    EXPECT_EQ(std::string(o["trace_id"].as_string()).rfind("Root=1-", 0), 0u);
  }
  auto failed = server_->Invoke("py", R"({"fail":1})");
  EXPECT_EQ(failed.status, 502);
  EXPECT_EQ(JsonField(failed.body, "errorType"), "ValueError");
  auto streamed = server_->Invoke("py", R"({"stream":1})");
  EXPECT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.body, "abc");
  EXPECT_EQ(server_->Invoke("py").status, 200);
  auto exited = server_->Invoke("py", R"({"exit":3})");
  EXPECT_EQ(exited.status, 502);
  EXPECT_EQ(JsonField(exited.body, "errorType"), "Runtime.ExitError");
  EXPECT_EQ(server_->Invoke("py").status, 200);
}

TEST_F(ChannelTest, NodeCallsErrorsAndDeathOverTheChannel) {
  dirs_.push_back(
      MakeBundle({{"thaw.yaml", "runtime: nodejs\nhandler: index.handler\ntimeout_s: 9\n"},
                  {"index.mjs", kNodeProbe}}));
  ASSERT_EQ(server_->Deploy("node", dirs_.back()).status, 201);
  for (int i = 0; i < 2; ++i) {
    json::object o = InvokeJson("node");
    ASSERT_FALSE(o.empty());
    EXPECT_EQ(o["sockets"].as_string(), "unix") << json::serialize(o);
    EXPECT_TRUE(o["channel_env"].is_null());
    EXPECT_EQ(o["request_id"].as_string(), o["x_request_id"].as_string());
    EXPECT_GT(o["remaining_ms"].as_int64(), 7000);
    EXPECT_NE(std::string(o["arn"].as_string()).find(":function:node"), std::string::npos);
    EXPECT_EQ(json::serialize(o["custom"]), R"({"a":1})");
  }
  auto failed = server_->Invoke("node", R"({"fail":1})");
  EXPECT_EQ(failed.status, 502);
  EXPECT_EQ(JsonField(failed.body, "errorType"), "TypeError");
  EXPECT_EQ(server_->Invoke("node").Header("x-thaw-cold-start"), "false");
  auto exited = server_->Invoke("node", R"({"exit":3})");
  EXPECT_EQ(exited.status, 502);
  EXPECT_EQ(JsonField(exited.body, "errorType"), "Runtime.ExitError");
  EXPECT_EQ(server_->Invoke("node").status, 200);
}

TEST_F(ChannelTest, PythonInitErrorOverTheChannel) {
  server_ = ThawServer::Start(Flags({"--templates", "false"}));
  DeployPython("broken", "raise RuntimeError('no model')\n");
  auto r = server_->Invoke("broken");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "RuntimeError") << r.body;
  EXPECT_NE(r.body.find("no model"), std::string::npos) << r.body;
}

// Issue 9: a keep-alive connection that another shard than its instance's serves pulls the
// instance's channel over after a few calls (runtime_api/shard_affinity.h), so its calls stop
// crossing threads; calls from either shard still work after the move.
TEST_F(ChannelTest, ChannelMovesToTheShardItsCallsComeFrom) {
  server_ = ThawServer::Start(Flags({"--threads", "2", "--log-level", "debug"}));
  DeployCpp("affine");
  ASSERT_EQ(server_->Invoke("affine").status, 200);  // starts the instance on one shard
  const std::string moved = "native channel moved to shard";
  // The kernel spreads connections over the shards' acceptors (SO_REUSEPORT): fresh ones until
  // one lands on the other shard (2^-24 that none does).
  for (int conn = 0; conn < 24 && server_->Output().find(moved) == std::string::npos; ++conn) {
    RawConn c(server_->url());
    for (int i = 0; i < 6; ++i) {
      const std::string mark = "mark-" + std::to_string(conn) + "-" + std::to_string(i);
      const std::string body = "{\"m\":\"" + mark + "\"}";
      ASSERT_TRUE(
          c.Send("POST /v1/functions/affine/invoke HTTP/1.1\r\nHost: t\r\n"
                 "Authorization: Bearer " +
                 server_->key() + "\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body));
      ASSERT_TRUE(c.ReadUntil(mark)) << c.received();
    }
    EXPECT_EQ(c.received().find("HTTP/1.1 5"), std::string::npos) << c.received();
  }
  EXPECT_TRUE(server_->WaitForOutput(moved, 5000)) << server_->Output();
  for (int i = 0; i < 8; ++i) {
    json::object o = InvokeJson("affine", "{\"after\":" + std::to_string(i) + "}");
    EXPECT_TRUE(o.contains("request_id"));
  }
}

// The CPUs this process may run on, as the test function reports its own ("0,1"...).
std::vector<std::string> AllowedCpuNames() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<std::string> out;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) out.push_back(std::to_string(cpu));
  }
  return out;
}

// The last "cpus" a response in `received` reported.
std::string LastCpus(const std::string& received) {
  const std::string key = "\"cpus\":\"";
  const size_t at = received.rfind(key);
  if (at == std::string::npos) return "";
  const size_t from = at + key.size();
  return received.substr(from, received.find('"', from) - from);
}

// pin_shards + pin_instances: a one-vCPU instance runs on its shard's CPU only, and follows its
// channel to the other shard's CPU when the channel moves; a larger function runs anywhere.
TEST_F(ChannelTest, PinnedInstanceRunsOnItsShardsCpu) {
  const std::vector<std::string> cpus = AllowedCpuNames();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to tell a pinned instance apart";
  server_ = ThawServer::Start(Flags({"--threads", "2", "--pin-shards", "true", "--pin-instances",
                                     "true", "--log-level", "debug"}));
  DeployCpp("small");
  DeployCpp("large", "memory_mb: 2048\n");
  std::string all;
  for (const auto& c : cpus) all += (all.empty() ? "" : ",") + c;
  EXPECT_EQ(InvokeJson("large")["cpus"].as_string(), all);
  const std::string first(InvokeJson("small")["cpus"].as_string());
  EXPECT_TRUE(first == cpus[0] || first == cpus[1]) << first;
  // Fresh connections until one lands on the other shard and pulls the channel there.
  const std::string moved = "native channel moved to shard ";
  for (int conn = 0; conn < 24; ++conn) {
    RawConn c(server_->url());
    int sent = 0;
    const auto call = [&] {
      const std::string mark = "mark-" + std::to_string(conn) + "-" + std::to_string(sent++);
      const std::string body = "{\"m\":\"" + mark + "\"}";
      return c.Send(
                 "POST /v1/functions/small/invoke HTTP/1.1\r\nHost: t\r\n"
                 "Authorization: Bearer " +
                 server_->key() + "\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body) &&
             c.ReadUntil(mark);
    };
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(call()) << c.received();
    const std::string out = server_->Output();
    const size_t at = out.rfind(moved);
    if (at == std::string::npos) continue;
    // This connection's calls come from the channel's shard now: its CPU is theirs. (The pin
    // follows the move's log line on the old shard's thread: a call or two may beat it.)
    const int shard = std::atoi(out.c_str() + at + moved.size());
    ASSERT_TRUE(shard == 0 || shard == 1) << out.substr(at, 80);
    const std::string want = cpus[static_cast<size_t>(shard)];
    for (int i = 0; i < 5 && LastCpus(c.received()) != want; ++i) ASSERT_TRUE(call());
    EXPECT_EQ(LastCpus(c.received()), want) << c.received();
    EXPECT_NE(want, first);
    return;
  }
  FAIL() << "no connection landed on the other shard in 24 tries";
}

// Over the HTTP Runtime API the C++ SDK sends each answer and its next GET in one write
// (pipelined): answers, errors and their request ids stay in step call after call.
TEST_F(ChannelTest, CppSdkPipelinesAnswerAndNextOverHttp) {
  server_ = ThawServer::Start(Flags({"--runtime-channel", "false"}));
  DeployCpp("cpp");
  for (int i = 0; i < 6; ++i) {
    if (i % 3 == 2) {
      EXPECT_EQ(server_->Invoke("cpp", R"({"fail":1})").status, 502) << i;
      continue;
    }
    json::object o = InvokeJson("cpp", "{\"n\":" + std::to_string(i) + "}");
    ASSERT_TRUE(o.contains("request_id")) << i;
    EXPECT_EQ(o["request_id"].as_string(), o["x_request_id"].as_string()) << i;
    EXPECT_EQ(o["sockets"].as_string(), "inet") << i;
    EXPECT_NE(o["payload"].as_string().find("\"n\":" + std::to_string(i)), json::string::npos);
  }
}

TEST_F(ChannelTest, FullStartsAndChannelOffServeToo) {
  for (const char* flag : {"--templates", "--runtime-channel"}) {
    server_ = ThawServer::Start(Flags({flag, "false"}));
    DeployPython("py", kPythonProbe);
    DeployCpp("cpp");
    const bool channel = std::string(flag) == "--templates";
    json::object py = InvokeJson("py");
    EXPECT_EQ(py["sockets"].as_string(), channel ? "inet,unix" : "inet") << flag;
    EXPECT_EQ(py["request_id"].as_string(), py["x_request_id"].as_string());
    json::object cpp = InvokeJson("cpp");
    EXPECT_EQ(cpp["sockets"].as_string(), channel ? "unix" : "inet") << flag;
    EXPECT_EQ(server_->Invoke("py", R"({"fail":1})").status, 502);
    EXPECT_EQ(server_->Invoke("cpp", R"({"fail":1})").status, 502);
  }
}

}  // namespace
}  // namespace thaw::testing

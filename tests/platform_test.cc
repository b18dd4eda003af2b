// Integration tests of the platform core against the real server and real runtimes: deploy,
// invoke, versions, auth, the Runtime API contract, logs, usage, persistence and shutdown.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <future>
#include <regex>

#include "common/files.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kHelloCpp = std::string(THAW_BUILD_DIR) + "/examples/hello-cpp";
const std::string kHelloPython = std::string(THAW_SOURCE_DIR) + "/examples/hello-python";

class PlatformTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
  std::unique_ptr<ThawServer> server_;
};

TEST_F(PlatformTest, HelloCppColdThenWarm) {
  auto d = server_->Deploy("hello-cpp", kHelloCpp);
  ASSERT_EQ(d.status, 201) << d.body;
  EXPECT_EQ(JsonField(d.body, "version"), "1");
  auto first = server_->Invoke("hello-cpp", R"({"name":"ada"})");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.body, R"({"message":"hello, ada"})");
  EXPECT_EQ(first.Header("x-thaw-cold-start"), "true");
  EXPECT_GT(std::stod(first.Header("x-thaw-init-ms")), 0.0);
  EXPECT_GE(std::stoi(first.Header("x-thaw-billed-ms")), 1);
  EXPECT_EQ(first.Header("x-thaw-request-id").size(), 36u);
  auto second = server_->Invoke("hello-cpp", R"({"name":"bob"})");
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(second.body, R"({"message":"hello, bob"})");
  EXPECT_EQ(second.Header("x-thaw-cold-start"), "false");
  EXPECT_NE(first.Header("x-thaw-request-id"), second.Header("x-thaw-request-id"));
}

TEST_F(PlatformTest, HelloPythonGetsLambdaContext) {
  ASSERT_EQ(server_->Deploy("hello-python", kHelloPython).status, 201);
  auto r = server_->Invoke("hello-python", R"({"name":"ada"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(JsonField(r.body, "message"), "hello, ada");
  EXPECT_EQ(JsonField(r.body, "request_id"), r.Header("x-thaw-request-id"));
  EXPECT_EQ(JsonField(r.body, "function"), "hello-python");
  int remaining = std::stoi(JsonField(r.body, "remaining_ms"));
  EXPECT_GT(remaining, 5000);
  EXPECT_LE(remaining, 10000);
}

TEST_F(PlatformTest, EveryCallNeedsTheKey) {
  struct stat st;
  ASSERT_EQ(::stat((server_->data_dir() + "/admin.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto none = server_->Call("GET", "/v1/functions", "", {}, /*auth=*/false);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(JsonField(none.body, "errorType"), "UnauthorizedException");
  EXPECT_FALSE(none.Header("x-thaw-request-id").empty());
  auto wrong = server_->Call("POST", "/v1/functions/x/invoke", "{}",
                             {{"Authorization", "Bearer thaw_wrong"}}, false);
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(server_->Call("GET", "/v1/functions").status, 200);
  EXPECT_EQ(server_->Call("GET", "/healthz", "", {}, false).status, 200);
}

TEST_F(PlatformTest, VersionsAndQualifiers) {
  std::string v1 = PythonBundle("greeter", "def handler(e, c):\n    return 'one'\n");
  std::string v2 = PythonBundle("greeter", "def handler(e, c):\n    return 'two'\n");
  ASSERT_EQ(server_->Deploy("greeter", v1).status, 201);
  EXPECT_EQ(server_->Invoke("greeter").body, "\"one\"");
  auto d2 = server_->Deploy("greeter", v2);
  ASSERT_EQ(d2.status, 201);
  EXPECT_EQ(JsonField(d2.body, "version"), "2");
  EXPECT_EQ(server_->Invoke("greeter").body, "\"two\"");
  EXPECT_EQ(server_->Invoke("greeter", "{}", "$LATEST").body, "\"two\"");
  auto old = server_->Invoke("greeter", "{}", "1");
  EXPECT_EQ(old.body, "\"one\"");
  EXPECT_EQ(old.Header("x-thaw-version"), "1");
  EXPECT_EQ(server_->Invoke("greeter", "{}", "7").status, 404);
  auto get = server_->Call("GET", "/v1/functions/greeter");
  ASSERT_EQ(get.status, 200);
  json::object f = json::parse(get.body).as_object();
  EXPECT_EQ(f["versions"].as_array().size(), 2u);
  EXPECT_EQ(f["runtime"].as_string(), "python3");
  EXPECT_TRUE(f.contains("instances"));
  auto list = server_->Call("GET", "/v1/functions");
  EXPECT_NE(list.body.find("\"greeter\""), std::string::npos);
  EXPECT_EQ(server_->Call("DELETE", "/v1/functions/greeter").status, 204);
  auto gone = server_->Invoke("greeter");
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(JsonField(gone.body, "errorType"), "ResourceNotFoundException");
  EXPECT_EQ(server_->Call("DELETE", "/v1/functions/greeter").status, 404);
  RemoveDir(v1);
  RemoveDir(v2);
}

TEST_F(PlatformTest, BadManifestIsRefusedAndLeavesNothing) {
  std::string dir = MakeBundle({{"thaw.yaml",
                                 "runtime: python3\nhandler: app.handler\n"
                                 "memory_mb: lots\n"},
                                {"app.py", "def handler(e, c): return 1\n"}});
  auto r = server_->Deploy("broken", dir);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(JsonField(r.body, "errorMessage").find("memory_mb"), std::string::npos) << r.body;
  EXPECT_EQ(server_->Call("GET", "/v1/functions/broken").status, 404);
  EXPECT_TRUE(std::filesystem::is_empty(server_->data_dir() + "/bundles"));
  EXPECT_TRUE(std::filesystem::is_empty(server_->data_dir() + "/tmp"));
  std::string unknown =
      MakeBundle({{"thaw.yaml", "runtime: python3\nhandler: a.b\ncolour: red\n"}});
  auto u = server_->Deploy("broken", unknown);
  EXPECT_EQ(u.status, 400);
  EXPECT_NE(u.body.find("colour"), std::string::npos);
  std::string no_yaml = MakeBundle({{"app.py", "x = 1\n"}});
  EXPECT_EQ(server_->Deploy("broken", no_yaml).status, 400);
  auto garbage = server_->Call("PUT", "/v1/functions/broken", "this is not an archive");
  EXPECT_EQ(garbage.status, 400);
  EXPECT_NE(garbage.body.find("archive"), std::string::npos);
  auto bad_name = server_->Deploy("bad~name", dir);
  EXPECT_EQ(bad_name.status, 400);
  // TENANT.NAME deploys into a tenant (admin only), which must exist.
  auto no_tenant = server_->Deploy("nope.fn", dir);
  EXPECT_EQ(no_tenant.status, 404);
  EXPECT_NE(no_tenant.body.find("tenant not found: nope"), std::string::npos) << no_tenant.body;
  EXPECT_TRUE(std::filesystem::is_empty(server_->data_dir() + "/bundles"));
  for (auto& d : {dir, unknown, no_yaml}) RemoveDir(d);
}

TEST_F(PlatformTest, PayloadOverSixMegabytesIs413) {
  ASSERT_EQ(server_->Deploy("hello-cpp", kHelloCpp).status, 201);
  std::string big(6 * 1024 * 1024 + 1, 'x');
  auto r = server_->Invoke("hello-cpp", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(JsonField(r.body, "errorType"), "RequestTooLargeException");
  std::string fits = "\"" + std::string(1024 * 1024, 'y') + "\"";
  EXPECT_EQ(server_->Invoke("hello-cpp", fits).status, 200);
}

// The Runtime API contract as a Lambda custom runtime sees it: headers and environment.
TEST_F(PlatformTest, RuntimeApiHeadersAndEnvironment) {
  const std::string bootstrap = R"(#!/usr/bin/python3 -S
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        headers = {k.lower(): v for k, v in r.headers.items()}
        event = r.read().decode()
    out = {"headers": headers, "event": event, "now_ms": int(time.time() * 1000),
           "env": {k: v for k, v in os.environ.items()}}
    rid = headers["lambda-runtime-aws-request-id"]
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response",
                           data=json.dumps(out).encode(), method="POST")).read()
)";
  std::string dir = MakeBundle({{"thaw.yaml",
                                 "runtime: provided.al2023\nhandler: my.handler\n"
                                 "memory_mb: 256\ntimeout_s: 7\n"
                                 "environment: {GREETING: hi}\n"},
                                {"bootstrap", bootstrap}},
                               {"bootstrap"});
  ASSERT_EQ(server_->Deploy("probe", dir).status, 201);
  auto r = server_->Call("POST", "/v1/functions/probe/invoke", R"({"k":1})",
                         {{"X-Thaw-Client-Context", R"({"custom":{"a":1}})"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = json::parse(r.body).as_object();
  json::object h = o["headers"].as_object();
  EXPECT_EQ(h["lambda-runtime-aws-request-id"].as_string(), r.Header("x-thaw-request-id"));
  int64_t deadline = std::stoll(std::string(h["lambda-runtime-deadline-ms"].as_string()));
  int64_t now = o["now_ms"].as_int64();
  EXPECT_GT(deadline - now, 5000);
  EXPECT_LE(deadline - now, 7000);
  EXPECT_NE(
      std::string(h["lambda-runtime-invoked-function-arn"].as_string()).find(":function:probe"),
      std::string::npos);
  EXPECT_TRUE(std::regex_match(std::string(h["lambda-runtime-trace-id"].as_string()),
                               std::regex("Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};"
                                          "Sampled=0")))
      << r.body;
  // Called by version, the runtime sees the qualified ARN and the number, as on Lambda.
  auto by_version = server_->Invoke("probe", "{}", "1");
  ASSERT_EQ(by_version.status, 200) << by_version.body;
  json::object ov = json::parse(by_version.body).as_object();
  json::object hv = ov["headers"].as_object();
  EXPECT_TRUE(std::string(hv["lambda-runtime-invoked-function-arn"].as_string())
                  .ends_with(":function:probe:1"))
      << by_version.body;
  EXPECT_EQ(ov["env"].as_object()["AWS_LAMBDA_FUNCTION_VERSION"].as_string(), "1");
  EXPECT_EQ(h["lambda-runtime-client-context"].as_string(), R"({"custom":{"a":1}})");
  EXPECT_EQ(o["event"].as_string(), R"({"k":1})");
  json::object env = o["env"].as_object();
  EXPECT_EQ(env["_HANDLER"].as_string(), "my.handler");
  EXPECT_EQ(env["AWS_LAMBDA_FUNCTION_NAME"].as_string(), "probe");
  EXPECT_EQ(env["AWS_LAMBDA_FUNCTION_VERSION"].as_string(), "$LATEST");
  EXPECT_EQ(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"].as_string(), "256");
  EXPECT_EQ(env["AWS_REGION"].as_string(), "us-east-1");
  EXPECT_EQ(env["GREETING"].as_string(), "hi");
  EXPECT_TRUE(env.contains("LAMBDA_TASK_ROOT"));
  EXPECT_TRUE(env.contains("AWS_LAMBDA_LOG_STREAM_NAME"));
  // Nothing of thaw's own environment leaks in.
  EXPECT_FALSE(env.contains("THAW_DATA_DIR"));
  RemoveDir(dir);
}

// The custom-runtime bootstrap from AWS's Lambda tutorial (bash + curl), unmodified.
TEST_F(PlatformTest, AwsTutorialShellRuntimeWorksUnmodified) {
  const std::string bootstrap = R"SH(#!/bin/bash
set -euo pipefail
source $LAMBDA_TASK_ROOT/"$(echo $_HANDLER | cut -d. -f1).sh"
while true
do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA")
  curl -sS "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response"  -d "$RESPONSE"
done
)SH";
  const std::string function_sh = R"(function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  RESPONSE="Echoing request: '$EVENT_DATA'"
  echo $RESPONSE
}
)";
  std::string dir = MakeBundle({{"thaw.yaml", "runtime: provided\nhandler: function.handler\n"},
                                {"bootstrap", bootstrap},
                                {"function.sh", function_sh}},
                               {"bootstrap"});
  ASSERT_EQ(server_->Deploy("shell", dir).status, 201);
  auto r = server_->Invoke("shell", R"({"hi":1})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"(Echoing request: '{"hi":1}')");
  EXPECT_EQ(server_->Invoke("shell", "{}").body, "Echoing request: '{}'");
  RemoveDir(dir);
}

TEST_F(PlatformTest, LogsCarryRequestIdsAndReportLines) {
  ASSERT_EQ(server_->Deploy("hello-python", kHelloPython).status, 201);
  auto r = server_->Invoke("hello-python", R"({"name":"zed"})");
  ASSERT_EQ(r.status, 200);
  const std::string rid = r.Header("x-thaw-request-id");
  auto logs = server_->Call("GET", "/v1/functions/hello-python/logs");
  ASSERT_EQ(logs.status, 200);
  json::array lines = json::parse(logs.body).as_object()["lines"].as_array();
  std::vector<std::string> mine;
  for (auto& l : lines) {
    if (l.as_object()["requestId"].as_string() == rid) {
      mine.emplace_back(l.as_object()["message"].as_string());
    }
  }
  ASSERT_EQ(mine.size(), 4u) << logs.body;
  EXPECT_EQ(mine[0], "START RequestId: " + rid + " Version: $LATEST");
  EXPECT_EQ(mine[1], "greeting zed");
  EXPECT_EQ(mine[2], "END RequestId: " + rid);
  EXPECT_TRUE(mine[3].starts_with("REPORT RequestId: " + rid + "\tDuration: ")) << mine[3];
  for (const char* part :
       {"Billed Duration: ", "Memory Size: 256 MB", "Max Memory Used: ", "Init Duration: "}) {
    EXPECT_NE(mine[3].find(part), std::string::npos) << part;
  }
  // Followers ask for what came after the last line they saw.
  int64_t next = json::parse(logs.body).as_object()["next"].as_int64();
  auto after =
      server_->Call("GET", "/v1/functions/hello-python/logs?since=" + std::to_string(next));
  EXPECT_EQ(json::parse(after.body).as_object()["lines"].as_array().size(), 0u);
  // Lines also reach the log file.
  EXPECT_TRUE(Eventually(
      [&] {
        auto text = ReadFile(server_->data_dir() + "/logs/hello-python.log");
        return text.ok() && text->find("greeting zed") != std::string::npos;
      },
      5000));
}

TEST_F(PlatformTest, UsageCountsEveryInvocation) {
  ASSERT_EQ(server_->Deploy("hello-cpp", kHelloCpp).status, 201);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(server_->Invoke("hello-cpp").status, 200);
  auto u = server_->Call("GET", "/v1/usage");
  ASSERT_EQ(u.status, 200);
  json::object row = json::parse(u.body).as_object()["functions"].as_array()[0].as_object();
  EXPECT_EQ(row["function"].as_string(), "hello-cpp");
  EXPECT_EQ(row["invocations"].as_int64(), 5);
  EXPECT_EQ(row["cold_starts"].as_int64(), 1);
  EXPECT_GE(row["billed_ms"].as_int64(), 5);
  EXPECT_EQ(server_->Call("GET", "/v1/usage?from=yesterday").status, 400);
}

TEST_F(PlatformTest, UsageCountsCpuActuallyUsed) {
  std::string dir = PythonBundle("burn",
                                 "import time\ndef handler(e, c):\n"
                                 "    end = time.process_time() + e['cpu']\n"
                                 "    while time.process_time() < end: pass\n"
                                 "    time.sleep(e['idle'])\n");
  ASSERT_EQ(server_->Deploy("burn", dir).status, 201);
  ASSERT_EQ(server_->Invoke("burn", R"({"cpu":0.3,"idle":0.3})").status, 200);
  auto u = server_->Call("GET", "/v1/usage?function=burn");
  json::object row = json::parse(u.body).as_object()["functions"].as_array()[0].as_object();
  double cpu = row["cpu_seconds"].to_number<double>();
  EXPECT_GE(cpu, 0.25) << u.body;  // the busy part is counted...
  EXPECT_LT(cpu, 0.55) << u.body;  // ...the sleep is not
  EXPECT_GE(row["billed_ms"].as_int64(), 600);
  EXPECT_EQ(row["gpu_seconds"].to_number<double>(), 0.0);  // no GPUs scheduled yet
  RemoveDir(dir);
}

TEST(PlatformRestartTest, KillNineKeepsFunctionsAndRecords) {
  auto server = ThawServer::Start();
  const std::string data = server->data_dir();
  ASSERT_EQ(server->Deploy("hello-cpp", kHelloCpp).status, 201);
  ASSERT_EQ(server->Invoke("hello-cpp").status, 200);
  // Records are written in batches: the usage query flushes them first.
  ASSERT_EQ(server->Call("GET", "/v1/usage").status, 200);
  server->Kill9();
  auto again = ThawServer::Start({}, data);
  auto r = again->Invoke("hello-cpp", R"({"name":"back"})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"message":"hello, back"})");
  auto u = again->Call("GET", "/v1/usage");
  EXPECT_NE(u.body.find("\"invocations\":2"), std::string::npos) << u.body;
  again->Stop();
  RemoveDir(data);
}

TEST(PlatformShutdownTest, SigtermFinishesInFlightInvocations) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("slow",
                                 "import time\ndef handler(e, c):\n"
                                 "    time.sleep(0.5)\n    return 'done'\n");
  ASSERT_EQ(server->Deploy("slow", dir).status, 201);
  auto inflight = std::async(std::launch::async, [&] { return server->Invoke("slow"); });
  ASSERT_TRUE(server->WaitForFunction("slow", "\"inflight\":1", 10000));
  int status = server->Stop();
  auto r = inflight.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"done\"");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

namespace thaw::testing {
namespace {

TEST(NodejsTest, HelloNodeAndItsErrorsAndCallbacks) {
  auto server = ThawServer::Start();
  auto d = server->Deploy("hello-node", std::string(THAW_SOURCE_DIR) + "/examples/hello-node");
  ASSERT_EQ(d.status, 201) << d.body;
  auto r = server->Invoke("hello-node", R"({"name":"ada"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(JsonField(r.body, "message"), "hello, ada");
  EXPECT_EQ(JsonField(r.body, "requestId"), r.Header("x-thaw-request-id"));
  std::string dir =
      MakeBundle({{"thaw.yaml", "runtime: nodejs\nhandler: index.handler\n"},
                  {"index.js",
                   "exports.handler = (event, context, callback) => {\n"
                   "  if (event.fail) return callback(new TypeError('no ' + event.fail));\n"
                   "  callback(null, {sum: event.a + event.b});\n};\n"}});
  ASSERT_EQ(server->Deploy("cb", dir).status, 201);
  EXPECT_EQ(server->Invoke("cb", R"({"a":2,"b":3})").body, R"({"sum":5})");
  auto err = server->Invoke("cb", R"({"fail":"way"})");
  EXPECT_EQ(err.status, 502);
  EXPECT_EQ(JsonField(err.body, "errorType"), "TypeError");
  EXPECT_EQ(JsonField(err.body, "errorMessage"), "no way");
  RemoveDir(dir);
}

TEST(MetricsEndpointTest, PrometheusTextThatPromtoolAccepts) {
  auto server = ThawServer::Start();
  ASSERT_EQ(server->Deploy("hello-cpp", kHelloCpp).status, 201);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(server->Invoke("hello-cpp").status, 200);
  EXPECT_EQ(server->Call("GET", "/metrics", "", {}, false).status, 401);
  auto m = server->Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_TRUE(m.Header("content-type").starts_with("text/plain; version=0.0.4"));
  EXPECT_NE(m.body.find("thaw_invocations_total{function=\"hello-cpp\",status=\"success\"} 3\n"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("thaw_cold_starts_total{function=\"hello-cpp\"} 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("thaw_instances{function=\"hello-cpp\",state=\"ready\"} 1\n"),
            std::string::npos);
  std::string path = server->data_dir() + "/metrics.txt";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fwrite(m.body.data(), 1, m.body.size(), f);
    std::fclose(f);
  }
  int status = std::system(("promtool check metrics < " + path + " > /dev/null 2>&1").c_str());
  EXPECT_EQ(status, 0) << m.body;
}

}  // namespace
}  // namespace thaw::testing

namespace thaw::testing {
namespace {

// A runtime may write "here is my response" and "give me the next" in one write: the Runtime
// API answers both, in order, on the one connection.
constexpr char kPipeliningBootstrap[] = R"(#!/usr/bin/python3
import os, socket
host, port = os.environ['AWS_LAMBDA_RUNTIME_API'].split(':')
sock = socket.create_connection((host, int(port)))
reader = sock.makefile('rb')
def answer():
    reader.readline()
    headers = {}
    while True:
        line = reader.readline()
        if line in (b'\r\n', b''):
            break
        key, value = line.decode().split(':', 1)
        headers[key.strip().lower()] = value.strip()
    return headers, reader.read(int(headers.get('content-length', '0')))
NEXT = b'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rt\r\n\r\n'
sock.sendall(NEXT)
headers, event = answer()
while True:
    body = b'{"pipelined":' + event + b'}'
    sock.sendall(b'POST /2018-06-01/runtime/invocation/' +
                 headers['lambda-runtime-aws-request-id'].encode() +
                 b'/response HTTP/1.1\r\nHost: rt\r\nContent-Length: ' +
                 str(len(body)).encode() + b'\r\n\r\n' + body + NEXT)
    answer()  # 202 for the response
    headers, event = answer()
)";

TEST(RuntimeApiTest, APipelinedResponseAndNextAreBothAnswered) {
  auto server = ThawServer::Start();
  std::string dir = MakeBundle(
      {{"thaw.yaml", "runtime: provided\n"}, {"bootstrap", kPipeliningBootstrap}}, {"bootstrap"});
  ASSERT_EQ(server->Deploy("pipelined", dir).status, 201);
  for (int i = 0; i < 3; ++i) {
    auto r = server->Invoke("pipelined", "{\"n\":" + std::to_string(i) + "}");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, "{\"pipelined\":{\"n\":" + std::to_string(i) + "}}");
    EXPECT_EQ(r.Header("x-thaw-cold-start"), i == 0 ? "true" : "false");
  }
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

// Response streaming end to end: python generator handlers through the native invoke, function
// URLs (SSE) and the Lambda API, with mid-stream errors, limits, deadlines, disconnects and
// runtimes that die mid-stream.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "raw_conn.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

std::string Post(const std::string& target, const std::string& body, const std::string& key) {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
         (key.empty() ? "" : "Authorization: Bearer " + key + "\r\n") +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// Chunk 2 carries the wall time it was produced at, half a second after chunk 1.
const std::string kTwoEvents =
    "import time\n"
    "def handler(event, context):\n"
    "    if event.get('rawPath') is not None:\n"
    "        yield {'statusCode': 200, 'headers': {'content-type': 'text/event-stream'}}\n"
    "    yield 'data: one\\n\\n'\n"
    "    time.sleep(0.5)\n"
    "    yield 'data: T=%.6f\\n\\n' % time.time()\n";

double ProducedAt(const std::string& received) {
  auto at = received.find("data: T=");
  return at == std::string::npos ? 0 : std::stod(received.substr(at + 8));
}

class StreamingTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
};

TEST_F(StreamingTest, NativeInvokeForwardsEachChunkBeforeTheNextIsProduced) {
  DeployPython("two", kTwoEvents);
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/two/invoke", "{}", server_->key())));
  ASSERT_TRUE(conn.ReadUntil("data: one")) << conn.received();
  const double first_arrived = WallSeconds();
  conn.ReadToEnd();
  const std::string& got = conn.received();
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Cold-Start: "), std::string::npos) << got;
  const double second_produced = ProducedAt(got);
  ASSERT_GT(second_produced, 0) << got;
  EXPECT_LT(first_arrived, second_produced);
  // Figures known only at the end come as trailers, after the last chunk.
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Billed-Ms: ", last), std::string::npos) << got;
  EXPECT_EQ(got.find("X-Thaw-Function-Error", last), std::string::npos) << got;
}

TEST_F(StreamingTest, FunctionUrlSendsServerSentEventsOneByOne) {
  DeployPython("sse", kTwoEvents, "url_auth: none\n");
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/fn/sse/events", "", "")));
  ASSERT_TRUE(conn.ReadUntil("data: one")) << conn.received();
  const double first_arrived = WallSeconds();
  conn.ReadToEnd();
  const std::string& got = conn.received();
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
  EXPECT_NE(got.find("content-type: text/event-stream"), std::string::npos) << got;
  EXPECT_EQ(got.find("vnd.awslambda"), std::string::npos) << got;  // the prelude is consumed
  const double second_produced = ProducedAt(got);
  ASSERT_GT(second_produced, 0) << got;
  EXPECT_LT(first_arrived, second_produced);
}

TEST_F(StreamingTest, CallersThatDoNotStreamGetTheWholeBody) {
  DeployPython("parts",
               "def handler(event, context):\n"
               "    yield 'a'\n"
               "    yield b'b'\n"
               "    yield 'c'\n");
  auto r = server_->Call("POST", "/2015-03-31/functions/parts/invocations", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "abc");
}

TEST_F(StreamingTest, MidStreamErrorEndsTheStreamWithTrailers) {
  DeployPython("boom",
               "def handler(event, context):\n"
               "    yield 'partial'\n"
               "    raise ValueError('went wrong')\n");
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/boom/invoke", "{}", server_->key())));
  conn.ReadToEnd();
  const std::string& got = conn.received();
  EXPECT_NE(got.find("partial"), std::string::npos) << got;
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Function-Error: ValueError", last), std::string::npos) << got;
  EXPECT_NE(got.find("went wrong", last), std::string::npos) << got;
}

TEST_F(StreamingTest, RuntimeThatDiesMidStreamEndsItWithAnError) {
  DeployPython("dies",
               "import os, sys\n"
               "def handler(event, context):\n"
               "    yield 'before'\n"
               "    sys.stdout.flush()\n"
               "    os._exit(3)\n");
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/dies/invoke", "{}", server_->key())));
  conn.ReadToEnd();
  const std::string& got = conn.received();
  EXPECT_NE(got.find("before"), std::string::npos) << got;
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Function-Error: Runtime.", last), std::string::npos) << got;
}

TEST_F(StreamingTest, DeadlineStillAppliesToAStream) {
  DeployPython("slow",
               "import time\n"
               "def handler(event, context):\n"
               "    yield 'started'\n"
               "    time.sleep(30)\n"
               "    yield 'never'\n",
               "timeout_s: 1\n");
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/slow/invoke", "{}", server_->key())));
  conn.ReadToEnd(15000);
  const std::string& got = conn.received();
  EXPECT_NE(got.find("started"), std::string::npos) << got;
  EXPECT_EQ(got.find("never"), std::string::npos) << got;
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Function-Error: Sandbox.Timedout", last), std::string::npos) << got;
}

TEST_F(StreamingTest, CallerThatDisconnectsFreesTheInstance) {
  // One instance, and a stream that would run to its 60 s deadline.
  DeployPython("endless",
               "import time\n"
               "def handler(event, context):\n"
               "    if event.get('short'):\n"
               "        yield 'short'\n"
               "        return\n"
               "    while True:\n"
               "        yield 'tick\\n'\n"
               "        time.sleep(0.02)\n",
               "timeout_s: 60\nmax_instances: 1\nconcurrency: 1\n");
  std::string first_id;
  {
    RawConn conn(server_->url());
    ASSERT_TRUE(conn.Send(Post("/v1/functions/endless/invoke", "{}", server_->key())));
    ASSERT_TRUE(conn.ReadUntil("tick")) << conn.received();
    auto at = conn.received().find("X-Thaw-Request-Id: ");
    ASSERT_NE(at, std::string::npos);
    first_id = conn.received().substr(at + 19, conn.received().find("\r\n", at) - at - 19);
  }  // closed mid-stream
  // The only instance serves the next call long before the first call's deadline.
  auto r = server_->Invoke("endless", R"({"short":true})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "short");
  // The abandoned call was ended and metered: its REPORT line is written with its record.
  EXPECT_TRUE(Eventually(
      [&] {
        auto logs = server_->Call("GET", "/v1/functions/endless/logs");
        return logs.body.find("REPORT RequestId: " + first_id) != std::string::npos;
      },
      5000));
}

TEST_F(StreamingTest, NodeStreamifyResponseStreamsWithStatusHeadersAndErrors) {
  const std::string code =
      "exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {\n"
      "  const out = awslambda.HttpResponseStream.from(responseStream,\n"
      "      {statusCode: 201, headers: {'content-type': 'text/event-stream'}});\n"
      "  out.write('data: one\\n\\n');\n"
      "  await new Promise((r) => setTimeout(r, 500));\n"
      "  out.write(`data: T=${(Date.now() / 1000).toFixed(6)}\\n\\n`);\n"
      "  if (event.rawPath === '/fail') throw new TypeError('late failure');\n"
      "  out.end();\n"
      "});\n";
  dirs_.push_back(MakeBundle({{"thaw.yaml",
                               "runtime: nodejs\nhandler: index.handler\n"
                               "url_auth: none\n"},
                              {"index.js", code}}));
  ASSERT_EQ(server_->Deploy("nodesse", dirs_.back()).status, 201);
  {
    RawConn conn(server_->url());
    ASSERT_TRUE(conn.Send(Post("/fn/nodesse/ok", "", "")));
    ASSERT_TRUE(conn.ReadUntil("data: one")) << conn.received();
    const double first_arrived = WallSeconds();
    conn.ReadToEnd();
    const std::string& got = conn.received();
    EXPECT_NE(got.find("HTTP/1.1 201"), std::string::npos) << got;
    EXPECT_NE(got.find("content-type: text/event-stream"), std::string::npos) << got;
    const double second_produced = ProducedAt(got);
    ASSERT_GT(second_produced, 0) << got;
    EXPECT_LT(first_arrived, second_produced);
    auto last = got.find("\r\n0\r\n");
    ASSERT_NE(last, std::string::npos) << got;
    EXPECT_EQ(got.find("X-Thaw-Function-Error", last), std::string::npos) << got;
  }
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/fn/nodesse/fail", "", "")));
  conn.ReadToEnd();
  const std::string& got = conn.received();
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Function-Error: TypeError", last), std::string::npos) << got;
  EXPECT_NE(got.find("late failure", last), std::string::npos) << got;
}

TEST_F(StreamingTest, CppSdkWriterStreamsAndReportsLateFailures) {
  std::ifstream in(std::string(THAW_BUILD_DIR) + "/tests/stream-cpp/bootstrap", std::ios::binary);
  ASSERT_TRUE(in.good());
  std::stringstream binary;
  binary << in.rdbuf();
  dirs_.push_back(MakeBundle({{"thaw.yaml", "runtime: provided\n"}, {"bootstrap", binary.str()}},
                             {"bootstrap"}));
  ASSERT_EQ(server_->Deploy("cppstream", dirs_.back()).status, 201);
  {
    RawConn conn(server_->url());
    ASSERT_TRUE(conn.Send(Post("/v1/functions/cppstream/invoke", "{}", server_->key())));
    ASSERT_TRUE(conn.ReadUntil("data: one")) << conn.received();
    const double first_arrived = WallSeconds();
    conn.ReadToEnd();
    const std::string& got = conn.received();
    EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos) << got;
    const double second_produced = ProducedAt(got);
    ASSERT_GT(second_produced, 0) << got;
    EXPECT_LT(first_arrived, second_produced);
  }
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/cppstream/invoke", R"({"fail":1})", server_->key())));
  conn.ReadToEnd();
  const std::string& got = conn.received();
  auto last = got.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << got;
  EXPECT_NE(got.find("X-Thaw-Function-Error: StreamError", last), std::string::npos) << got;
  // The same instance serves the next call: the stream's connection stayed usable.
  auto again = server_->Invoke("cppstream", "{}");
  EXPECT_EQ(again.status, 200) << again.body;
}

TEST_F(StreamingTest, AStreamHoldsItsTenantConcurrencyUntilItEnds) {
  server_->CreateTenant("solo", R"("concurrency":1)");
  dirs_.push_back(PythonBundle("held",
                               "import time\n"
                               "def handler(event, context):\n"
                               "    yield 'tick'\n"
                               "    time.sleep(2)\n"
                               "    yield 'done'\n"));
  ASSERT_EQ(server_->Deploy("solo.held", dirs_.back()).status, 201);
  RawConn conn(server_->url());
  ASSERT_TRUE(conn.Send(Post("/v1/functions/solo.held/invoke", "{}", server_->key())));
  ASSERT_TRUE(conn.ReadUntil("tick")) << conn.received();
  // Still streaming: the tenant's one concurrent call is taken.
  auto second = server_->Invoke("solo.held");
  EXPECT_EQ(second.status, 429) << second.body;
  conn.ReadToEnd();
  EXPECT_NE(conn.received().find("done"), std::string::npos);
}

TEST(StreamingLimitsTest, StreamMayPassMaxPayloadUpToMaxStreamBytes) {
  auto server = ThawServer::Start({"--max-payload-bytes=1024", "--max-stream-bytes=8192"});
  std::string dir = PythonBundle("big",
                                 "def handler(event, context):\n"
                                 "    for i in range(event['n']):\n"
                                 "        yield 'x' * 1000\n");
  ASSERT_EQ(server->Deploy("big", dir).status, 201);
  {
    RawConn conn(server->url());
    ASSERT_TRUE(conn.Send(Post("/v1/functions/big/invoke", R"({"n":4})", server->key())));
    conn.ReadToEnd();
    const std::string& got = conn.received();
    EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
    auto last = got.find("\r\n0\r\n");
    ASSERT_NE(last, std::string::npos) << got;
    EXPECT_EQ(got.find("X-Thaw-Function-Error", last), std::string::npos) << got;
  }
  {
    RawConn conn(server->url());
    ASSERT_TRUE(conn.Send(Post("/v1/functions/big/invoke", R"({"n":20})", server->key())));
    conn.ReadToEnd();
    const std::string& got = conn.received();
    auto last = got.find("\r\n0\r\n");
    ASSERT_NE(last, std::string::npos) << got.substr(0, 400);
    EXPECT_NE(got.find("X-Thaw-Function-Error: Function.ResponseSizeTooLarge", last),
              std::string::npos)
        << got.substr(last);
  }
  // A caller that wants one body still gets at most max_payload_bytes.
  auto whole = server->Call("POST", "/2015-03-31/functions/big/invocations", R"({"n":4})");
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(whole.Header("x-amz-function-error"), "Unhandled");
  EXPECT_NE(whole.body.find("Function.ResponseSizeTooLarge"), std::string::npos) << whole.body;
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

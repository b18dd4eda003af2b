// Dead letters and destinations of Event invocations against the real server: events that
// exhaust their retries stay as dead letters (listed, paged, tenant-scoped, redriven from the
// CLI), and thaw.yaml's on_success webhook gets a signed record, retried with backoff and
// redelivered after a kill -9.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>

#include "server_fixture.h"
#include "webhook_receiver.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

CliResult Thaw(const ThawServer& server, const std::string& args) {
  const std::string cmd = "THAW_SERVER=" + server.url() + " THAW_API_KEY=" + server.key() + " " +
                          THAW_BINARY + " " + args + " 2>&1";
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string EventInvoke(const ThawServer& server, const std::string& name,
                        const std::string& payload) {
  auto r = server.Call("POST", "/2015-03-31/functions/" + name + "/invocations", payload,
                       {{"X-Amz-Invocation-Type", "Event"}});
  EXPECT_EQ(r.status, 202) << r.body;
  return r.Header("x-amzn-requestid");
}

json::array Events(const ThawServer& server, const std::string& name, const std::string& query) {
  auto r = server.Call("GET", "/v1/functions/" + name + "/events" + query);
  EXPECT_EQ(r.status, 200) << r.body;
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec || !v.is_object()) return {};
  return v.as_object()["events"].as_array();
}

std::string StateOf(const ThawServer& server, const std::string& name, const std::string& id) {
  for (const auto& e : Events(server, name, "?limit=1000")) {
    if (e.as_object().at("id").as_string() == id) {
      return std::string(e.as_object().at("state").as_string());
    }
  }
  return "";
}

class DestinationsTest : public ServerTest {
 protected:
  void SetUp() override {
    server_ =
        ThawServer::Start({"--async-retry-base-ms", "20", "--webhook-private-addresses", "true"});
  }
};

TEST_F(DestinationsTest, DeadLettersAreListedPagedScopedAndRedriven) {
  DeployPython("flaky", "def handler(event, context):\n    raise ValueError('not yet')\n");
  auto put = server_->Call("PUT", "/2019-09-25/functions/flaky/event-invoke-config",
                           R"({"MaximumRetryAttempts":0})");
  ASSERT_EQ(put.status, 200) << put.body;
  const std::string first = EventInvoke(*server_, "flaky", R"({"n":1})");
  const std::string second = EventInvoke(*server_, "flaky", R"({"n":2})");
  ASSERT_TRUE(
      Eventually([&] { return Events(*server_, "flaky", "?state=failed").size() == 2; }, 30'000));
  // Paged newest first; the last page has no next.
  auto page = server_->Call("GET", "/v1/functions/flaky/events?state=failed&limit=1");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find(second), std::string::npos) << page.body;
  const std::string next = JsonField(page.body, "next");
  ASSERT_FALSE(next.empty());
  auto rest =
      server_->Call("GET", "/v1/functions/flaky/events?state=failed&limit=1&before=" + next);
  EXPECT_NE(rest.body.find(first), std::string::npos) << rest.body;
  EXPECT_EQ(JsonField(rest.body, "next"), "null");
  EXPECT_NE(rest.body.find("ValueError: not yet"), std::string::npos) << rest.body;
  EXPECT_EQ(server_->Call("GET", "/v1/functions/flaky/events?state=lost").status, 400);
  EXPECT_EQ(server_->Call("GET", "/v1/functions/flaky/events?limit=0").status, 400);

  // Another tenant cannot see them, nor redrive them.
  server_->CreateTenant("acme");
  auto [acme_id, acme_secret] = server_->CreateKey("acme");
  const Headers acme = {{"Authorization", "Bearer " + acme_secret}};
  EXPECT_EQ(server_->Call("GET", "/v1/functions/flaky/events", "", acme, false).status, 404);
  EXPECT_EQ(server_->Call("POST", "/v1/functions/flaky/events/redrive", "{}", acme, false).status,
            404);

  auto ls = Thaw(*server_, "events ls flaky --failed");
  ASSERT_EQ(ls.exit_code, 0) << ls.out;
  EXPECT_NE(ls.out.find(first), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("RetriesExhausted"), std::string::npos) << ls.out;

  // Fixed: redrive one by id; it runs again (a try of its own) and succeeds.
  DeployPython("flaky", "def handler(event, context):\n    return {'ok': event['n']}\n");
  auto unknown = Thaw(*server_, "events redrive flaky no-such-id");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.out.find("no-such-id"), std::string::npos) << unknown.out;
  auto redrive = Thaw(*server_, "events redrive flaky " + first);
  ASSERT_EQ(redrive.exit_code, 0) << redrive.out;
  EXPECT_NE(redrive.out.find("1 dead letters"), std::string::npos) << redrive.out;
  EXPECT_TRUE(Eventually([&] { return StateOf(*server_, "flaky", first) == "succeeded"; }, 30'000));
  EXPECT_EQ(StateOf(*server_, "flaky", second), "failed");
  // Without ids: every dead letter.
  auto all = server_->Call("POST", "/v1/functions/flaky/events/redrive", "");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(JsonField(all.body, "redriven"), "1");
  EXPECT_TRUE(
      Eventually([&] { return StateOf(*server_, "flaky", second) == "succeeded"; }, 30'000));
  EXPECT_TRUE(Events(*server_, "flaky", "?state=failed").empty());
}

// thaw.yaml's on_success webhook gets the record signed with the function's secret; a failing
// receiver is retried with backoff, and a record still undelivered at a kill -9 is delivered
// after the restart.
TEST_F(DestinationsTest, WebhookIsSignedRetriedAndSurvivesKillNine) {
  WebhookReceiver hook;
  hook.set_status(503);
  DeployPython("echoer", "def handler(event, context):\n    return {'echo': event}\n",
               "on_success: " + hook.url() + "\n");
  auto got = server_->Call("GET", "/v1/functions/echoer");
  const std::string secret = JsonField(got.body, "webhook_secret");
  ASSERT_EQ(secret.rfind("whsec_", 0), 0u) << got.body;
  EXPECT_EQ(JsonField(got.body, "on_success"), hook.url());
  // The secret is the owner's: never in the list of functions, never in the server's log.
  EXPECT_EQ(server_->Call("GET", "/v1/functions").body.find(secret), std::string::npos);

  const std::string id = EventInvoke(*server_, "echoer", R"({"n":7})");
  ASSERT_TRUE(hook.WaitFor([](const auto& r) { return r.size() >= 2; }, 30'000));
  for (const auto& req : hook.requests()) {
    EXPECT_EQ(req.headers.at("x-thaw-signature"), WebhookReceiver::Sign(secret, req.body));
    EXPECT_EQ(req.headers.at("x-thaw-function"), "echoer");
    const json::object record = json::parse(req.body).as_object();
    EXPECT_EQ(record.at("requestContext").at("requestId").as_string(), id);
    EXPECT_EQ(record.at("requestContext").at("condition").as_string(), "Success");
    EXPECT_EQ(record.at("responsePayload").at("echo").at("n").as_int64(), 7);
  }
  // A kill -9 while the receiver still refuses: the delivery is in thaw.db, not lost.
  const std::string data_dir = server_->data_dir();
  server_->Kill9();
  const size_t before = hook.requests().size();
  hook.set_status(200);
  auto again = ThawServer::Start(
      {"--async-retry-base-ms", "20", "--webhook-private-addresses", "true"}, data_dir);
  ASSERT_TRUE(hook.WaitFor([&](const auto& r) { return r.size() > before; }, 30'000));
  const ReceivedRequest last = hook.requests().back();
  EXPECT_EQ(last.headers.at("x-thaw-signature"), WebhookReceiver::Sign(secret, last.body));
  EXPECT_NE(last.body.find(id), std::string::npos);
  EXPECT_EQ(again->Output().find(secret), std::string::npos);
  EXPECT_EQ(again->Stop(), 0);
}

// By default a webhook may not reach the node's own addresses: the post is refused, and a
// failure record that could not be delivered leaves its event a dead letter.
TEST(DestinationsDefaultsTest, WebhookToLoopbackIsRefusedAndTheEventDeadLettered) {
  auto server = ThawServer::Start({"--async-retry-base-ms", "20"});
  WebhookReceiver hook;
  const std::string dir = PythonBundle("boom", "def handler(e, c):\n    raise ValueError('x')\n",
                                       "on_failure: " + hook.url() + "\n");
  ASSERT_EQ(server->Deploy("boom", dir).status, 201);
  RemoveDir(dir);
  ASSERT_EQ(server
                ->Call("PUT", "/2019-09-25/functions/boom/event-invoke-config",
                       R"({"MaximumRetryAttempts":0})")
                .status,
            200);
  const std::string id = EventInvoke(*server, "boom", "{}");
  EXPECT_TRUE(Eventually([&] { return StateOf(*server, "boom", id) == "failed"; }, 30'000));
  EXPECT_TRUE(server->WaitForOutput("internal address", 10'000)) << server->Output();
  EXPECT_TRUE(hook.requests().empty());
  EXPECT_EQ(server->Stop(), 0);
}

TEST_F(DestinationsTest, BadDestinationInThawYamlIsRefused) {
  dirs_.push_back(PythonBundle("bad", "def handler(e, c):\n    return 1\n",
                               "on_failure: arn:aws:sqs:us-east-1:000000000000:q\n"));
  auto r = server_->Deploy("bad", dirs_.back());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("on_failure"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace thaw::testing

// Jobs and schedules end to end on the real server: a job's lifecycle, Prefer: wait, cancel of a
// running job (its instance killed, billed to that moment), streamed output growing in
// `output`, signed webhooks caught by a real local HTTP receiver, tenant scoping, a job that
// survives a kill -9, and a schedule whose run missed while the server was down fires at start.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/hmac.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

json::object Json(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  EXPECT_FALSE(ec) << body;
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

std::string S(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (v == nullptr) return "";
  return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// A real HTTP receiver on 127.0.0.1:0: answers 200 to every POST and keeps what came.
class Receiver {
 public:
  struct Delivery {
    std::string headers;  // raw header block, lower-cased names
    std::string body;
  };
  Receiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  // Waits up to `timeout_ms` for `n` deliveries; returns what came.
  std::vector<Delivery> WaitFor(size_t n, int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return got_.size() >= n; });
    return got_;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string in;
      char buf[4096];
      size_t header_end = std::string::npos, need = 0;
      for (;;) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 10000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof(buf));
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        if (header_end == std::string::npos) {
          header_end = in.find("\r\n\r\n");
          if (header_end == std::string::npos) continue;
          std::string lower = in.substr(0, header_end);
          for (char& ch : lower)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          auto cl = lower.find("content-length: ");
          need = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 16));
        }
        if (in.size() >= header_end + 4 + need) break;
      }
      const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!::write(c, ok.data(), ok.size());
      ::close(c);
      if (header_end == std::string::npos) continue;
      Delivery d;
      d.headers = in.substr(0, header_end);
      for (char& ch : d.headers)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      d.body = in.substr(header_end + 4, need);
      // The signature is hex: lower-casing the block left it as sent.
      std::lock_guard<std::mutex> lock(mu_);
      got_.push_back(std::move(d));
      cv_.notify_all();
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Delivery> got_;
};

std::string HeaderValue(const std::string& headers, const std::string& lower_name) {
  auto at = headers.find("\r\n" + lower_name + ": ");
  if (at == std::string::npos) return "";
  at += lower_name.size() + 4;
  return headers.substr(at, headers.find("\r\n", at) - at);
}

const char kDouble[] =
    "import time\n"
    "def handler(event, context):\n"
    "    print('doubling', event.get('n'))\n"
    "    time.sleep(event.get('sleep', 0))\n"
    "    return {'x': event.get('n', 0) * 2}\n";

// Prints, then sleeps well past any test's patience: only a cancel ends it early.
const char kSlow[] =
    "import time\n"
    "def handler(event, context):\n"
    "    print('started', flush=True)\n"
    "    time.sleep(120)\n"
    "    return 'too late'\n";

// Streams one chunk, then sleeps: the job's output shows the chunk while it runs.
const char kStreamer[] =
    "import time\n"
    "def handler(event, context):\n"
    "    yield 'one;'\n"
    "    time.sleep(120)\n"
    "    yield 'two;'\n";

class JobsTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start({"--webhook-private-addresses", "true"}); }
  json::object Create(const std::string& fn, const std::string& body, int want = 201,
                      cli::Headers headers = {}) {
    auto r = server_->Call("POST", "/v1/functions/" + fn + "/jobs", body, headers);
    EXPECT_EQ(r.status, want) << r.body;
    return Json(r.body);
  }
  json::object Get(const std::string& id, int wait_s = 0) {
    cli::Headers h;
    if (wait_s > 0) h.emplace_back("Prefer", "wait=" + std::to_string(wait_s));
    auto r = server_->Call("GET", "/v1/jobs/" + id, "", h);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json(r.body);
  }
  // GET with Prefer: wait until the job leaves queued/running (generous: a loaded machine).
  json::object Finished(const std::string& id) {
    json::object j;
    for (int i = 0; i < 6; ++i) {
      j = Get(id, 30);
      const std::string st = S(j, "status");
      if (st != "queued" && st != "running") break;
    }
    return j;
  }
};

TEST_F(JobsTest, LifecycleFromQueuedToSucceededWithOutputLogsAndMetrics) {
  DeployPython("double", kDouble);
  json::object created = Create("double", R"({"input":{"n":21}})");
  EXPECT_EQ(S(created, "status"), "queued");
  const std::string id = S(created, "id");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(S(created.at("urls").as_object(), "get"), "/v1/jobs/" + id);
  EXPECT_EQ(S(created.at("urls").as_object(), "cancel"), "/v1/jobs/" + id + "/cancel");
  EXPECT_FALSE(S(created, "created_at").empty());

  json::object done = Finished(id);
  ASSERT_EQ(S(done, "status"), "succeeded") << json::serialize(done);
  EXPECT_EQ(S(done, "output"), R"({"x":42})");
  EXPECT_EQ(S(done, "input"), R"({"n":21})");
  EXPECT_EQ(S(done, "error"), "null");
  EXPECT_NE(S(done, "logs").find("doubling 21"), std::string::npos) << S(done, "logs");
  const auto& m = done.at("metrics").as_object();
  EXPECT_EQ(S(m, "start_kind"), "cold");
  EXPECT_GE(m.at("billed_ms").to_number<int64_t>(), 1);
  EXPECT_GE(m.at("queued_ms").to_number<double>(), 0);
  EXPECT_GT(m.at("duration_ms").to_number<double>(), 0);
  EXPECT_FALSE(S(done, "started_at").empty());
  EXPECT_FALSE(S(done, "completed_at").empty());

  // A second job finds the instance warm; the list shows both, newest first, in pages.
  const std::string id2 = S(Create("double", R"({"input":{"n":1}})"), "id");
  json::object second = Finished(id2);
  EXPECT_EQ(S(second.at("metrics").as_object(), "start_kind"), "warm");
  auto page = server_->Call("GET", "/v1/functions/double/jobs?limit=1");
  ASSERT_EQ(page.status, 200) << page.body;
  json::object p1 = Json(page.body);
  ASSERT_EQ(p1.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(S(p1.at("jobs").as_array()[0].as_object(), "id"), id2);
  page = server_->Call("GET", "/v1/functions/double/jobs?limit=1&cursor=" + S(p1, "next"));
  json::object p2 = Json(page.body);
  ASSERT_EQ(p2.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(S(p2.at("jobs").as_array()[0].as_object(), "id"), id);
  EXPECT_EQ(S(p2, "next"), "null");
}

TEST_F(JobsTest, BadRequestsAreRefusedWithTheirReason) {
  DeployPython("double", kDouble);
  struct Case {
    std::string fn, body;
    cli::Headers headers;
    int status;
    std::string needle;
  } cases[] = {
      {"double", "[1]", {}, 400, "JSON object"},
      {"double", R"({"input":{},"color":1})", {}, 400, "unknown field 'color'"},
      {"double", R"({"webhook":"ftp://x/y"})", {}, 400, "only http://"},
      {"double",
       R"({"webhook":"http://127.0.0.1:1/","webhook_events_filter":["done"]})",
       {},
       400,
       "'done'"},
      {"double", "{}", {{"Prefer", "wait=61"}}, 400, "Prefer"},
      {"nope", "{}", {}, 404, "nope"},
  };
  for (const auto& c : cases) {
    auto r = server_->Call("POST", "/v1/functions/" + c.fn + "/jobs", c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.body << ": " << r.body;
    EXPECT_NE(r.body.find(c.needle), std::string::npos) << c.body << ": " << r.body;
  }
  // Nothing half-done: no job was created by the refused calls.
  auto list = server_->Call("GET", "/v1/functions/double/jobs");
  EXPECT_EQ(Json(list.body).at("jobs").as_array().size(), 0u) << list.body;
  EXPECT_EQ(server_->Call("GET", "/v1/jobs/no-such-job").status, 404);
}

TEST_F(JobsTest, PreferWaitAnswersWhenTheJobEndsOrWhenTheWaitIsOver) {
  DeployPython("double", kDouble);
  DeployPython("slow", kSlow);
  // Finished within the wait: the create call itself carries the output.
  auto r = server_->Call("POST", "/v1/functions/double/jobs", R"({"input":{"n":2}})",
                         {{"Prefer", "wait=60"}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.Header("preference-applied"), "wait=60");
  json::object j = Json(r.body);
  EXPECT_EQ(S(j, "status"), "succeeded") << r.body;
  EXPECT_EQ(S(j, "output"), R"({"x":4})");

  // Not finished: answered after the wait with its current state.
  const std::string id = S(Create("slow", "{}"), "id");
  const auto start = std::chrono::steady_clock::now();
  json::object waited = Get(id, 1);
  const double took = Seconds(start);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 15.0);
  const std::string st = S(waited, "status");
  EXPECT_TRUE(st == "queued" || st == "running") << st;
  ASSERT_EQ(server_->Call("POST", "/v1/jobs/" + id + "/cancel").status, 200);
}

TEST_F(JobsTest, CancelEndsARunningJobAtOnceAndBillsItToThatMoment) {
  DeployPython("slow", kSlow);
  const std::string id = S(Create("slow", "{}"), "id");
  // Running: its handler has printed.
  ASSERT_TRUE(Eventually(
      [&] {
        json::object j = Get(id);
        return S(j, "status") == "running" && S(j, "logs").find("started") != std::string::npos;
      },
      60000));
  const auto start = std::chrono::steady_clock::now();
  auto r = server_->Call("POST", "/v1/jobs/" + id + "/cancel");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(S(Json(r.body), "status"), "canceled");
  // The cancel's answer already carries what was billed (it waits for the job to settle).
  EXPECT_GE(Json(r.body).at("metrics").as_object().at("billed_ms").to_number<int64_t>(), 1)
      << r.body;
  json::object done = Finished(id);
  EXPECT_LT(Seconds(start), 30.0);
  EXPECT_EQ(S(done, "status"), "canceled");
  EXPECT_EQ(S(done.at("error").as_object(), "type"), "Canceled");
  const int64_t billed = done.at("metrics").as_object().at("billed_ms").to_number<int64_t>();
  EXPECT_GE(billed, 1);
  EXPECT_LT(billed, 60'000);
  EXPECT_NE(S(done, "logs").find("Status: canceled"), std::string::npos) << S(done, "logs");
  // The instance was killed: the next job starts a fresh one.
  const std::string next = S(Create("slow", "{}"), "id");
  ASSERT_TRUE(
      Eventually([&] { return S(Get(next), "logs").find("started") != std::string::npos; }, 60000));
  EXPECT_EQ(S(Get(next).at("metrics").as_object(), "start_kind"), "null");  // known at the end
  ASSERT_EQ(server_->Call("POST", "/v1/jobs/" + next + "/cancel").status, 200);
  EXPECT_EQ(S(Finished(next).at("metrics").as_object(), "start_kind"), "cold");
  // Canceling a finished job changes nothing.
  r = server_->Call("POST", "/v1/jobs/" + id + "/cancel");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(S(Json(r.body), "status"), "canceled");
}

TEST_F(JobsTest, StreamedOutputGrowsWhileTheJobRuns) {
  DeployPython("streamer", kStreamer);
  const std::string id = S(Create("streamer", "{}"), "id");
  ASSERT_TRUE(Eventually(
      [&] {
        json::object j = Get(id);
        return S(j, "status") == "running" && S(j, "output") == "one;";
      },
      60000))
      << json::serialize(Get(id));
  ASSERT_EQ(server_->Call("POST", "/v1/jobs/" + id + "/cancel").status, 200);
  json::object done = Finished(id);
  EXPECT_EQ(S(done, "status"), "canceled");
  EXPECT_EQ(S(done, "output"), "one;");  // what it had written when it was canceled
}

TEST_F(JobsTest, WebhooksAreSignedWithTheFunctionsSecret) {
  DeployPython("double", kDouble);
  auto sec = server_->Call("GET", "/v1/functions/double/webhook_secret");
  ASSERT_EQ(sec.status, 200) << sec.body;
  const std::string secret = S(Json(sec.body), "secret");
  ASSERT_FALSE(secret.empty());
  Receiver receiver;
  json::object created =
      Create("double", R"({"input":{"n":5},"webhook":")" + receiver.url() +
                           R"(","webhook_events_filter":["start","completed"]})");
  auto got = receiver.WaitFor(2, 60000);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& d : got) {
    EXPECT_EQ(HeaderValue(d.headers, "x-thaw-signature"), WebhookSignature(secret, d.body))
        << d.headers;
    EXPECT_NE(HeaderValue(d.headers, "x-thaw-signature"), WebhookSignature("other", d.body));
    EXPECT_EQ(S(Json(d.body), "id"), S(created, "id"));
  }
  // Each is sent as it happens; they may arrive in either order.
  std::map<std::string, json::object> by_event;
  for (const auto& d : got) by_event[HeaderValue(d.headers, "x-thaw-webhook-event")] = Json(d.body);
  ASSERT_EQ(by_event.count("start"), 1u);
  ASSERT_EQ(by_event.count("completed"), 1u);
  EXPECT_EQ(S(by_event["start"], "status"), "running");
  EXPECT_EQ(S(by_event["completed"], "status"), "succeeded");
  EXPECT_EQ(S(by_event["completed"], "output"), R"({"x":10})");
}

TEST_F(JobsTest, TenantsSeeOnlyTheirOwnJobs) {
  server_->CreateTenant("acme");
  server_->CreateTenant("umbrella");
  const std::string acme = server_->CreateKey("acme").second;
  const std::string umbrella = server_->CreateKey("umbrella").second;
  dirs_.push_back(PythonBundle("double", kDouble));
  // The admin deploys into tenant acme.
  ASSERT_EQ(server_->Deploy("acme.double", dirs_.back()).status, 201);
  auto as = [&](const std::string& key, const std::string& method, const std::string& target,
                const std::string& body = "") {
    auto r = cli::HttpCall(server_->url(), method, target, body,
                           {{"Authorization", "Bearer " + key}}, 60000);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : cli::HttpResult{};
  };
  auto created = as(acme, "POST", "/v1/functions/double/jobs", R"({"input":{"n":3}})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = S(Json(created.body), "id");
  EXPECT_EQ(S(Json(created.body), "function"), "double");
  EXPECT_EQ(as(acme, "GET", "/v1/jobs/" + id).status, 200);
  // Another tenant: not found, never forbidden; it cannot cancel it either.
  auto other = as(umbrella, "GET", "/v1/jobs/" + id);
  EXPECT_EQ(other.status, 404) << other.body;
  EXPECT_EQ(as(umbrella, "POST", "/v1/jobs/" + id + "/cancel").status, 404);
  auto list = as(umbrella, "GET", "/v1/functions/double/jobs");
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(Json(list.body).at("jobs").as_array().size(), 0u) << list.body;
  EXPECT_EQ(as(umbrella, "POST", "/v1/functions/double/jobs", "{}").status, 404);
  // The admin sees it under its internal name.
  EXPECT_EQ(S(Get(id), "function"), "acme.double");
  auto mine = as(acme, "GET", "/v1/functions/double/jobs");
  EXPECT_EQ(Json(mine.body).at("jobs").as_array().size(), 1u) << mine.body;
}

TEST_F(JobsTest, CliRunsWaitsGetsListsAndCancels) {
  DeployPython("double", kDouble);
  const std::vector<std::string> env = {"THAW_SERVER=" + server_->url(),
                                        "THAW_API_KEY=" + server_->key(), "PATH=/usr/bin:/bin"};
  auto thaw = [&](std::vector<std::string> args) {
    args.insert(args.begin(), THAW_BINARY);
    return RunProcess(args, &env);
  };
  auto run = thaw({"jobs", "run", "double", R"({"n":4})", "--wait"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "{\"x\":8}\n");
  EXPECT_NE(run.err.find("succeeded"), std::string::npos) << run.err;  // the progress, on stderr
  auto started = thaw({"jobs", "run", "double", "{}"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string id = started.out.substr(0, started.out.find('\n'));
  ASSERT_EQ(Json(server_->Call("GET", "/v1/jobs/" + id, "", {{"Prefer", "wait=30"}}).body)
                .at("status")
                .as_string(),
            "succeeded");
  auto got = thaw({"jobs", "get", id});
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, "{\"x\":0}\n");
  auto ls = thaw({"jobs", "ls", "double"});
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(id + "  succeeded"), std::string::npos) << ls.out;
  auto bad = thaw({"jobs", "run", "double", "{nope"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("INPUT must be JSON"), std::string::npos) << bad.err;
  auto missing = thaw({"jobs", "cancel", "no-such-job"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("not found"), std::string::npos) << missing.err;
}

// Regression: jobs were not capped by max_queued_events; accepted and not finished, they count.
class JobsCapTest : public JobsTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start({"--max-queued-events", "2"}); }
};

TEST_F(JobsCapTest, JobsNotFinishedCountTowardMaxQueuedEvents) {
  DeployPython("slow", kSlow);
  const std::string first = S(Create("slow", "{}"), "id");
  const std::string second = S(Create("slow", "{}"), "id");
  auto refused = server_->Call("POST", "/v1/functions/slow/jobs", "{}");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("max_queued_events"), std::string::npos) << refused.body;
  // A finished job frees its place.
  ASSERT_EQ(server_->Call("POST", "/v1/jobs/" + first + "/cancel").status, 200);
  EXPECT_EQ(S(Finished(first), "status"), "canceled");
  std::string third;
  ASSERT_TRUE(Eventually(
      [&] {
        auto r = server_->Call("POST", "/v1/functions/slow/jobs", "{}");
        if (r.status == 201) third = S(Json(r.body), "id");
        return r.status == 201;
      },
      30000));
  for (const std::string& id : {second, third}) {
    EXPECT_EQ(server_->Call("POST", "/v1/jobs/" + id + "/cancel").status, 200);
  }
}

TEST(JobsDurabilityTest, AnAcceptedJobSurvivesAKillNine) {
  char tmpl[] = "/tmp/thaw-jobs-durability-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string data_dir = tmpl;
  struct DirGuard {
    std::vector<std::string> dirs;
    ~DirGuard() {
      for (auto& d : dirs) RemoveDir(d);
    }
  } guard{{data_dir}};
  auto server = ThawServer::Start({}, data_dir);
  guard.dirs.push_back(PythonBundle("double", kDouble, "timeout_s: 60\n"));
  ASSERT_EQ(server->Deploy("double", guard.dirs.back()).status, 201);
  // Killed while the job waits for its cold start or runs: either way it runs after the restart.
  auto r = server->Call("POST", "/v1/functions/double/jobs", R"({"input":{"n":7,"sleep":2}})");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = S(Json(r.body), "id");
  server->Kill9();
  server.reset();
  server = ThawServer::Start({}, data_dir);
  json::object j;
  for (int i = 0; i < 6; ++i) {
    j = Json(server->Call("GET", "/v1/jobs/" + id, "", {{"Prefer", "wait=30"}}).body);
    if (S(j, "status") == "succeeded") break;
  }
  EXPECT_EQ(S(j, "status"), "succeeded") << json::serialize(j);
  EXPECT_EQ(S(j, "output"), R"({"x":14})");
}

// A schedule's run missed while the server was down fires once at start, with EventBridge's
// Scheduled Event payload; catch_up: false skips it. thaw get shows the next run.
TEST(SchedulesTest, AMissedRunFiresOnceAtStartUnlessCatchUpIsOff) {
  char tmpl[] = "/tmp/thaw-schedules-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string data_dir = tmpl;
  struct DirGuard {
    std::vector<std::string> dirs;
    ~DirGuard() {
      for (auto& d : dirs) RemoveDir(d);
    }
  } guard{{data_dir}};
  const char kEcho[] =
      "import json\n"
      "def handler(event, context):\n"
      "    print('EVENT', json.dumps(event, sort_keys=True))\n"
      "    return 'ok'\n";
  auto server = ThawServer::Start({}, data_dir);
  guard.dirs.push_back(PythonBundle("tick", kEcho, "schedule: rate(5 minutes)\n"));
  ASSERT_EQ(server->Deploy("tick", guard.dirs.back()).status, 201);
  guard.dirs.push_back(PythonBundle(
      "quiet", kEcho, "schedule:\n  - rate(1 minute)\n  - cron(0 12 * * ? *)\ncatch_up: false\n"));
  ASSERT_EQ(server->Deploy("quiet", guard.dirs.back()).status, 201);
  // A bad expression is a deploy error naming it.
  guard.dirs.push_back(PythonBundle("bad", kEcho, "schedule: cron(0 12 * * * *)\n"));
  auto bad = server->Deploy("bad", guard.dirs.back());
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("exactly one of day-of-month and day-of-week"), std::string::npos)
      << bad.body;
  // The scheduler has seen both (its loop turns every second) and knows their next runs.
  ASSERT_TRUE(server->WaitForFunction("tick", "\"next_run\"", 30000));
  ASSERT_TRUE(server->WaitForFunction("quiet", "\"next_run\"", 30000));
  ASSERT_EQ(server->Stop(), 0);
  server.reset();

  // Down for ten minutes, as far as the schedules know: anchored and last fired ten minutes
  // ago, tick missed two runs (it fires once) and its next is five minutes away.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((data_dir + "/thaw.db").c_str(), &db), SQLITE_OK);
  const int64_t ago = WallNowMicros() - 600'000'000;
  const std::string sql = "UPDATE schedule_runs SET anchor_us = " + std::to_string(ago) +
                          ", last_fire_us = " + std::to_string(ago);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_changes(db), 3);
  sqlite3_close(db);

  server = ThawServer::Start({}, data_dir);
  std::string logs;
  ASSERT_TRUE(Eventually(
      [&] {
        logs = server->Call("GET", "/v1/functions/tick/logs").body;
        return logs.find("REPORT RequestId") != std::string::npos;
      },
      60000))
      << logs;
  EXPECT_NE(logs.find(R"(\"detail-type\": \"Scheduled Event\")"), std::string::npos) << logs;
  EXPECT_NE(logs.find(R"(\"source\": \"aws.events\")"), std::string::npos) << logs;
  EXPECT_NE(logs.find("rule/thaw-tick-0"), std::string::npos) << logs;
  // Once, not once per missed minute.
  size_t events = 0;
  for (size_t at = logs.find("EVENT"); at != std::string::npos; at = logs.find("EVENT", at + 1)) {
    ++events;
  }
  EXPECT_EQ(events, 1u) << logs;
  // catch_up: false: the same decision turn enqueued nothing for it.
  auto quiet = server->Call("GET", "/v1/functions/quiet");
  EXPECT_NE(quiet.body.find(R"("instances":{"starting":0,"ready":0,"busy":0,"stopping":0})"),
            std::string::npos)
      << quiet.body;
  EXPECT_EQ(server->Call("GET", "/v1/functions/quiet/logs").body.find("EVENT"), std::string::npos);
  // The next run is five minutes or less away.
  json::object f = Json(server->Call("GET", "/v1/functions/tick").body);
  EXPECT_FALSE(S(f, "next_run").empty());
}

}  // namespace
}  // namespace thaw::testing

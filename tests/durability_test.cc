// Metering survives a kill -9: a server killed under load, then restarted on the same data dir,
// has exactly one ledger row for every invocation whose response reached a client (the meter's
// journal, see src/meter/meter.h), read straight from thaw.db.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "webhook_receiver.h"

namespace thaw::testing {
namespace {

const std::string kHelloCpp = std::string(THAW_BUILD_DIR) + "/examples/hello-cpp";

// Rows per request id in the ledger, read-only (a server may be running on it).
// The ledger's invocations by request id (a template's init row is not one).
std::map<std::string, int64_t> LedgerRows(const std::string& db_path) {
  std::map<std::string, int64_t> rows;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db,
                               "SELECT request_id, COUNT(*) FROM invocations "
                               "WHERE status != 'template_init' GROUP BY 1",
                               -1, &st, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  while (sqlite3_step(st) == SQLITE_ROW) {
    rows[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

struct Response {
  std::string request_id;
  int status = 0;
};

TEST(DurabilityTest, KillNineUnderLoadLosesNoAnsweredInvocation) {
  constexpr int kClients = 8;
  constexpr size_t kKillAfter = 400;  // responses collected before the kill
  char tmpl[] = "/tmp/thaw-durability-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string data_dir = tmpl;
  const std::string db_path = data_dir + "/thaw.db";
  // Removed even when an assertion returns early (after the servers below are gone).
  struct DirGuard {
    std::string dir;
    ~DirGuard() { RemoveDir(dir); }
  } guard{data_dir};

  auto server = ThawServer::Start({}, data_dir);
  ASSERT_EQ(server->Deploy("hello-cpp", kHelloCpp).status, 201);
  ASSERT_EQ(server->Invoke("hello-cpp").status, 200);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Response> answered;  // guarded by mu
  std::atomic<bool> killed{false};
  const std::string url = server->url();
  const cli::Headers auth = {{"Authorization", "Bearer " + server->key()}};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const std::string payload = R"({"name":"client-)" + std::to_string(c) + R"("})";
      while (!killed.load()) {
        auto r = cli::HttpCall(url, "POST", "/v1/functions/hello-cpp/invoke", payload, auth, 30000);
        if (!r.ok()) break;  // the server is gone: this call's response never arrived
        std::lock_guard<std::mutex> lock(mu);
        answered.push_back({r->Header("x-thaw-request-id"), r->status});
        cv.notify_all();
      }
    });
  }
  bool loaded;
  {
    std::unique_lock<std::mutex> lock(mu);
    loaded =
        cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered.size() >= kKillAfter; });
  }
  server->Kill9();  // mid-load: the clients are still calling
  killed = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(loaded) << "only " << answered.size() << " responses";

  // What the ledger held at the kill, for the log: the rest can only come from the journal.
  const auto before = LedgerRows(db_path);
  size_t journal_only = 0;
  for (const Response& r : answered) journal_only += before.count(r.request_id) == 0;
  std::printf("%zu responses, %zu of them not yet in thaw.db at the kill\n", answered.size(),
              journal_only);

  // Replay happens before the restarted server listens: no flush or request needed.
  auto again = ThawServer::Start({}, data_dir);
  const auto rows = LedgerRows(db_path);
  std::map<int, int> statuses;
  for (const Response& r : answered) {
    ++statuses[r.status];
    ASSERT_FALSE(r.request_id.empty()) << "a response without X-Thaw-Request-Id: " << r.status;
    auto it = rows.find(r.request_id);
    ASSERT_NE(it, rows.end()) << "no ledger row for " << r.request_id << " (HTTP " << r.status
                              << ")";
    EXPECT_EQ(it->second, 1) << r.request_id;
  }
  for (const auto& [id, n] : rows) EXPECT_EQ(n, 1) << "billed " << n << " times: " << id;
  EXPECT_GT(statuses[200], 0);

  // The restarted server keeps metering on top of the replayed ledger.
  auto after = again->Invoke("hello-cpp");
  ASSERT_EQ(after.status, 200);
  ASSERT_EQ(again->Call("GET", "/v1/usage").status, 200);  // flushes the meter
  EXPECT_EQ(LedgerRows(db_path).count(after.Header("x-thaw-request-id")), 1u);
  EXPECT_EQ(again->Stop(), 0);
}

// Rows per request id in the ledger that ended in success.
std::set<std::string> SucceededIds(const std::string& db_path) {
  std::set<std::string> ids;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT request_id FROM invocations WHERE status = 'success'",
                               -1, &st, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  while (sqlite3_step(st) == SQLITE_ROW) {
    ids.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ids;
}

// Event states in the durable queue (queue/event_queue.h), by state.
std::map<std::string, int64_t> EventStates(const std::string& db_path) {
  std::map<std::string, int64_t> states;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(
      sqlite3_prepare_v2(db, "SELECT state, COUNT(*) FROM events GROUP BY 1", -1, &st, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(db);
  while (sqlite3_step(st) == SQLITE_ROW) {
    states[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return states;
}

// Every Event invoke answered 202 runs, even when the server is killed right after the answers:
// the restarted server runs what was queued and re-runs what was running, under the same
// request id (so the ledger bills each once).
TEST(DurabilityTest, KillNineAfterAcceptedEventsLosesNone) {
  constexpr int kEvents = 40;
  char tmpl[] = "/tmp/thaw-durability-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string data_dir = tmpl;
  const std::string db_path = data_dir + "/thaw.db";
  struct DirGuard {
    std::string dir;
    ~DirGuard() { RemoveDir(dir); }
  } guard{data_dir};

  auto server = ThawServer::Start({}, data_dir);
  ASSERT_EQ(server->Deploy("hello-cpp", kHelloCpp).status, 201);
  std::vector<std::string> accepted;
  for (int i = 0; i < kEvents; ++i) {
    auto r = server->Call("POST", "/2015-03-31/functions/hello-cpp/invocations",
                          R"({"sleep_ms":200})", {{"X-Amz-Invocation-Type", "Event"}});
    ASSERT_EQ(r.status, 202) << r.body;
    accepted.push_back(r.Header("x-amzn-requestid"));
    ASSERT_FALSE(accepted.back().empty());
  }
  // Kill while some run: those must re-run under their own request id.
  EXPECT_TRUE(Eventually([&] { return EventStates(db_path)["running"] > 0; }, 10'000));
  server->Kill9();
  const size_t done_before = SucceededIds(db_path).size();
  std::printf("%zu of %d events had succeeded at the kill\n", done_before, kEvents);

  auto again = ThawServer::Start({}, data_dir);
  std::set<std::string> ids;
  EXPECT_TRUE(Eventually(
      [&] {
        (void)again->Call("GET", "/v1/usage");  // flushes the meter
        ids = SucceededIds(db_path);
        for (const auto& id : accepted) {
          if (ids.count(id) == 0) return false;
        }
        return true;
      },
      60'000));
  for (const auto& id : accepted) EXPECT_EQ(ids.count(id), 1u) << "never ran: " << id;
  // Billed once each: no retry under another id was needed, and a re-run try is not billed twice.
  const auto rows = LedgerRows(db_path);
  EXPECT_EQ(rows.size(), accepted.size());
  for (const auto& [id, n] : rows) EXPECT_EQ(n, 1) << id;
  EXPECT_TRUE(Eventually([&] { return EventStates(db_path)["succeeded"] == kEvents; }, 10'000));
  auto states = EventStates(db_path);
  EXPECT_EQ(states["queued"] + states["running"] + states["failed"], 0);
  // Depth and age gauges are there (and empty once all ran).
  auto metrics = again->Call("GET", "/metrics");
  EXPECT_NE(metrics.body.find("thaw_async_events_queued"), std::string::npos);
  EXPECT_EQ(again->Stop(), 0);
}

// Past max_queued_events a function's Event invokes are refused with 429; the queue's depth
// shows in /metrics meanwhile.
TEST(DurabilityTest, MaxQueuedEventsAnswers429) {
  auto server = ThawServer::Start({"--max-queued-events", "2"});
  ASSERT_EQ(server->Deploy("hello-cpp", kHelloCpp).status, 201);
  auto event = [&] {
    return server->Call("POST", "/2015-03-31/functions/hello-cpp/invocations",
                        R"({"sleep_ms":3000})", {{"X-Amz-Invocation-Type", "Event"}});
  };
  ASSERT_EQ(event().status, 202);
  ASSERT_EQ(event().status, 202);
  auto refused = event();
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("max_queued_events"), std::string::npos) << refused.body;
  auto metrics = server->Call("GET", "/metrics");
  EXPECT_NE(metrics.body.find("thaw_async_events_queued{function=\"hello-cpp\"} 2"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("thaw_async_oldest_event_age_seconds{function=\"hello-cpp\"}"),
            std::string::npos);
  server->Kill9();
}

// A failing event is tried 1 + MaximumRetryAttempts times, async_retry_base_ms apart, each try
// metered under its own request id, and then kept as failed.
TEST(DurabilityTest, FailingEventIsRetriedAsItsConfigSays) {
  auto server = ThawServer::Start({"--async-retry-base-ms", "20"});
  const std::string bundle =
      PythonBundle("boom", "def handler(event, context):\n    raise ValueError('boom')\n");
  ASSERT_EQ(server->Deploy("boom", bundle).status, 201);
  RemoveDir(bundle);
  auto put = server->Call("PUT", "/2019-09-25/functions/boom/event-invoke-config",
                          R"({"MaximumRetryAttempts":1})");
  ASSERT_EQ(put.status, 200) << put.body;
  auto r = server->Call("POST", "/2015-03-31/functions/boom/invocations", "{}",
                        {{"X-Amz-Invocation-Type", "Event"}});
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = r.Header("x-amzn-requestid");
  const std::string db_path = server->data_dir() + "/thaw.db";
  EXPECT_TRUE(Eventually([&] { return EventStates(db_path)["failed"] == 1; }, 30'000));
  (void)server->Call("GET", "/v1/usage");  // flushes the meter
  const auto rows = LedgerRows(db_path);
  EXPECT_EQ(rows.count(id), 1u);
  EXPECT_EQ(rows.count(id + "-2"), 1u);
  EXPECT_EQ(rows.count(id + "-3"), 0u);
  EXPECT_EQ(server->Stop(), 0);
}

// Request ids of events by state, read-only.
std::map<std::string, std::string> EventStatesById(const std::string& db_path) {
  std::map<std::string, std::string> out;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT request_id, state FROM events", -1, &st, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  while (sqlite3_step(st) == SQLITE_ROW) {
    out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] =
        reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

int64_t PendingDeliveries(const std::string& db_path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'queued'", -1,
                               &st, nullptr),
            SQLITE_OK);
  int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// Event invokes sent while thaw is killed (kill -9) and restarted at random moments: afterwards
// every event answered 202 has succeeded or is a dead letter, every success reached the
// function's on_success webhook, and no event is reported as succeeding with two different
// outputs. The seed is printed so a failure can be replayed (THAW_KILL_SEED).
TEST(DurabilityTest, RandomKillNineWhileEnqueueingLosesNoEvent) {
  constexpr int kRounds = 4;
  char tmpl[] = "/tmp/thaw-durability-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string data_dir = tmpl;
  const std::string db_path = data_dir + "/thaw.db";
  struct DirGuard {
    std::string dir;
    ~DirGuard() { RemoveDir(dir); }
  } guard{data_dir};
  const char* seed_env = ::getenv("THAW_KILL_SEED");
  const uint32_t seed = seed_env != nullptr ? static_cast<uint32_t>(std::stoul(seed_env))
                                            : static_cast<uint32_t>(std::random_device{}());
  std::printf("THAW_KILL_SEED=%u\n", seed);
  std::mt19937 rng(seed);

  WebhookReceiver hook;
  const std::string bundle = PythonBundle(
      "det",
      "import hashlib, json\n"
      "def handler(event, context):\n"
      "    text = json.dumps(event, sort_keys=True)\n"
      "    return {'digest': hashlib.sha256(text.encode()).hexdigest(), 'n': event['n']}\n",
      "on_success: " + hook.url() + "\n");
  // Events wait for an instance rather than being throttled (a fast retry base would soon
  // dead-letter throttled ones).
  const std::vector<std::string> flags = {
      "--async-retry-base-ms", "20",     "--webhook-private-addresses", "true",
      "--max-queue",           "100000", "--queue-timeout-ms",          "300000"};
  std::vector<std::string> accepted;
  int next = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto server = ThawServer::Start(flags, data_dir);
    if (round == 0) {
      ASSERT_EQ(server->Deploy("det", bundle).status, 201);
    }
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::vector<std::string> round_ids;
    const std::string url = server->url();
    const cli::Headers headers = {{"Authorization", "Bearer " + server->key()},
                                  {"X-Amz-Invocation-Type", "Event"}};
    std::vector<std::thread> clients;
    std::atomic<int> counter{next};
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back([&] {
        while (!stop.load()) {
          const int n = counter.fetch_add(1);
          auto r = cli::HttpCall(url, "POST", "/2015-03-31/functions/det/invocations",
                                 R"({"n":)" + std::to_string(n) + "}", headers, 30000);
          if (!r.ok()) break;  // killed: this one's answer never came
          if (r->status != 202) continue;
          std::lock_guard<std::mutex> lock(mu);
          round_ids.push_back(r->Header("x-amzn-requestid"));
        }
      });
    }
    // Kill at a random moment: while events are added, run or delivered.
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 1500)(rng)));
    server->Kill9();
    stop = true;
    for (auto& t : clients) t.join();
    next = counter.load();
    std::printf("round %d: %zu events accepted before the kill\n", round, round_ids.size());
    accepted.insert(accepted.end(), round_ids.begin(), round_ids.end());
  }
  RemoveDir(bundle);
  ASSERT_FALSE(accepted.empty());

  auto last = ThawServer::Start(flags, data_dir);
  std::map<std::string, std::string> states;
  const bool settled = Eventually(
      [&] {
        states = EventStatesById(db_path);
        for (const auto& id : accepted) {
          auto it = states.find(id);
          if (it == states.end() || (it->second != "succeeded" && it->second != "failed")) {
            return false;
          }
        }
        return PendingDeliveries(db_path) == 0;
      },
      180'000);
  EXPECT_TRUE(settled);
  std::map<std::string, std::set<std::string>> outputs;  // request id -> distinct outputs
  for (const auto& req : hook.requests()) {
    const auto record = boost::json::parse(req.body).as_object();
    outputs[std::string(record.at("requestContext").at("requestId").as_string())].insert(
        boost::json::serialize(record.at("responsePayload")));
  }
  size_t succeeded = 0, dead = 0;
  for (const auto& id : accepted) {
    const std::string& state = states[id];
    EXPECT_TRUE(state == "succeeded" || state == "failed") << id << " is " << state;
    if (state == "succeeded") {
      ++succeeded;
      EXPECT_EQ(outputs.count(id), 1u) << "the webhook never heard of " << id;
    } else {
      ++dead;
    }
  }
  for (const auto& [id, distinct] : outputs) {
    EXPECT_EQ(distinct.size(), 1u) << id << " succeeded with different outputs";
  }
  EXPECT_GT(succeeded, 0u);
  std::printf("%zu accepted: %zu succeeded, %zu dead letters, %zu webhook posts\n", accepted.size(),
              succeeded, dead, hook.requests().size());
  EXPECT_EQ(last->Stop(), 0);
}

}  // namespace
}  // namespace thaw::testing

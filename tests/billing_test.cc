// Usage, cost and advice against the real server: the API's totals and costs must equal what
// the test computes by hand from the same ledger rows (read straight from thaw.db).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <boost/json.hpp>
#include <ctime>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kHelloCpp = std::string(THAW_BUILD_DIR) + "/examples/hello-cpp";

// Prices large enough that a handful of calls cost whole micro-dollars on every term.
constexpr int64_t kRequestPico = 3'000'000'000;  // $3000 per million requests
constexpr int64_t kGbSecondPico = 16'666'700'000;
constexpr int64_t kCpuSecondPico = 24'000'000'000;
constexpr int64_t kPeakGbSecondPico = 2'500'000'000;
constexpr int64_t kInitGbSecondPico = 50'000'000'000;

struct Ledger {
  int64_t n = 0, billed_ms = 0, billed_mb_ms = 0, cpu_us = 0, peak_mb_us = 0, cold = 0;
  int64_t template_inits = 0, init_mb_ms = 0;  // the template's init: billed, not an invocation
  std::vector<int64_t> durations;
};

Ledger ReadLedger(const std::string& db_path, const std::string& function) {
  Ledger l;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(
      sqlite3_prepare_v2(db,
                         "SELECT billed_ms, memory_mb, cpu_us, duration_us, "
                         "max_memory_used_mb, cold_start, status FROM invocations WHERE function=?",
                         -1, &st, nullptr),
      SQLITE_OK);
  sqlite3_bind_text(st, 1, function.c_str(), -1, SQLITE_TRANSIENT);
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 6))) == "template_init") {
      ++l.template_inits;
      l.init_mb_ms += sqlite3_column_int64(st, 0) * sqlite3_column_int64(st, 1);
      continue;
    }
    ++l.n;
    l.billed_ms += sqlite3_column_int64(st, 0);
    l.billed_mb_ms += sqlite3_column_int64(st, 0) * sqlite3_column_int64(st, 1);
    l.cpu_us += sqlite3_column_int64(st, 2);
    l.durations.push_back(sqlite3_column_int64(st, 3));
    l.peak_mb_us += sqlite3_column_int64(st, 3) * sqlite3_column_int64(st, 4);
    l.cold += sqlite3_column_int64(st, 5);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  std::sort(l.durations.begin(), l.durations.end());
  return l;
}

// Rounded once, half up, from pico-dollar sums over a common denominator.
int64_t Round(__int128 num, __int128 den) {
  return static_cast<int64_t>((2 * num + den) / (2 * den));
}

class BillingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ =
        ThawServer::Start({"--price-request-micro-per-million=" + std::to_string(kRequestPico),
                           "--price-gb-second-pico=" + std::to_string(kGbSecondPico),
                           "--price-cpu-second-pico=" + std::to_string(kCpuSecondPico),
                           "--price-peak-gb-second-pico=" + std::to_string(kPeakGbSecondPico),
                           "--price-init-gb-second-pico=" + std::to_string(kInitGbSecondPico)});
  }
  json::object Get(const std::string& target, int want_status = 200) {
    auto r = server_->Call("GET", target);
    EXPECT_EQ(r.status, want_status) << target << ": " << r.body;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }
  std::unique_ptr<ThawServer> server_;
};

TEST_F(BillingTest, UsageTotalsAndCostsMatchTheLedger) {
  constexpr int kCalls = 7;
  ASSERT_EQ(server_->Deploy("hello-cpp", kHelloCpp).status, 201);
  // Its template's init is metered once it is ready: before the calls, so that no record lands
  // between the usage query and the ledger read (none is running yet: "ready" is its state).
  ASSERT_TRUE(server_->WaitForFunction("hello-cpp", "\"state\":\"ready\"", 60'000));
  for (int i = 0; i < kCalls; ++i) ASSERT_EQ(server_->Invoke("hello-cpp").status, 200);

  json::object body = Get("/v1/usage?function=hello-cpp");  // flushes the meter first
  Ledger l = ReadLedger(server_->data_dir() + "/thaw.db", "hello-cpp");
  ASSERT_EQ(l.n, kCalls);
  ASSERT_EQ(body["functions"].as_array().size(), 1u) << body;
  json::object row = body["functions"].as_array()[0].as_object();
  EXPECT_EQ(row["invocations"].as_int64(), kCalls);
  EXPECT_EQ(row["by_status"].as_object()["success"].as_int64(), kCalls);
  EXPECT_EQ(row["errors"].as_int64(), 0);
  EXPECT_EQ(row["cold_starts"].as_int64(), l.cold);
  EXPECT_EQ(row["billed_ms"].as_int64(), l.billed_ms);
  EXPECT_EQ(row["billed_mb_ms"].as_int64(), l.billed_mb_ms);
  EXPECT_EQ(row["cpu_us"].as_int64(), l.cpu_us);
  EXPECT_EQ(row["peak_mb_us"].as_int64(), l.peak_mb_us);
  // Nearest rank: p50 is the ceil(7/2) = 4th smallest, p99 the largest.
  EXPECT_DOUBLE_EQ(row["p50_duration_ms"].to_number<double>(), l.durations[3] / 1000.0);
  EXPECT_DOUBLE_EQ(row["p99_duration_ms"].to_number<double>(), l.durations[6] / 1000.0);

  // hello-cpp's instances fork from its template, whose init is billed at the init price.
  EXPECT_EQ(row["template_inits"].as_int64(), l.template_inits);
  EXPECT_EQ(l.template_inits, 1);
  // Lambda: requests x price + sum(billed_ms x memory_mb) / 1024 / 1000 GB-s x price (and the
  // template's init at its price).
  const __int128 lambda_num = __int128{l.n} * kRequestPico * 1024 * 1000 +
                              __int128{l.billed_mb_ms} * kGbSecondPico +
                              __int128{l.init_mb_ms} * kInitGbSecondPico;
  const int64_t lambda = Round(lambda_num, __int128{1'000'000} * 1024 * 1000);
  // Actual use: requests + CPU-s + sum(duration_us x max_memory_used_mb) / 1024 / 1e6 GB-s.
  const __int128 actual_num = __int128{l.n} * kRequestPico * 1024 * 1'000'000 +
                              __int128{l.cpu_us} * kCpuSecondPico * 1024 +
                              __int128{l.peak_mb_us} * kPeakGbSecondPico;
  const int64_t actual = Round(actual_num, __int128{1'000'000} * 1024 * 1'000'000);
  EXPECT_GT(lambda, 0);
  EXPECT_EQ(row["cost_lambda"].as_object()["micro"].as_int64(), lambda) << row;
  EXPECT_EQ(row["cost_actual"].as_object()["micro"].as_int64(), actual) << row;
  EXPECT_EQ(body["total"].as_object()["cost_lambda"].as_object()["micro"].as_int64(), lambda);
  char usd[32];
  std::snprintf(usd, sizeof(usd), "$%ld.%06ld", static_cast<long>(lambda / 1'000'000),
                static_cast<long>(lambda % 1'000'000));
  EXPECT_EQ(row["cost_lambda"].as_object()["usd"].as_string(), usd);
  EXPECT_EQ(body["prices"].as_object()["gb_second_pico"].as_int64(), kGbSecondPico);
}

TEST_F(BillingTest, GroupByDayAndBadParameters) {
  ASSERT_EQ(server_->Deploy("hello-cpp", kHelloCpp).status, 201);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(server_->Invoke("hello-cpp").status, 200);
  json::object body = Get("/v1/usage?group_by=day");
  ASSERT_EQ(body["days"].as_array().size(), 1u) << body;
  json::object day = body["days"].as_array()[0].as_object();
  time_t now = time(nullptr);
  tm t;
  gmtime_r(&now, &t);
  char today[16];
  std::strftime(today, sizeof(today), "%Y-%m-%d", &t);
  EXPECT_EQ(day["day"].as_string(), today);  // the test does not run across midnight UTC
  EXPECT_EQ(day["invocations"].as_int64(), 3);
  EXPECT_EQ(body["total"].as_object()["invocations"].as_int64(), 3);

  json::object tenant = Get("/v1/usage?group_by=tenant");
  ASSERT_EQ(tenant["tenants"].as_array().size(), 1u);
  EXPECT_EQ(tenant["tenants"].as_array()[0].as_object()["tenant"].as_string(), "default");
  EXPECT_EQ(tenant["tenants"].as_array()[0].as_object()["invocations"].as_int64(), 3);
  json::object bad = Get("/v1/usage?group_by=week", 400);
  EXPECT_NE(std::string(bad["errorMessage"].as_string()).find("group_by"), std::string::npos);
  json::object days = Get("/v1/advice?days=0", 400);
  EXPECT_NE(std::string(days["errorMessage"].as_string()).find("days"), std::string::npos);
  Get("/v1/advice?function=nope", 404);
}

TEST_F(BillingTest, AdviceRecommendsPerFunction) {
  ASSERT_EQ(server_->Deploy("hello-cpp", kHelloCpp).status, 201);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(server_->Invoke("hello-cpp").status, 200);
  json::object body = Get("/v1/advice?function=hello-cpp&days=1");
  ASSERT_EQ(body["functions"].as_array().size(), 1u) << body;
  json::object a = body["functions"].as_array()[0].as_object();
  EXPECT_EQ(a["function"].as_string(), "hello-cpp");
  EXPECT_EQ(a["invocations"].as_int64(), 3);
  // Three calls a day: serverless wins, and one of three calls was cold (33%), but a warm
  // instance for a day costs more than those calls.
  EXPECT_EQ(a["recommendation"].as_string(), "stay_serverless") << a;
  EXPECT_EQ(a["instances"].as_int64(), 1);
  // One $0.0208 instance for 24 h.
  EXPECT_EQ(a["always_on_cost"].as_object()["micro"].as_int64(), 499'200);
  EXPECT_GT(a["break_even_rps"].to_number<double>(), 0);
}

// A chat model that reports 1000 prompt and 3000 completion tokens per call.
constexpr char kTokenModel[] = R"PY(def handler(event, context):
    return {"id": "x", "object": "chat.completion", "created": 1, "model": event["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 3000, "total_tokens": 4000}}
)PY";

TEST(TokenBillingTest, TokensArePricedOnBothSheetsAndCountTowardBudgets) {
  // Only tokens cost: $150 per million prompt tokens, $600 per million completion tokens, so
  // one call is 1000 x 150 + 3000 x 600 micro-dollars = $1.95.
  auto server = ThawServer::Start(
      {"--price-request-micro-per-million=0", "--price-gb-second-pico=0",
       "--price-cpu-second-pico=0", "--price-peak-gb-second-pico=0", "--price-gpu-second-pico=0",
       "--price-init-gb-second-pico=0", "--price-prompt-tokens-micro-per-million=150000000",
       "--price-completion-tokens-micro-per-million=600000000"});
  const std::string dir =
      PythonBundle("chat", kTokenModel, "openai: {models: [priced], kind: chat}\n");
  ASSERT_EQ(server->Deploy("chat", dir).status, 201);
  const std::string chat = R"({"model":"priced","messages":[{"role":"user","content":"x"}]})";
  const Headers json_headers = {{"Authorization", "Bearer " + server->key()},
                                {"Content-Type", "application/json"}};
  for (int i = 0; i < 2; ++i) {
    auto r = server->Call("POST", "/v1/chat/completions", chat, json_headers, false);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto u = server->Call("GET", "/v1/usage?function=chat");
  ASSERT_EQ(u.status, 200) << u.body;
  json::object body = json::parse(u.body).as_object();
  json::object row = body["functions"].as_array()[0].as_object();
  EXPECT_EQ(row["prompt_tokens"].as_int64(), 2000) << row;
  EXPECT_EQ(row["completion_tokens"].as_int64(), 6000) << row;
  EXPECT_EQ(row["cost_lambda"].as_object()["micro"].as_int64(), 3'900'000) << row;
  EXPECT_EQ(row["cost_actual"].as_object()["micro"].as_int64(), 3'900'000) << row;
  EXPECT_EQ(body["prices"].as_object()["prompt_token_pico"].as_int64(), 150'000'000) << body;
  EXPECT_EQ(body["prices"].as_object()["completion_token_pico"].as_int64(), 600'000'000) << body;

  // A tenant with a $1 budget: its first call's tokens ($1.95) spend it, so the next is refused.
  server->CreateTenant("thrifty", R"("monthly_budget_micros":1000000)");
  const std::string key = server->CreateKey("thrifty").second;
  ASSERT_EQ(server->Deploy("thrifty.chat", dir).status, 201);
  const Headers tenant_headers = {{"Authorization", "Bearer " + key},
                                  {"Content-Type", "application/json"}};
  auto first = server->Call("POST", "/v1/chat/completions", chat, tenant_headers, false);
  ASSERT_EQ(first.status, 200) << first.body;
  auto second = server->Call("POST", "/v1/chat/completions", chat, tenant_headers, false);
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_NE(second.body.find("insufficient_quota"), std::string::npos) << second.body;
  RemoveDir(dir);
}

// One CPU-counter read per call: the reading that ends a call starts the instance's next one.
// So CPU an instance burns between calls (here a thread still spinning after its answer) is
// billed to its next call; it was billed to none when each call read the counter twice.
class CpuBetweenCallsTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
};

TEST_F(CpuBetweenCallsTest, CpuBurnedBetweenCallsIsBilledToTheNextCall) {
  DeployPython("burn",
               "import threading, time\n"
               "def spin():\n"
               "    t = time.thread_time()\n"
               "    while time.thread_time() - t < 0.4: pass\n"
               "    print('spun', flush=True)\n"
               "def handler(e, c):\n"
               "    if e.get('spin'): threading.Thread(target=spin).start()\n"
               "    return 1\n",
               "max_instances: 1\n");
  ASSERT_EQ(server_->Invoke("burn", R"({"spin":true})").status, 200);
  ASSERT_TRUE(Eventually([&] { return Logs("burn").find("spun") != std::string::npos; }, 30'000));
  ASSERT_EQ(server_->Invoke("burn", "{}").status, 200);
  auto usage = json::parse(server_->Call("GET", "/v1/usage?function=burn").body).as_object();
  auto row = usage["functions"].as_array().at(0).as_object();
  EXPECT_EQ(row["invocations"].as_int64(), 2);
  // 400 ms of the spinning thread's CPU, nearly all of it after the first answer.
  EXPECT_GE(row["cpu_us"].as_int64(), 350'000) << usage;
}

}  // namespace
}  // namespace thaw::testing

// Dynamic batching (`batch:` in thaw.yaml) on the real server: concurrent calls reach the
// handler as one {"batch": [...]} event, each caller gets its own item (or its own error), a
// failed batch fails every caller, each is metered for its share, held batches never wait past
// max_wait_ms or a call's deadline, a lone call is not held, and every invoke face batches.
//
// Batches are formed deterministically: a first call holds the function's only slot until the
// test opens a gate (a file the test writes into the deployed bundle, which instances see
// read-only); the calls sent meanwhile wait in the queue, and the server's own count says when
// all of them are there. Opening the gate frees the slot and they go as one batch.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// One handler for every test: each item of the batch says what to do with it.
constexpr char kBatched[] = R"PY(import json, os, time

def one(item, rid, size):
    if item.get("bad"):
        return {"error": "bad item %d" % item["n"]}
    if item.get("bad_typed"):
        return {"error": {"errorType": "ValueError", "errorMessage": "typed %d" % item["n"]}}
    thaw = item.get("thaw")
    if isinstance(thaw, dict) and thaw.get("endpoint") == "embeddings":
        return {"object": "list", "model": item["model"],
                "data": [{"object": "embedding", "index": 0, "embedding": [float(size), 0.5]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    if "requestContext" in item:  # a function URL's payload 2.0 event
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"face": "url", "path": item["rawPath"], "size": size})}
    return {"n": item.get("n"), "face": item.get("face"), "size": size, "request_id": rid}

def handler(event, context):
    batch = event["batch"]
    ids = context.client_context.custom["batch_request_ids"]
    assert len(ids) == len(batch), (ids, batch)
    for item in batch:
        if isinstance(item, dict) and item.get("gate"):
            gate = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "gate-open")
            while not os.path.exists(gate):
                time.sleep(0.01)
        if isinstance(item, dict) and item.get("fail_all"):
            raise RuntimeError("the whole batch fell over")
        if isinstance(item, dict) and item.get("wrong_length"):
            return [1]
    time.sleep(0.03 * len(batch))  # measurable work, so the billed shares are not all 0-1 ms
    return [one(item if isinstance(item, dict) else {}, rid, len(batch))
            for item, rid in zip(batch, ids)]
)PY";

json::object Obj(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

class BatchingTest : public ServerTest {
 protected:
  void Start(std::vector<std::string> flags = {}) {
    flags.insert(flags.end(), {"--init-timeout-ms", "120000"});
    server_ = ThawServer::Start(flags);
  }
  void Deploy(const std::string& name, const std::string& yaml) {
    DeployPython(name, kBatched, "timeout_s: 60\n" + yaml);
  }
  // The deployed bundle (a fresh server holds one), where the gate file goes.
  std::string BundleDir() const {
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(server_->data_dir() + "/bundles")) {
      if (e.is_directory()) dirs.push_back(e.path());
    }
    EXPECT_EQ(dirs.size(), 1u);
    return dirs.empty() ? "" : dirs[0].string();
  }
  // Calls `name` with {"gate": true}, which holds a slot until OpenGate(), and returns once
  // the server reports it in flight.
  std::future<HttpResult> HoldASlot(const std::string& name, int inflight = 1) {
    auto held = std::async(std::launch::async,
                           [this, name] { return server_->Invoke(name, R"({"gate":true})"); });
    EXPECT_TRUE(server_->WaitForFunction(name, "\"inflight\":" + std::to_string(inflight), 120000));
    return held;
  }
  void OpenGate() { std::ofstream(BundleDir() + "/gate-open") << "open"; }
  // Sends each payload from its own thread and waits until all of them are queued.
  std::vector<std::future<HttpResult>> SendWhileHeld(const std::string& name,
                                                     const std::vector<std::string>& payloads) {
    std::vector<std::future<HttpResult>> calls;
    for (const auto& p : payloads) {
      calls.push_back(
          std::async(std::launch::async, [this, name, p] { return server_->Invoke(name, p); }));
    }
    EXPECT_TRUE(
        server_->WaitForFunction(name, "\"queued\":" + std::to_string(payloads.size()), 60000));
    return calls;
  }
  std::string Logs(const std::string& name) const {
    return server_->Call("GET", "/v1/functions/" + name + "/logs?limit=10000").body;
  }
};

TEST_F(BatchingTest, EachCallerGetsItsOwnItemAndItsShareOfTheBill) {
  Start();
  Deploy("b", "max_instances: 1\nbatch: {max_size: 8, max_wait_ms: 5}\n");
  auto held = HoldASlot("b");
  std::vector<std::string> payloads;
  for (int i = 0; i < 5; ++i) {
    payloads.push_back(i == 2   ? R"({"n":2,"bad":true})"
                       : i == 3 ? R"({"n":3,"bad_typed":true})"
                                : "{\"n\":" + std::to_string(i) + "}");
  }
  auto calls = SendWhileHeld("b", payloads);
  OpenGate();
  ASSERT_EQ(held.get().status, 200);
  int64_t billed_sum = 0;
  std::vector<int64_t> shares;
  for (int i = 0; i < 5; ++i) {
    HttpResult r = calls[i].get();
    const int64_t billed = std::stoll(r.Header("x-thaw-billed-ms"));
    billed_sum += billed;
    shares.push_back(billed);
    if (i == 2) {  // its item alone failed
      EXPECT_EQ(r.status, 502) << r.body;
      EXPECT_EQ(JsonField(r.body, "errorType"), "BatchItemError");
      EXPECT_EQ(JsonField(r.body, "errorMessage"), "bad item 2");
      continue;
    }
    if (i == 3) {
      EXPECT_EQ(r.status, 502) << r.body;
      EXPECT_EQ(JsonField(r.body, "errorType"), "ValueError");
      EXPECT_EQ(JsonField(r.body, "errorMessage"), "typed 3");
      continue;
    }
    ASSERT_EQ(r.status, 200) << r.body;
    json::object o = Obj(r.body);
    EXPECT_EQ(o["n"].as_int64(), i);
    EXPECT_EQ(o["size"].as_int64(), 5) << "all five in one batch";
    // Its item carries its own request id: the one its answer names.
    EXPECT_EQ(o["request_id"].as_string(), r.Header("x-thaw-request-id"));
  }
  // The batch's billed duration, from its REPORT line, split evenly among the five.
  const std::string logs = Logs("b");
  std::smatch m;
  std::regex batch_line("BATCH RequestId: [^ ]+ BatchId: ([^ ]+) Position: 1/5");
  ASSERT_TRUE(std::regex_search(logs, m, batch_line)) << logs;
  std::regex report("REPORT RequestId: " + m[1].str() + "\\\\tDuration: [0-9.]+ ms\\\\tBilled " +
                    "Duration: ([0-9]+) ms");
  std::smatch rm;
  ASSERT_TRUE(std::regex_search(logs, rm, report)) << logs;
  const int64_t batch_billed = std::stoll(rm[1].str());
  EXPECT_GE(batch_billed, 150);  // 5 x 30 ms of work
  EXPECT_EQ(billed_sum, batch_billed);
  for (int64_t s : shares) EXPECT_LE(std::abs(s - batch_billed / 5), 1) << s;

  // Usage: 6 batched calls (the gate's batch of 1 and the five) in 2 batches; /metrics agrees.
  auto usage = server_->Call("GET", "/v1/usage?function=b");
  ASSERT_EQ(usage.status, 200) << usage.body;
  json::object total = Obj(usage.body)["total"].as_object();
  EXPECT_EQ(total["batched_invocations"].as_int64(), 6) << usage.body;
  EXPECT_DOUBLE_EQ(total["mean_batch_size"].to_number<double>(), 3.0) << usage.body;
  EXPECT_EQ(total["errors"].as_int64(), 2) << usage.body;
  const std::string metrics = server_->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("thaw_batch_size_count{function=\"b\"} 2\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("thaw_batch_size_bucket{function=\"b\",le=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics.find("thaw_batch_size_bucket{function=\"b\",le=\"8\"} 2\n"), std::string::npos);
  EXPECT_NE(metrics.find("thaw_batch_size_sum{function=\"b\"} 6\n"), std::string::npos);
}

TEST_F(BatchingTest, WholeBatchFailureFailsEveryCaller) {
  Start();
  Deploy("b", "max_instances: 1\nbatch: {max_size: 8, max_wait_ms: 5}\n");
  for (const char* poison : {R"({"fail_all":true})", R"({"wrong_length":true})"}) {
    SCOPED_TRACE(poison);
    fs::remove(BundleDir() + "/gate-open");
    auto held = HoldASlot("b");
    auto calls = SendWhileHeld("b", {R"({"n":1})", poison, R"({"n":3})"});
    OpenGate();
    ASSERT_EQ(held.get().status, 200);
    for (auto& c : calls) {
      HttpResult r = c.get();
      EXPECT_EQ(r.status, 502) << r.body;
      if (std::string(poison).find("fail_all") != std::string::npos) {
        EXPECT_EQ(JsonField(r.body, "errorType"), "RuntimeError") << r.body;
        EXPECT_EQ(JsonField(r.body, "errorMessage"), "the whole batch fell over") << r.body;
      } else {
        EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.InvalidBatchResponse") << r.body;
        EXPECT_NE(JsonField(r.body, "errorMessage").find("a list of 1 items"), std::string::npos)
            << r.body;
      }
    }
  }
}

TEST_F(BatchingTest, LoneCallIsNotHeldForMaxWait) {
  Start();
  Deploy("b", "batch: {max_size: 16, max_wait_ms: 10000}\n");
  ASSERT_EQ(server_->Invoke("b", R"({"n":0})").status, 200);  // cold start
  for (int i = 1; i <= 3; ++i) {
    const auto start = SteadyClock::now();
    HttpResult r = server_->Invoke("b", "{\"n\":" + std::to_string(i) + "}");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Obj(r.body)["size"].as_int64(), 1);
    EXPECT_LT(SteadyClock::now() - start, std::chrono::seconds(5)) << "held for max_wait_ms?";
  }
}

// Two warm instances: the gate holds one and the other is free. A call that arrives now may
// wait for others to join (something is running), but only for max_wait_ms.
TEST_F(BatchingTest, HeldCallGoesAfterMaxWaitWhileASlotIsFree) {
  Start();
  Deploy("b", "min_instances: 2\nmax_instances: 2\nbatch: {max_size: 16, max_wait_ms: 300}\n");
  ASSERT_TRUE(server_->WaitForFunction("b", "\"ready\":2", 120000));
  auto held = HoldASlot("b");
  const auto start = SteadyClock::now();
  HttpResult r = server_->Invoke("b", R"({"n":1})");
  const auto waited = SteadyClock::now() - start;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Obj(r.body)["size"].as_int64(), 1);
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_EQ(held.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the held slot's call must still be running";
  OpenGate();
  EXPECT_EQ(held.get().status, 200);
}

// A call is held no longer than its own deadline: the longest it may wait for an instance
// (queue_timeout_ms, 1 s here), even when max_wait_ms is far longer. Two warm instances, one
// held by the gate.
TEST_F(BatchingTest, HeldCallGoesByItsDeadline) {
  Start({"--queue-timeout-ms", "1000"});
  Deploy("b", "min_instances: 2\nmax_instances: 2\nbatch: {max_size: 16, max_wait_ms: 10000}\n");
  ASSERT_TRUE(server_->WaitForFunction("b", "\"ready\":2", 120000));
  auto held = HoldASlot("b");
  const auto start = SteadyClock::now();
  HttpResult r = server_->Invoke("b", R"({"n":1})");
  const auto waited = SteadyClock::now() - start;
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GE(waited, std::chrono::milliseconds(1000));
  EXPECT_LT(waited, std::chrono::milliseconds(8000)) << "held for max_wait_ms";
  OpenGate();
  EXPECT_EQ(held.get().status, 200);
}

// Per-instance concurrency counts batches: a runtime serving two events at once (threads, each
// with its own GET /next) runs a full batch while the gate holds its other slot.
TEST_F(BatchingTest, ConcurrencyCountsBatches) {
  Start();
  const std::string bootstrap = R"(#!/usr/bin/python3 -S
import json, os, threading, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
gate = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "gate-open")
def loop():
    while True:
        with urllib.request.urlopen(api + "next") as r:
            rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
            batch = json.loads(r.read())["batch"]
        if any(e.get("gate") for e in batch):
            while not os.path.exists(gate):
                time.sleep(0.01)
        out = json.dumps([{"n": e.get("n"), "size": len(batch)} for e in batch]).encode()
        urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=out,
                                                      method="POST")).read()
threads = [threading.Thread(target=loop) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
)";
  dirs_.push_back(
      MakeBundle({{"thaw.yaml",
                   "runtime: provided\nconcurrency: 2\nmax_instances: 1\ntimeout_s: 60\n"
                   "batch: {max_size: 4, max_wait_ms: 10000}\n"},
                  {"bootstrap", bootstrap}},
                 {"bootstrap"}));
  ASSERT_EQ(server_->Deploy("c", dirs_.back()).status, 201);
  auto held = HoldASlot("c");
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      return server_->Invoke("c", "{\"n\":" + std::to_string(i) + "}");
    }));
  }
  for (int i = 0; i < 4; ++i) {
    HttpResult r = calls[i].get();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Obj(r.body)["n"].as_int64(), i);
    EXPECT_EQ(Obj(r.body)["size"].as_int64(), 4) << "a full batch goes at once";
  }
  EXPECT_EQ(held.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the gate's batch must still hold the other slot";
  OpenGate();
  EXPECT_EQ(held.get().status, 200);
}

// Native, Lambda, function URL and OpenAI embeddings calls, sent together, share one batch.
TEST_F(BatchingTest, EveryInvokeFaceBatches) {
  Start();
  Deploy("b",
         "max_instances: 1\nbatch: {max_size: 8, max_wait_ms: 5}\n"
         "openai: {models: [tiny-embed], kind: embeddings}\n");
  auto held = HoldASlot("b");
  const Headers json_type = {{"Content-Type", "application/json"}};
  std::vector<std::future<HttpResult>> calls;
  calls.push_back(
      std::async(std::launch::async, [&] { return server_->Invoke("b", R"({"face":"native"})"); }));
  calls.push_back(std::async(std::launch::async, [&] {
    return server_->Call("POST", "/2015-03-31/functions/b/invocations", R"({"face":"lambda"})");
  }));
  calls.push_back(std::async(std::launch::async,
                             [&] { return server_->Call("POST", "/fn/b/some/path", "hello"); }));
  calls.push_back(std::async(std::launch::async, [&] {
    return server_->Call("POST", "/v1/embeddings", R"({"model":"tiny-embed","input":"abc"})",
                         json_type);
  }));
  ASSERT_TRUE(server_->WaitForFunction("b", "\"queued\":4", 60000));
  OpenGate();
  ASSERT_EQ(held.get().status, 200);
  HttpResult native = calls[0].get(), lambda = calls[1].get(), url = calls[2].get(),
             embed = calls[3].get();
  ASSERT_EQ(native.status, 200) << native.body;
  EXPECT_EQ(JsonField(native.body, "face"), "native");
  EXPECT_EQ(Obj(native.body)["size"].as_int64(), 4);
  ASSERT_EQ(lambda.status, 200) << lambda.body;
  EXPECT_EQ(JsonField(lambda.body, "face"), "lambda");
  EXPECT_EQ(Obj(lambda.body)["size"].as_int64(), 4);
  ASSERT_EQ(url.status, 200) << url.body;
  EXPECT_EQ(JsonField(url.body, "face"), "url");
  EXPECT_EQ(JsonField(url.body, "path"), "/some/path");
  EXPECT_EQ(Obj(url.body)["size"].as_int64(), 4);
  ASSERT_EQ(embed.status, 200) << embed.body;
  json::array e = Obj(embed.body)["data"].as_array()[0].as_object()["embedding"].as_array();
  EXPECT_EQ(e[0].to_number<double>(), 4.0) << embed.body;
}

}  // namespace
}  // namespace thaw::testing

// The durable Event queue (queue/event_queue.h): its state names, the event invoke config's
// ranges, the crash contract on a real SQLite file, and the retry policy (gateway/invoker.h).
#include "queue/event_queue.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <set>
#include <thread>

#include "common/files.h"
#include "gateway/invoker.h"
#include "gateway/webhook.h"
#include "queue/destination.h"

namespace thaw::queue {
namespace {

InvokeConfig Config(std::optional<int64_t> retries, std::optional<int64_t> age) {
  InvokeConfig c;
  c.max_retry_attempts = retries;
  c.max_event_age_s = age;
  return c;
}

Ending End(bool succeeded, const std::string& condition, const std::string& error = "") {
  Ending e;
  e.succeeded = succeeded;
  e.condition = condition;
  e.error = error;
  return e;
}

Delivery Hook(const std::string& url, bool on_failure) {
  Delivery d;
  d.function = "f";
  d.url = url;
  d.record = "{}";
  d.on_failure = on_failure;
  return d;
}

gateway::RetryPolicy Policy(int64_t base_ms, int max_attempts, int64_t max_age_us) {
  gateway::RetryPolicy p;
  p.base_ms = base_ms;
  p.max_attempts = max_attempts;
  p.max_age_us = max_age_us;
  return p;
}

class EventQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-event-queue-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::unique_ptr<EventQueue> Open() {
    auto q = EventQueue::Open(QueueOptions{.db_path = dir_ + "/thaw.db"});
    EXPECT_TRUE(q.ok()) << q.status().message();
    return q.ok() ? std::move(*q) : nullptr;
  }
  static Event Make(const std::string& id, const std::string& function = "f") {
    Event e;
    e.request_id = id;
    e.function = function;
    e.payload = R"({"n":1})";
    return e;
  }
  std::string dir_;
};

TEST(EventStateTest, NamesRoundTrip) {
  for (EventState s : {EventState::kQueued, EventState::kRunning, EventState::kSucceeded,
                       EventState::kFailed, EventState::kForwarded}) {
    EXPECT_EQ(ParseState(StateName(s)), s);
  }
  EXPECT_FALSE(ParseState("done"));
}

TEST(InvokeConfigTest, RangesAreLambdas) {
  struct Case {
    std::optional<int64_t> retries, age;
    bool ok;
  };
  for (const Case& c : std::vector<Case>{{{}, {}, true},
                                         {0, 60, true},
                                         {2, 21600, true},
                                         {3, {}, false},
                                         {-1, {}, false},
                                         {{}, 59, false},
                                         {{}, 21601, false}}) {
    EXPECT_EQ(ValidateInvokeConfig(Config(c.retries, c.age)).ok(), c.ok)
        << c.retries.value_or(-9) << " " << c.age.value_or(-9);
  }
}

TEST_F(EventQueueTest, RecoverRequeuesRunningAndSkipsFinished) {
  {
    auto q = Open();
    Event a = Make("a"), b = Make("b"), c = Make("c"), d = Make("d", "g");
    ASSERT_TRUE(q->Add(a).ok());
    ASSERT_TRUE(q->Add(b).ok());
    ASSERT_TRUE(q->Add(c).ok());
    ASSERT_TRUE(q->Add(d).ok());
    EXPECT_LT(a.id, b.id);
    ASSERT_TRUE(q->MarkRunning(b.id, 2).ok());
    ASSERT_TRUE(q->MarkRunning(c.id, 1).ok());
    ASSERT_TRUE(q->MarkDone(c.id, true).ok());
    ASSERT_TRUE(q->MarkRunning(d.id, 1).ok());
    ASSERT_TRUE(q->MarkQueued(d.id, 12345).ok());
    auto depths = q->Depths();
    ASSERT_TRUE(depths.ok());
    EXPECT_EQ((*depths)["f"].events, 2);
    EXPECT_EQ((*depths)["g"].events, 1);
  }  // the "crash": a new connection sees only what was committed
  auto q = Open();
  auto events = q->Recover();
  ASSERT_TRUE(events.ok()) << events.status().message();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].request_id, "a");
  EXPECT_EQ((*events)[0].state, EventState::kQueued);
  EXPECT_EQ((*events)[1].request_id, "b");
  EXPECT_EQ((*events)[1].state, EventState::kRunning);  // cut short: re-run as try 2
  EXPECT_EQ((*events)[1].attempts, 2);
  EXPECT_EQ((*events)[1].payload, R"({"n":1})");
  EXPECT_EQ((*events)[2].next_at_us, 12345);
  auto b = q->Get((*events)[1].id);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->state, EventState::kQueued);
}

TEST_F(EventQueueTest, ConfigsPutGetListDelete) {
  auto q = Open();
  EXPECT_EQ(q->GetConfig("f", "").status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(q->PutConfig("f", "", Config(5, {})).ok());
  ASSERT_TRUE(q->PutConfig("f", "", Config(1, {})).ok());
  ASSERT_TRUE(q->PutConfig("f", "live", Config({}, 120)).ok());
  auto got = q->GetConfig("f", "");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->max_retry_attempts, 1);
  EXPECT_FALSE(got->max_event_age_s);
  auto list = q->ListConfigs("f");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].first, "live");
  ASSERT_TRUE(q->DeleteConfig("f", "live").ok());
  EXPECT_EQ(q->DeleteConfig("f", "live").code(), StatusCode::kNotFound);
}

TEST(RetryPolicyTest, ConfigAndAgeBoundRetries) {
  using gateway::AsyncRetryDelayMs;
  using gateway::RetryPolicy;
  using Kind = pool::Result::Kind;
  const RetryPolicy fast = Policy(10, 3, 21600LL * 1'000'000);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kFunctionError, 1, fast), 10);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kFunctionError, 2, fast), 20);
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kFunctionError, 3, fast));
  const RetryPolicy none = Policy(1000, 1, 21600LL * 1'000'000);
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kFunctionError, 1, none));
  const RetryPolicy young = Policy(1000, 3, 60'000'000);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kThrottled, 1, young, 58'000'000), 1000);
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kThrottled, 1, young, 59'500'000));
  EXPECT_EQ(gateway::AttemptRequestId("r", 1), "r");
  EXPECT_EQ(gateway::AttemptRequestId("r", 3), "r-3");
}

// An event that fails with no destination is a dead letter; one whose record goes to a
// destination is forwarded, and the record is committed with its end (one transaction).
TEST_F(EventQueueTest, FinishKeepsDeadLettersAndCommitsTheRecordWithTheEnd) {
  auto q = Open();
  ASSERT_TRUE(q);
  Event dead = Make("dead"), sent = Make("sent"), hooked = Make("hooked");
  ASSERT_TRUE(q->Add(dead).ok());
  ASSERT_TRUE(q->Add(sent).ok());
  ASSERT_TRUE(q->Add(hooked).ok());
  Ending plain = End(false, "RetriesExhausted", "E: boom");
  ASSERT_TRUE(q->Finish(dead.id, plain).ok());
  Ending forward = End(false, "RetriesExhausted");
  forward.forward = Make("record-1", "dest");
  ASSERT_TRUE(q->Finish(sent.id, forward).ok());
  EXPECT_GT(forward.forward->id, hooked.id);
  Ending hook = End(true, "Success");
  hook.delivery = Hook("http://127.0.0.1:9/x", false);
  ASSERT_TRUE(q->Finish(hooked.id, hook).ok());

  EXPECT_EQ(q->Get(dead.id)->state, EventState::kFailed);
  EXPECT_EQ(q->Get(dead.id)->error, "E: boom");
  EXPECT_EQ(q->Get(dead.id)->condition, "RetriesExhausted");
  EXPECT_EQ(q->Get(sent.id)->state, EventState::kForwarded);
  EXPECT_EQ(q->Get(forward.forward->id)->function, "dest");
  EXPECT_EQ(q->Get(hooked.id)->state, EventState::kSucceeded);
  // The delivery outlives a restart until it ends.
  q.reset();
  q = Open();
  auto pending = q->PendingDeliveries();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].url, "http://127.0.0.1:9/x");
  EXPECT_EQ((*pending)[0].event_id, hooked.id);
  ASSERT_TRUE(q->MarkDelivery((*pending)[0].id, 2, 5).ok());
  EXPECT_EQ((*q->PendingDeliveries())[0].attempts, 2);
  ASSERT_TRUE(q->EndDelivery((*pending)[0], true).ok());
  EXPECT_TRUE(q->PendingDeliveries()->empty());
}

// An OnFailure record that could not be delivered leaves its event a dead letter.
TEST_F(EventQueueTest, UndeliveredFailureRecordMakesADeadLetter) {
  auto q = Open();
  ASSERT_TRUE(q);
  Event e = Make("e");
  ASSERT_TRUE(q->Add(e).ok());
  Ending end = End(false, "EventAgeExceeded");
  end.delivery = Hook("http://h/", true);
  ASSERT_TRUE(q->Finish(e.id, end).ok());
  EXPECT_EQ(q->Get(e.id)->state, EventState::kForwarded);
  ASSERT_TRUE(q->EndDelivery(*end.delivery, false).ok());
  EXPECT_EQ(q->Get(e.id)->state, EventState::kFailed);
}

TEST_F(EventQueueTest, ListPagesNewestFirstByState) {
  auto q = Open();
  ASSERT_TRUE(q);
  std::vector<Event> events;
  for (int i = 0; i < 5; ++i) {
    events.push_back(Make("r" + std::to_string(i)));
    ASSERT_TRUE(q->Add(events.back()).ok());
  }
  Event other = Make("other", "g");
  ASSERT_TRUE(q->Add(other).ok());
  for (int i : {1, 3, 4}) {
    Ending end = End(false, "RetriesExhausted");
    ASSERT_TRUE(q->Finish(events[i].id, end).ok());
  }
  auto page = q->List("f", std::nullopt, 0, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].request_id, "r4");
  EXPECT_EQ(page->events[1].request_id, "r3");
  auto rest = q->List("f", std::nullopt, page->next, 10);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->events.size(), 3u);
  EXPECT_EQ(rest->events[2].request_id, "r0");
  EXPECT_EQ(rest->next, 0);
  auto failed = q->List("f", EventState::kFailed, 0, 10);
  ASSERT_TRUE(failed.ok());
  ASSERT_EQ(failed->events.size(), 3u);
  EXPECT_EQ(failed->events[0].request_id, "r4");
  EXPECT_TRUE(q->List("g", EventState::kFailed, 0, 10)->events.empty());
}

// Redrive queues dead letters again as new (age and retries start over) but keeps counting
// tries, so each new try has a request id of its own; an id that is not a dead letter of the
// function changes nothing.
TEST_F(EventQueueTest, RedriveQueuesDeadLettersAgainAllOrNothing) {
  auto q = Open();
  ASSERT_TRUE(q);
  Event a = Make("a"), b = Make("b"), live = Make("live");
  for (Event* e : {&a, &b, &live}) ASSERT_TRUE(q->Add(*e).ok());
  for (Event* e : {&a, &b}) {
    ASSERT_TRUE(q->MarkRunning(e->id, 3).ok());
    Ending end = End(false, "RetriesExhausted", "E: x");
    ASSERT_TRUE(q->Finish(e->id, end).ok());
  }
  auto bad = q->Redrive("f", {"a", "live"});
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bad.status().message().find("live"), std::string::npos);
  EXPECT_EQ(q->Get(a.id)->state, EventState::kFailed);
  EXPECT_EQ(q->Redrive("g", {"a"}).status().code(), StatusCode::kNotFound);

  auto one = q->Redrive("f", {"a"});
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  const Event got = *q->Get(a.id);
  EXPECT_EQ(got.state, EventState::kQueued);
  EXPECT_EQ(got.attempts, 3);
  EXPECT_EQ(got.attempts_before, 3);
  EXPECT_TRUE(got.error.empty());
  EXPECT_GE(got.created_us, a.created_us);
  auto all = q->Redrive("f", {});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].request_id, "b");
  EXPECT_TRUE(q->Redrive("f", {})->empty());
}

// Concurrent Adds share commits and every one of them is committed with its own id.
TEST_F(EventQueueTest, ConcurrentAddsAreEachCommitted) {
  auto q = Open();
  ASSERT_TRUE(q);
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> threads;
  std::vector<std::vector<int64_t>> ids(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Event e = Make("t" + std::to_string(t) + "-" + std::to_string(i));
        ASSERT_TRUE(q->Add(e).ok());
        ids[t].push_back(e.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> all;
  for (const auto& v : ids) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  q.reset();
  q = Open();
  auto recovered = q->Recover();
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->size(), static_cast<size_t>(kThreads * kEach));
}

TEST_F(EventQueueTest, ConfigKeepsDestinations) {
  auto q = Open();
  ASSERT_TRUE(q);
  InvokeConfig c;
  c.on_success = "acme.sink:live";
  c.on_failure = "https://example.com/hook";
  ASSERT_TRUE(q->PutConfig("acme.f", "$LATEST", c).ok());
  auto got = q->GetConfig("acme.f", "$LATEST");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->on_success, "acme.sink:live");
  EXPECT_EQ(got->on_failure, "https://example.com/hook");
  EXPECT_TRUE(IsWebhook(*got->on_failure));
  EXPECT_FALSE(IsWebhook(*got->on_success));
}

TEST(DestinationTest, RecordHasLambdasShape) {
  RecordInput in;
  in.request_id = "r1";
  in.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST";
  in.condition = "RetriesExhausted";
  in.invoke_count = 3;
  in.payload = R"({"x":1})";
  in.executed_version = "$LATEST";
  in.function_error = "Unhandled";
  in.response = R"({"errorType":"ValueError","errorMessage":"boom"})";
  in.timestamp_us = 1'700'000'000'123'456;
  const auto v = boost::json::parse(InvocationRecord(in)).as_object();
  EXPECT_EQ(v.at("version").as_string(), "1.0");
  EXPECT_EQ(v.at("timestamp").as_string(), "2023-11-14T22:13:20.123Z");
  const auto& rc = v.at("requestContext").as_object();
  EXPECT_EQ(rc.at("requestId").as_string(), "r1");
  EXPECT_EQ(rc.at("condition").as_string(), "RetriesExhausted");
  EXPECT_EQ(rc.at("approximateInvokeCount").as_int64(), 3);
  EXPECT_EQ(rc.at("functionArn").as_string(), in.function_arn);
  EXPECT_EQ(v.at("requestPayload").as_object().at("x").as_int64(), 1);
  const auto& resp = v.at("responseContext").as_object();
  EXPECT_EQ(resp.at("statusCode").as_int64(), 200);
  EXPECT_EQ(resp.at("executedVersion").as_string(), "$LATEST");
  EXPECT_EQ(resp.at("functionError").as_string(), "Unhandled");
  EXPECT_EQ(v.at("responsePayload").as_object().at("errorType").as_string(), "ValueError");
  // A success has no functionError; an answer that is not JSON stays a string.
  in.function_error.clear();
  in.response = "plain text";
  const auto ok = boost::json::parse(InvocationRecord(in)).as_object();
  EXPECT_FALSE(ok.at("responseContext").as_object().contains("functionError"));
  EXPECT_EQ(ok.at("responsePayload").as_string(), "plain text");
}

// RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
TEST(DestinationTest, SignatureIsHexHmacSha256) {
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(DestinationTest, ResolvesNamesArnsAndUrlsWithinTheTenant) {
  using gateway::ResolveDestination;
  EXPECT_EQ(*ResolveDestination("sink", "acme.f"), "acme.sink");
  EXPECT_EQ(*ResolveDestination("sink:live", "f"), "sink:live");
  EXPECT_EQ(*ResolveDestination("arn:aws:lambda:us-east-1:000000000000:function:sink", "f"),
            "sink");
  EXPECT_EQ(*ResolveDestination("https://example.com/h?t=1", "acme.f"),
            "https://example.com/h?t=1");
  EXPECT_EQ(ResolveDestination("arn:aws:lambda:us-east-1:000000000000:function:sink", "acme.f")
                .status()
                .code(),
            StatusCode::kInvalidArgument);  // another account
  EXPECT_FALSE(ResolveDestination("arn:aws:sqs:us-east-1:000000000000:q", "f").ok());
  EXPECT_FALSE(ResolveDestination("f", "f").ok());  // itself
  EXPECT_FALSE(ResolveDestination("http://", "f").ok());
  EXPECT_FALSE(ResolveDestination("", "f").ok());
  EXPECT_FALSE(ResolveDestination("bad name", "f").ok());
}

TEST(DestinationTest, InternalAddressesAreRecognised) {
  using boost::asio::ip::make_address;
  for (const char* internal :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1"}) {
    EXPECT_TRUE(gateway::IsInternalAddress(make_address(internal))) << internal;
  }
  for (const char* external :
       {"8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1", "::ffff:1.1.1.1"}) {
    EXPECT_FALSE(gateway::IsInternalAddress(make_address(external))) << external;
  }
}

TEST(DestinationTest, DeliveryBackoffDoublesToACap) {
  EXPECT_EQ(gateway::DeliveryDelayMs(1, 100), 100);
  EXPECT_EQ(gateway::DeliveryDelayMs(2, 100), 200);
  EXPECT_EQ(gateway::DeliveryDelayMs(4, 100), 800);
  EXPECT_EQ(gateway::DeliveryDelayMs(7, 100), 6000);
  EXPECT_EQ(gateway::DeliveryDelayMs(30, 100), 6000);
}

}  // namespace
}  // namespace thaw::queue

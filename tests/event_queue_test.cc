// The durable Event queue (queue/event_queue.h): its state names, the event invoke config's
// ranges, the crash contract on a real SQLite file, and the retry policy (gateway/invoker.h).
#include "queue/event_queue.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "common/files.h"
#include "gateway/invoker.h"

namespace thaw::queue {
namespace {

InvokeConfig Config(std::optional<int64_t> retries, std::optional<int64_t> age) {
  InvokeConfig c;
  c.max_retry_attempts = retries;
  c.max_event_age_s = age;
  return c;
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
  for (EventState s :
       {EventState::kQueued, EventState::kRunning, EventState::kSucceeded, EventState::kFailed}) {
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

}  // namespace
}  // namespace thaw::queue

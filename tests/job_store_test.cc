// Jobs (queue/job_store.h) on a real SQLite file: the lifecycle, cancel racing a finish,
// recovery after a crash, paging, retention on explicit times, webhook filters and secrets,
// and the HMAC that signs webhook bodies (common/hmac.h).
#include "queue/job_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "common/files.h"
#include "common/hmac.h"
#include "common/ids.h"

namespace thaw::queue {
namespace {

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-job-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    (void)RemoveTree(dir_);
  }
  std::unique_ptr<JobStore> Open() {
    auto s = JobStore::Open(dir_ + "/thaw.db");
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }
  Job Add(const std::string& function, int64_t created_us, std::string id = NewRequestId()) {
    Job j;
    j.id = std::move(id);
    j.function = function;
    j.input = R"({"n":1})";
    j.created_us = created_us;
    EXPECT_TRUE(store_->Add(j).ok());
    return j;
  }
  std::string dir_;
  std::unique_ptr<JobStore> store_;
};

TEST_F(JobStoreTest, LifecycleKeepsOutputErrorAndFigures) {
  Job j = Add("hello", 1'000'000);
  auto got = store_->Get(j.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kQueued);
  EXPECT_EQ(got->input, R"({"n":1})");
  ASSERT_TRUE(store_->MarkRunning(j.id, 2'000'000, "cold").ok());
  ASSERT_TRUE(store_->SetOutput(j.id, "partial").ok());
  EXPECT_EQ(store_->Get(j.id)->output, "partial");
  EXPECT_EQ(store_->Get(j.id)->status, JobStatus::kRunning);
  Job done = *store_->Get(j.id);
  done.status = JobStatus::kSucceeded;
  done.output = "partial and the rest";
  done.completed_us = 3'000'000;
  done.duration_us = 999'500;
  done.billed_ms = 1000;
  ASSERT_TRUE(store_->Finish(done).ok());
  got = store_->Get(j.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kSucceeded);
  EXPECT_EQ(got->output, "partial and the rest");
  EXPECT_EQ(got->start_kind, "cold");
  EXPECT_EQ(got->started_us, 2'000'000);
  EXPECT_EQ(got->completed_us, 3'000'000);
  EXPECT_EQ(got->billed_ms, 1000);
  EXPECT_EQ(store_->Get("nope").status().code(), StatusCode::kNotFound);
}

TEST_F(JobStoreTest, CancelWinsOverALaterFinishAndStopsAQueuedJobFromStarting) {
  Job queued = Add("hello", 1);
  auto was = store_->Cancel(queued.id, 5);
  ASSERT_TRUE(was.ok());
  EXPECT_EQ(*was, JobStatus::kQueued);
  EXPECT_EQ(store_->MarkRunning(queued.id, 6, "warm").code(), StatusCode::kFailedPrecondition);

  Job running = Add("hello", 2);
  ASSERT_TRUE(store_->MarkRunning(running.id, 3, "warm").ok());
  EXPECT_EQ(*store_->Cancel(running.id, 10), JobStatus::kRunning);
  // The invocation cut short reports back: its figures count, its status stays canceled.
  Job cut = *store_->Get(running.id);
  cut.status = JobStatus::kFailed;
  cut.completed_us = 11;
  cut.billed_ms = 7;
  ASSERT_TRUE(store_->Finish(cut).ok());
  Job got = *store_->Get(running.id);
  EXPECT_EQ(got.status, JobStatus::kCanceled);
  EXPECT_EQ(got.billed_ms, 7);
  EXPECT_EQ(got.completed_us, 10);
  // Canceling a finished job changes nothing.
  EXPECT_EQ(*store_->Cancel(running.id, 20), JobStatus::kCanceled);
  EXPECT_EQ(store_->Cancel("nope", 1).status().code(), StatusCode::kNotFound);
}

TEST_F(JobStoreTest, RecoverRequeuesRunningJobsAfterACrash) {
  Job a = Add("hello", 1), b = Add("hello", 2), c = Add("hello", 3);
  ASSERT_TRUE(store_->MarkRunning(b.id, 5, "cold").ok());
  Job done = *store_->Get(c.id);
  done.status = JobStatus::kSucceeded;
  ASSERT_TRUE(store_->Finish(done).ok());
  store_.reset();  // as a kill -9 would leave it: everything Add returned is committed
  store_ = Open();
  auto jobs = store_->Recover();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].id, a.id);
  EXPECT_EQ((*jobs)[1].id, b.id);
  EXPECT_EQ((*jobs)[1].status, JobStatus::kRunning);
  EXPECT_EQ(store_->Get(b.id)->status, JobStatus::kQueued);
}

TEST_F(JobStoreTest, ListPagesNewestFirstPerFunction) {
  std::vector<std::string> ids;
  // Ids order as time does (UUIDv7 within a millisecond does not: these are spelled out).
  for (int i = 0; i < 5; ++i) ids.push_back(Add("hello", i + 1, "job-" + std::to_string(i)).id);
  Add("other", 9, "job-9");
  auto first = store_->List("hello", 2, "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->jobs.size(), 2u);
  EXPECT_EQ(first->jobs[0].id, ids[4]);
  EXPECT_EQ(first->jobs[1].id, ids[3]);
  auto second = store_->List("hello", 2, first->next);
  ASSERT_EQ(second->jobs.size(), 2u);
  EXPECT_EQ(second->jobs[0].id, ids[2]);
  auto third = store_->List("hello", 2, second->next);
  ASSERT_EQ(third->jobs.size(), 1u);
  EXPECT_EQ(third->jobs[0].id, ids[0]);
  EXPECT_TRUE(third->next.empty());
}

TEST_F(JobStoreTest, RetentionDropsInputAndOutputOfOldJobsAndKeepsTheirMetadata) {
  const int64_t hour = 3'600'000'000LL;
  Job old_job = Add("hello", 1 * hour), new_job = Add("hello", 20 * hour), open = Add("hello", 1);
  for (Job* j : {&old_job, &new_job}) {
    Job d = *store_->Get(j->id);
    d.status = JobStatus::kSucceeded;
    d.output = "result";
    d.completed_us = j->created_us + 1;
    d.billed_ms = 12;
    ASSERT_TRUE(store_->Finish(d).ok());
  }
  // Now is 26 hours in, retention 24 hours: finished before hour 2 goes.
  auto dropped = store_->DropOutputs(26 * hour - 24 * hour);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 1);
  Job o = *store_->Get(old_job.id);
  EXPECT_TRUE(o.output_dropped);
  EXPECT_EQ(o.output, "");
  EXPECT_EQ(o.input, "");
  EXPECT_EQ(o.status, JobStatus::kSucceeded);
  EXPECT_EQ(o.billed_ms, 12);
  Job n = *store_->Get(new_job.id);
  EXPECT_FALSE(n.output_dropped);
  EXPECT_EQ(n.output, "result");
  EXPECT_FALSE(store_->Get(open.id)->output_dropped);
  EXPECT_EQ(*store_->DropOutputs(26 * hour - 24 * hour), 0);
}

TEST_F(JobStoreTest, ScheduleStateRoundTrips) {
  EXPECT_EQ(*store_->ScheduleState("hello", "rate(1 minute)"), (std::pair<int64_t, int64_t>{0, 0}));
  ASSERT_TRUE(store_->SetScheduleState("hello", "rate(1 minute)", 5, 65).ok());
  EXPECT_EQ(*store_->ScheduleState("hello", "rate(1 minute)"),
            (std::pair<int64_t, int64_t>{5, 65}));
}

TEST(WebhookEventsTest, ParsesTheFilterAndNamesAnUnknownEvent) {
  EXPECT_EQ(*ParseWebhookEvents({"start", "completed"}), kWebhookStart | kWebhookCompleted);
  EXPECT_EQ(*ParseWebhookEvents({"output", "logs"}), kWebhookOutput | kWebhookLogs);
  auto bad = ParseWebhookEvents({"start", "finished"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'finished'"), std::string::npos);
}

TEST(HmacTest, MatchesRfc4231) {
  // RFC 4231 test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace
}  // namespace thaw::queue

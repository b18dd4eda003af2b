// JobStore: the durable record of jobs (long asynchronous invocations with a status, output and
// metrics, as Replicate's predictions), per-function webhook secrets, and the last firing of
// each schedule, in the data dir's SQLite database. Owned by the server; thread-safe (one
// connection behind a mutex).
//
// The crash contract is the event queue's (event_queue.h): a job whose Add() returned is
// committed, so the 201 answer is never taken back; Recover() at start hands back the jobs not
// finished (a running one was cut short and runs again under the same id, at-least-once).
//
// Nodes on one PostgreSQL: each unfinished job is owned by the node that accepted (or took over)
// it, under that node's lease in queue_leases (kept by its event queue's tick, event_queue.h).
// Recover() takes only this node's own jobs and those of nodes whose lease has passed; TakeOver()
// on the tick takes a dead node's, each job to one taker.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace thaw::store {
class Db;
}

namespace thaw::queue {

enum class JobStatus { kQueued, kRunning, kSucceeded, kFailed, kCanceled };

std::string_view JobStatusName(JobStatus status);
std::optional<JobStatus> ParseJobStatus(std::string_view name);
inline bool IsTerminal(JobStatus s) { return s != JobStatus::kQueued && s != JobStatus::kRunning; }

// webhook_events_filter: which moments of a job its webhook hears about.
enum WebhookEvent : unsigned {
  kWebhookStart = 1,
  kWebhookOutput = 2,
  kWebhookLogs = 4,
  kWebhookCompleted = 8,
  kWebhookAll = 15
};
// ["start", "completed"] -> a mask; InvalidArgument names an unknown event.
StatusOr<unsigned> ParseWebhookEvents(const std::vector<std::string>& names);

struct Job {
  std::string id;  // also the invocation's request id (logs and meter records carry it)
  std::string function;
  std::string qualifier;
  std::string input;
  JobStatus status = JobStatus::kQueued;
  std::string output;           // the function's answer as it came (grows while it streams)
  bool output_dropped = false;  // job_retention_hours passed: output (and input) are gone
  std::string error_type;
  std::string error_message;
  std::string webhook;  // empty: none
  unsigned webhook_events = kWebhookAll;
  std::string start_kind;  // "cold" or "warm" once started
  int64_t created_us = 0;  // wall clock
  int64_t started_us = 0;
  int64_t completed_us = 0;
  int64_t duration_us = 0;
  int64_t billed_ms = 0;
};

struct JobPage {
  std::vector<Job> jobs;  // newest first
  std::string next;       // the cursor of the next page; empty: no more
};

class JobStore {
 public:
  // `node`: the owner written into the jobs this node accepts (QueueOptions::node).
  [[nodiscard]] static StatusOr<std::unique_ptr<JobStore>> Open(const std::string& db_path,
                                                                const std::string& node = "local");
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Commits `job` as queued (created_us set if zero); the caller may answer 201 once ok.
  [[nodiscard]] Status Add(Job& job);
  // queued -> running. FailedPrecondition when the job is no longer queued (canceled).
  [[nodiscard]] Status MarkRunning(const std::string& id, int64_t started_us,
                                   const std::string& start_kind);
  [[nodiscard]] Status SetOutput(const std::string& id, const std::string& output);
  // Records how the job ended: `status` unless it was canceled meanwhile, which stays (with
  // the figures of the invocation cut short).
  [[nodiscard]] Status Finish(const Job& job);
  // queued|running -> canceled; returns the status it had (a finished job is left as is).
  [[nodiscard]] StatusOr<JobStatus> Cancel(const std::string& id, int64_t now_us);
  [[nodiscard]] StatusOr<Job> Get(const std::string& id);
  // `function`'s jobs, newest first, `limit` at most, older than cursor `after` (if set).
  [[nodiscard]] StatusOr<JobPage> List(const std::string& function, int64_t limit,
                                       const std::string& after);
  // At start: the jobs not finished, oldest first; running ones are queued again. Only this
  // node's own and those of owners whose lease had passed by `now_us` (they become this node's).
  [[nodiscard]] StatusOr<std::vector<Job>> Recover();
  [[nodiscard]] StatusOr<std::vector<Job>> Recover(int64_t now_us);
  // Makes up to `max` unfinished jobs of other owners whose lease has passed by `now_us` this
  // node's (running ones queued again) and returns them as they were, oldest first.
  [[nodiscard]] StatusOr<std::vector<Job>> TakeOver(int64_t now_us, int64_t max);
  const std::string& node() const { return node_; }
  // job_retention_hours: drops the input and output of jobs finished before `before_us`.
  [[nodiscard]] StatusOr<int64_t> DropOutputs(int64_t before_us);

  // Schedules: when (function, index) last fired and when it was first deployed (0, 0: never
  // seen), and recording them.
  [[nodiscard]] StatusOr<std::pair<int64_t, int64_t>> ScheduleState(const std::string& function,
                                                                    const std::string& expression);
  [[nodiscard]] Status SetScheduleState(const std::string& function, const std::string& expression,
                                        int64_t anchor_us, int64_t last_fire_us);

 private:
  JobStore(std::unique_ptr<store::Db> db, std::string node);
  StatusOr<std::vector<Job>> Claim(int64_t now_us, int64_t max, bool own);

  const std::string node_;
  std::mutex mu_;
  std::unique_ptr<store::Db> db_;  // guarded by mu_
};

}  // namespace thaw::queue

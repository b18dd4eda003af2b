// Meter: one record per invocation. Add() appends the record to a journal file with one write
// and queues it; Stage() only queues it and its journal line, and the next Sync() (on any thread)
// journals every staged line with one write, so a loop turn that answers several calls writes
// the journal once, before the first of those answers leaves; a background thread commits batches
// to SQLite and then deletes the journal segments it has committed. Open() first replays whatever
// segments a killed process left, so a record whose Add() returned is billed even after a kill -9
// (the journal's writes sit in the kernel's page cache, which outlives the process; nothing is
// fsynced, so power loss and kernel crashes may lose the last records). A staged record is
// crash-safe once a Sync() that began after Stage() returned has returned, or once it is committed.
// The request id is the primary key, so a replayed record never bills twice. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "meter/cost.h"

namespace thaw::store {
class Db;
}

namespace thaw::meter {

struct Record {
  std::string request_id;
  std::string function;  // internal name ("acme.hello" for tenant acme, see common/tenant.h)
  std::string version;
  std::string tenant;    // Add() derives it from `function` when empty
  int64_t start_us = 0;  // wall clock
  int64_t end_us = 0;
  int64_t duration_us = 0;
  int64_t billed_ms = 0;
  int64_t memory_mb = 0;
  int64_t max_memory_used_mb = 0;
  int64_t cpu_us = 0;  // CPU time the instance used while running this invocation
  int64_t gpu_us = 0;  // GPU time, likewise: 0 until thaw schedules GPUs
  bool cold_start = false;
  bool forked = false;    // a cold start forked from a template (else a full one)
  bool restored = false;  // a cold start restored from a snapshot (nodejs templates)
  int64_t init_us = 0;
  std::string status;  // success | error | timeout | crash | throttled
  std::string error_type;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
  // Tokens an OpenAI-style function reported in `usage`. Set by a usage record (status
  // kUsageStatus): not an invocation of its own, but an amendment of the record with its
  // request id, which it always follows (Meter::AddUsage).
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // Calls in the batch this call ran in (a function with `batch:`); 0: not batched. A batched
  // call's duration, billed ms, CPU and GPU time are its even share of the batch's.
  int64_t batch_size = 0;
};

inline constexpr char kUsageStatus[] = "usage";
// A template's init (instance/template.h): not an invocation; billed as init_gb_s.
inline constexpr char kTemplateInitStatus[] = "template_init";

// One bucket of a function's invocations over time (Meter::Series): counts, sums and exact
// nearest-rank duration percentiles of the invocations started in it.
struct SeriesBucket {
  int64_t index = 0;   // bucket number: start_us in [from + index x step, from + (index+1) x step)
  int64_t calls = 0;   // invocations of every status (throttled ones too)
  int64_t errors = 0;  // error, timeout or crash
  int64_t throttles = 0;
  int64_t cold_starts = 0;
  int64_t duration_us = 0;  // summed: with the step, the average concurrency
  int64_t p50_us = 0;
  int64_t p99_us = 0;
};

// How many invocations of one bucket (Meter::StartKinds) began on an instance started which way:
// "warm" (it was running), else the ledger's start_kind ("fork", "full", or whatever kinds a
// newer thaw writes there); a cold start recorded before start kinds existed counts as "full".
struct StartKindCount {
  int64_t index = 0;
  std::string kind;
  int64_t count = 0;
};

// Billed duration: rounded up to the next whole millisecond, at least 1 ms.
int64_t BilledMillis(int64_t duration_us);

// One journal line: the record's fields, tab-separated, with '\\', '\t', '\n' and '\r' escaped
// inside strings, ending in '\n' (appended to `out`, which is cleared first).
void EncodeJournalLine(const Record& record, std::string& out);
// Parses one line without its '\n'; false when it is malformed (a torn or foreign line).
bool DecodeJournalLine(std::string_view line, Record& out);

class Meter {
 public:
  using Observer = std::function<void(const Record&)>;

  // Opens the ledger at `db_path` and replays the journal segments in JournalDir(db_path) into
  // it before returning. One Meter per database at a time.
  static StatusOr<std::unique_ptr<Meter>> Open(const std::string& db_path);
  // The ledger in `store` (a SQLite path or a postgres:// URL, see store/db.h), journaled in
  // `journal_dir`: one Meter per journal.
  static StatusOr<std::unique_ptr<Meter>> Open(const std::string& store,
                                               const std::string& journal_dir);
  // Where Open(db_path) keeps its journal: "<db_path>.meter-journal/".
  static std::string JournalDir(const std::string& db_path);
  ~Meter();  // commits what is queued; a clean stop leaves no journal segment behind

  // Journals and queues `record` (filling in its tenant); when it returns, the record survives
  // a kill -9 of this process. Never blocks on SQLite.
  void Add(Record record);
  // Queues `record` (filling in its tenant) and its journal line without writing it: it survives
  // a kill -9 only once a Sync() called after this returns has returned (or the writer thread
  // has committed or journaled it, within about 100 ms). Observed as Add() is. No system call:
  // one short lock.
  void Stage(Record record);
  // Journals every record staged before the call, in one write; returns at once, without a
  // lock, when another Sync(), an Add() or the writer has already done so. Call it before
  // answering a call whose record was staged.
  void Sync();
  // Journals the tokens of the invocation `request_id` of `function`, whose record was added
  // before: the ledger's row gets them. Observed as a record of its own (status kUsageStatus,
  // the function's tenant, start_us `at_us`), so running totals can price the tokens; never
  // blocks on SQLite.
  void AddUsage(const std::string& request_id, const std::string& function, int64_t at_us,
                int64_t prompt_tokens, int64_t completion_tokens);
  // `observer` sees every record Add() gets from now on, on the thread calling Add(), before
  // Add() returns and without any meter lock held: it must be thread-safe, cheap and must not
  // throw or call Add(). Replayed records are not observed (they are in the ledger once Open
  // returns). An observer stays alive, and may still be running in a concurrent Add(), until
  // the Meter is destroyed, even after it is replaced; nullptr removes it.
  void SetObserver(Observer observer);
  // Returns once every record added before the call is committed.
  Status Flush();
  // The records started in [from_us, to_us) of `function` (all when empty) and `tenant` (all
  // when empty), for exact aggregation and pricing in C++ (see meter/cost.h). Flushes first:
  // every record added before the call is in the answer.
  // The (function, version) pairs invoked since `since_us` (wall clock): whose templates a
  // restarted server makes again.
  StatusOr<std::vector<std::pair<std::string, std::string>>> RecentVersions(int64_t since_us);
  StatusOr<std::vector<Sample>> Samples(const std::string& function, int64_t from_us, int64_t to_us,
                                        const std::string& tenant = "");
  // The records started in [from_us, to_us) of `function` and `tenant` (each: all when empty),
  // summed in SQL by function, tenant, UTC day (key YYYY-MM-DD) or all (one group, key ""),
  // with the same sums as AddSample and exact nearest-rank duration percentiles over the
  // invocations; groups in key order. One statement; flushes first, as Samples does.
  StatusOr<std::vector<Group>> Totals(GroupBy by, const std::string& function,
                                      const std::string& tenant, int64_t from_us, int64_t to_us);
  // By function: the sum of durations started in its busiest UTC hour of [from_us, to_us)
  // (advisor.h's BusiestHourBusyUs, in SQL).
  StatusOr<std::map<std::string, int64_t>> BusiestHours(const std::string& function,
                                                        int64_t from_us, int64_t to_us);
  // `function`'s invocations started in [from_us, to_us), aggregated in SQL into buckets of
  // `step_us`; buckets without invocations are left out. Flushes first, as Samples does.
  StatusOr<std::vector<SeriesBucket>> Series(const std::string& function, int64_t from_us,
                                             int64_t to_us, int64_t step_us);
  // Series' invocations split by how their instance started, grouped by the ledger's column
  // (not a fixed list); throttled calls, which started nothing, are left out.
  StatusOr<std::vector<StartKindCount>> StartKinds(const std::string& function, int64_t from_us,
                                                   int64_t to_us, int64_t step_us);
  // When `function`'s newest invocation started (wall us), or 0 if it has none.
  StatusOr<int64_t> LastCalled(const std::string& function);
  // Records added but not yet committed to SQLite.
  int64_t pending() const;

 private:
  // Takes ownership of `lock_fd` (the journal's lock) and `segment_fd` (the open segment number
  // `segment_seq` of `journal_dir`).
  Meter(std::unique_ptr<store::Db> db, std::string journal_dir, int lock_fd, int segment_fd,
        uint64_t segment_seq);
  void Run();
  void JournalLocked(const std::string& line);
  // Journals the staged lines (one write) and publishes the new journaled mark.
  void SyncLocked();
  void Enqueue(Record record, bool journal_now);

  std::unique_ptr<store::Db> db_;  // used only by the writer thread and under db_mu_
  std::mutex db_mu_;
  const std::string journal_dir_;
  const int lock_fd_;  // holds an flock on the journal: one Meter per journal
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  // Invariant: every queued record's line is in staged_, in segment_fd_'s segment or in one of
  // sealed_; every other line in those segments is a committed record.
  std::vector<Record> queue_;     // guarded by mu_
  int segment_fd_ = -1;           // guarded by mu_; the segment Add() appends to, -1 if none
  uint64_t segment_seq_ = 0;      // guarded by mu_
  int64_t segment_bytes_ = 0;     // guarded by mu_; end of its last whole line
  bool journal_failing_ = false;  // guarded by mu_; to log a failing journal once
  // Segments Add() no longer writes to, deleted once their records are committed. Writer only.
  std::vector<uint64_t> sealed_;
  uint64_t added_ = 0;      // records handed in; guarded by mu_
  uint64_t committed_ = 0;  // records committed; guarded by mu_
  int flush_requests_ = 0;  // Flush() calls waiting; guarded by mu_
  Status last_error_;       // guarded by mu_
  // Journal lines of the records added_ counts past journaled_; guarded by mu_.
  std::string staged_;
  // Mirrors of added_ and of the count whose lines are journaled (or committed): written under
  // mu_, read by Sync() without it. journaled_ <= added_.
  std::atomic<uint64_t> added_mark_{0};
  std::atomic<uint64_t> journaled_{0};
  bool stop_ = false;
  std::atomic<const Observer*> observer_{nullptr};
  std::vector<std::unique_ptr<Observer>> observers_;  // guarded by mu_; every one ever set
  std::thread writer_;
};

}  // namespace thaw::meter

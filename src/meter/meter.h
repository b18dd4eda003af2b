// Meter: one record per invocation. Add() appends the record to a journal file and queues it;
// Stage() only queues it and its journal line in the calling shard's own buffer (common/shard.h:
// each shard thread has one, threads outside the shards share one), and the next Sync() of that
// buffer journals every line staged in it with one copy into the shard's own journal segment
// (mapped, so no system call; a pwrite where the file system cannot reserve the segment's
// blocks), so a loop turn that answers several calls journals once, before the first of those
// answers leaves, and no shard waits on another's lock or write. A background thread commits
// batches to SQLite and then deletes the journal segments it has committed. Open() first replays
// whatever segments a killed process left, so a record whose Add() returned is billed even after
// a kill -9 (the journal's bytes sit in the kernel's page cache, which outlives the process;
// nothing is fsynced, so power loss and kernel crashes may lose the last records). A staged
// record is crash-safe once a Sync() that began after Stage() returned has returned, or once it
// is committed. The request id is the primary key, so a replayed record never bills twice.
// Thread-safe.
#pragma once

#include <array>
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

// One journal line: the record's fields, tab-separated, with '\\', '\t', '\n', '\r' and NUL escaped
// inside strings, ending in '\n' (appended to `out`, which is cleared first).
void EncodeJournalLine(const Record& record, std::string& out);
// Parses one line without its '\n'; false when it is malformed (a torn or foreign line).
bool DecodeJournalLine(std::string_view line, Record& out);

// What Stage() returns: the buffer the record went to and its place there, for Sync(ticket).
struct StageTicket {
  int slot = -1;  // -1: none (Sync(ticket) then does nothing)
  uint64_t seq = 0;
};

class Meter {
 public:
  using Observer = std::function<void(const Record&)>;
  // Shards with a buffer of their own; a thread of a higher shard uses the shared one.
  static constexpr int kMaxShards = 64;

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
  // Queues `record` (filling in its tenant) and its journal line in the calling thread's shard
  // buffer without writing it: it survives a kill -9 only once Sync(ticket) (or a Sync()) called
  // after this returns has returned, or the writer thread has committed or journaled it (within
  // about 100 ms). Observed as Add() is. No system call and no lock shared between shards: one
  // short lock of the shard's own buffer, which only the writer thread also takes.
  StageTicket Stage(Record record);
  // Journals every record staged in `ticket`'s buffer up to it (and any staged there since), in
  // one copy (or write); returns at once, without a lock, when an earlier Sync, an Add() or the
  // writer has already done so. Call it on any thread before answering a call whose record was
  // staged.
  void Sync(StageTicket ticket);
  // Sync for every buffer: journals every record staged before the call.
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
  // One stage buffer and the journal segment it writes. Locked by its shard's thread (Stage,
  // Sync), by a Sync(ticket) from another thread and by the writer thread: uncontended but for
  // the writer's pass every 100 ms (or 512 records).
  struct alignas(64) Slot {
    mutable std::mutex mu;
    // Invariant: every record in `records` has its line in `staged` or in this slot's segment or
    // one of sealed_; every other line of those segments is a record committed or in the writer's
    // hands (its batch, retried until committed).
    std::string staged;           // guarded by mu: lines not yet written
    std::vector<Record> records;  // guarded by mu: not yet taken by the writer
    int fd = -1;                  // guarded by mu: this slot's segment, -1 until its first write
    char* map = nullptr;          // guarded by mu: its reserved first bytes, mapped (or nullptr)
    uint64_t seq = 0;             // guarded by mu: its number
    int64_t bytes = 0;            // guarded by mu: end of its last whole line
    bool failing = false;         // guarded by mu: to log a failing journal once
    uint64_t added = 0;           // guarded by mu: records staged here, ever
    // Mirrors of added and of the count whose lines are written (or taken by the writer, which
    // writes them under mu before it lets go): written under mu, read by Sync without it.
    std::atomic<uint64_t> added_mark{0};
    std::atomic<uint64_t> journaled{0};
  };
  struct OpenSegment {
    int fd = -1;
    char* map = nullptr;
  };
  static constexpr int kSharedSlot = kMaxShards;
  static constexpr int kSlots = kMaxShards + 1;

  // Takes ownership of `lock_fd` (the journal's lock) and `segment_fd` (the open segment number
  // `segment_seq` of `journal_dir`, the shared slot's).
  Meter(std::unique_ptr<store::Db> db, std::string journal_dir, int lock_fd, int segment_fd,
        uint64_t segment_seq);
  void Run();
  static int SlotOfThisThread();
  StageTicket Enqueue(int slot, Record record, bool journal_now);
  // Writes the slot's staged lines (one copy or write; its segment is made on its first) and
  // publishes its journaled mark.
  void SyncSlotLocked(Slot& slot);
  void WriteLocked(Slot& slot, const std::string& lines);
  // The writer's pass: journals and takes every slot's records, all slots locked at once (a
  // consistent cut: a usage record is never taken without the invocation staged before it),
  // sealing full segments; appends to `batch`; returns the sealed segments to close.
  std::vector<OpenSegment> TakeAll(std::vector<Record>& batch, bool& rotation_failing);
  void WakeWriter();

  std::unique_ptr<store::Db> db_;  // used only by the writer thread and under db_mu_
  std::mutex db_mu_;
  const std::string journal_dir_;
  const int lock_fd_;  // holds an flock on the journal: one Meter per journal
  std::array<Slot, kSlots> slots_;
  std::atomic<uint64_t> next_seq_;  // the number the next new segment takes
  mutable std::mutex mu_;           // the writer's schedule and Flush; never on the call path
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  // Segments no slot writes to any more, deleted once their records are committed. Writer only.
  std::vector<uint64_t> sealed_;
  std::vector<Record> retry_;          // writer only: a batch whose commit failed
  std::atomic<int64_t> in_writer_{0};  // records the writer holds, not yet committed
  bool wake_ = false;                  // guarded by mu_: a slot holds a full batch
  uint64_t passes_started_ = 0;        // guarded by mu_
  uint64_t passes_done_ = 0;           // guarded by mu_
  uint64_t flush_wanted_ = 0;          // guarded by mu_: the pass a Flush() waits for
  Status last_status_;                 // guarded by mu_: the last pass's commit
  bool stop_ = false;                  // guarded by mu_
  std::atomic<const Observer*> observer_{nullptr};
  std::vector<std::unique_ptr<Observer>> observers_;  // guarded by mu_; every one ever set
  std::thread writer_;
};

}  // namespace thaw::meter

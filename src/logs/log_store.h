// LogStore: each function's recent log lines (runtime stdout/stderr and the platform's
// START/END/REPORT lines), tagged with the request id, in an in-memory ring bounded in lines and
// bytes, and appended to <data-dir>/logs/<function>.log by a background thread through a queue
// bounded in bytes; files rotate by size. Lines the queue cannot take, or the disk refuses, are
// counted, and the file says how many once it can be written again. Thread-safe.
// An append goes to the calling shard's own buffer (common/shard.h; threads outside the shards
// share one) under that buffer's lock only; readers and the writer thread fold every buffer into
// the rings, in the order the lines were numbered, before they look.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace thaw::logs {

struct Line {
  int64_t seq = 0;    // increasing per store; a follower asks for lines after the last it saw
  int64_t ts_us = 0;  // wall clock
  std::string request_id;
  std::string stream;  // stdout | stderr | platform
  std::string text;
};

struct LogOptions {
  size_t max_lines = 10'000;            // per function, in memory
  size_t max_ring_bytes = 4u << 20;     // per function, in memory (the newest line always stays)
  size_t max_queue_bytes = 16u << 20;   // lines waiting for the writer, all functions together
  int64_t max_file_bytes = 64LL << 20;  // <function>.log rotates before a write would pass it
  int files_kept = 3;                   // rotated files kept: <function>.log.1 (newest) .. .N
};

// Lines that never reached a log file, since start.
struct DroppedLines {
  int64_t queue_full = 0;    // the writer's queue was full (a function writing faster than disk)
  int64_t write_failed = 0;  // the write failed (disk full, quota, ...)
};

class LogStore {
 public:
  // `dir` empty: keep lines in memory only.
  LogStore(std::string dir, LogOptions options);
  ~LogStore();

  void Append(const std::string& function, std::string request_id, std::string stream,
              std::string text);
  // A call's last two platform lines under one lock: "END RequestId: <id>", then `report`
  // followed by "\tLog Lines Dropped: N" when lines of the request were left out of the log
  // file (the count is then forgotten, as TakeDroppedFor does) and by `report_tail`.
  void AppendEndReport(const std::string& function, const std::string& request_id,
                       std::string report, std::string_view report_tail);
  // Lines of `function` with seq > after, oldest first, at most `limit` (the newest ones).
  std::vector<Line> Read(const std::string& function, int64_t after, size_t limit) const;
  // The request's own lines (for Lambda's LogType=Tail), newest last.
  std::vector<Line> ReadRequest(const std::string& function, const std::string& request_id) const;
  void Forget(const std::string& function);
  // Returns once every line queued before the call has been written (or counted as dropped),
  // with the counts of lines dropped before it. With `dir` empty, at once.
  void Flush();
  DroppedLines Dropped() const;
  // Lines of `request_id` left out of the log file since the last call for it (the REPORT
  // line says how many), and forgets the count.
  int64_t TakeDroppedFor(const std::string& request_id);

 private:
  struct Ring {
    std::deque<Line> lines;
    size_t bytes = 0;
  };
  // Per function: lines not written, not yet reported in its file.
  struct Unreported {
    int64_t queue_full = 0;
    int64_t write_failed = 0;
    std::string why;  // the last write failure
  };
  // Per function: its file's lines, as they are written, and where each ends (to count what a
  // short write lost).
  struct FileChunk {
    std::string text;
    std::vector<size_t> ends;
    size_t cost = 0;  // the lines' Cost, held in unwritten_bytes_
  };
  using Batch = std::map<std::string, FileChunk>;

  // A line appended but not yet in its ring.
  struct Pending {
    std::string function;
    Line line;
    bool to_file = false;  // the writer's queue took it
  };
  // One shard's appends since the last fold. Locked by its thread, and by a fold.
  struct alignas(64) Slot {
    std::mutex mu;
    std::vector<Pending> lines;  // guarded by mu; in seq order
    size_t bytes = 0;            // guarded by mu
  };
  static constexpr int kMaxShards = 64;  // a thread of a higher shard uses the shared slot
  static constexpr int kSlots = kMaxShards + 1;

  // Numbers `lines` and adds them to this thread's slot (one lock); folds when it is full.
  void Stage(const std::string& function, Line* lines, size_t n);
  // Counts `line` against the writer's queue; false: it is full and the line is counted as
  // dropped from the file (under mu_).
  bool Admit(const std::string& function, const Line& line);
  // Moves every slot's lines into the rings and the writer's queue, in seq order: all slots are
  // locked at once, so a line numbered before one a reader sees is always there too.
  void FoldLocked() const;
  // Adds `line` to its ring (and the writer's queue when `to_file`).
  void AddLocked(const std::string& function, Line line, bool to_file) const;
  void Run();
  // The server's own log hears of drops, at most once per 10 s.
  void WarnLocked(const std::string& message);
  // Writes one batch (no lock held); returns the lines each function could not write, and why.
  std::map<std::string, Unreported> Write(Batch& batch,
                                          const std::map<std::string, Unreported>& notes);
  // Renames <function>.log to .log.1 (and .1 to .2, ...), dropping the oldest.
  void Rotate(const std::string& path) const;

  const std::string dir_;
  const LogOptions options_;
  mutable std::array<Slot, kSlots> slots_;
  std::atomic<int64_t> next_seq_{1};
  // Bytes of lines the writer's queue took (in a slot or in unwritten_), not yet taken by the
  // writer; <= options_.max_queue_bytes.
  std::atomic<size_t> unwritten_bytes_{0};
  // Mirrors dropped_by_request_.size() (written under mu_): END/REPORT skip mu_ when it is 0.
  std::atomic<size_t> requests_with_drops_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;                 // wakes the writer
  std::condition_variable flushed_;            // the writer finished a batch
  mutable std::map<std::string, Ring> rings_;  // guarded by mu_; folds fill it
  mutable Batch unwritten_;     // guarded by mu_: lines for the files, formatted as they are added
  bool urgent_ = false;         // guarded by mu_: write now (queue half full, or Flush)
  int64_t passes_started_ = 0;  // guarded by mu_: the writer's rounds, for Flush
  int64_t passes_done_ = 0;     // guarded by mu_
  std::map<std::string, Unreported> unreported_;       // guarded by mu_
  DroppedLines dropped_;                               // guarded by mu_
  std::map<std::string, int64_t> dropped_by_request_;  // guarded by mu_: until TakeDroppedFor
  int64_t last_warning_us_ = 0;                        // guarded by mu_
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace thaw::logs

// LogStore: each function's recent log lines (runtime stdout/stderr and the platform's
// START/END/REPORT lines), tagged with the request id, in a bounded in-memory ring and
// appended to <data-dir>/logs/<function>.log by a background thread. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
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

class LogStore {
 public:
  // `dir` empty: keep lines in memory only.
  LogStore(std::string dir, size_t max_lines_per_function);
  ~LogStore();

  void Append(const std::string& function, std::string request_id, std::string stream,
              std::string text);
  // Lines of `function` with seq > after, oldest first, at most `limit` (the newest ones).
  std::vector<Line> Read(const std::string& function, int64_t after, size_t limit) const;
  // The request's own lines (for Lambda's LogType=Tail), newest last.
  std::vector<Line> ReadRequest(const std::string& function, const std::string& request_id) const;
  void Forget(const std::string& function);

 private:
  void Run();

  const std::string dir_;
  const size_t max_lines_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_seq_ = 1;                                 // guarded by mu_
  std::map<std::string, std::deque<Line>> lines_;        // guarded by mu_
  std::vector<std::pair<std::string, Line>> unwritten_;  // guarded by mu_
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace thaw::logs

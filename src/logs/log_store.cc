#include "logs/log_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "common/clock.h"
#include "common/shard.h"

namespace thaw::logs {
namespace {

// What a line holds in memory, roughly: its text and the struct around it.
size_t Cost(const Line& line) {
  return sizeof(Line) + line.request_id.size() + line.stream.size() + line.text.size();
}

// Appends one line of a function's file: "<ts>\t<request id>\t<stream>\t<text>\n".
void AppendFileLine(std::string& out, int64_t ts_us, std::string_view request_id,
                    std::string_view stream, std::string_view text) {
  char ts[24];
  const auto [end, ec] = std::to_chars(ts, ts + sizeof(ts), ts_us);
  out.append(ts, end);
  out += '\t';
  out.append(request_id);
  out += '\t';
  out.append(stream);
  out += '\t';
  out.append(text);
  out += '\n';
}

}  // namespace

LogStore::LogStore(std::string dir, LogOptions options) : dir_(std::move(dir)), options_(options) {
  if (!dir_.empty()) writer_ = std::thread([this] { Run(); });
}

LogStore::~LogStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

namespace {
// A slot folds itself past either: its lines wait for a reader or the writer (every 200 ms)
// otherwise.
constexpr size_t kFoldLines = 1024;
constexpr size_t kFoldBytes = 256u << 10;

int SlotOfThisThread(int max_shards) {
  const int shard = CurrentShard();
  return shard >= 0 && shard < max_shards ? shard : max_shards;
}
}  // namespace

void LogStore::Append(const std::string& function, std::string request_id, std::string stream,
                      std::string text) {
  Line line{0, WallNowMicros(), std::move(request_id), std::move(stream), std::move(text)};
  Stage(function, &line, 1);
}

void LogStore::AppendEndReport(const std::string& function, const std::string& request_id,
                               std::string report, std::string_view report_tail) {
  const int64_t now = WallNowMicros();
  // A drop is counted (under mu_) when its line is appended, before this.
  if (requests_with_drops_.load(std::memory_order_acquire) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = dropped_by_request_.find(request_id); it != dropped_by_request_.end()) {
      report += "\tLog Lines Dropped: " + std::to_string(it->second);
      dropped_by_request_.erase(it);
      requests_with_drops_.store(dropped_by_request_.size(), std::memory_order_release);
    }
  }
  report += report_tail;
  Line lines[2] = {Line{0, now, request_id, "platform", "END RequestId: " + request_id},
                   Line{0, now, request_id, "platform", std::move(report)}};
  Stage(function, lines, 2);
}

bool LogStore::Admit(const std::string& function, const Line& line) {
  if (dir_.empty()) return false;
  const size_t cost = Cost(line);
  const size_t before = unwritten_bytes_.fetch_add(cost, std::memory_order_relaxed);
  if (before + cost > options_.max_queue_bytes) {
    unwritten_bytes_.fetch_sub(cost, std::memory_order_relaxed);
    // The writer is behind (a function logging faster than the disk takes it): keep the
    // line in memory only, and count it so its file can say so.
    std::lock_guard<std::mutex> lock(mu_);
    WarnLocked("function " + function + ": the log writer queue is full (" +
               std::to_string(options_.max_queue_bytes) + " bytes); lines are dropped from " +
               "its log file and counted there");
    ++unreported_[function].queue_full;
    ++dropped_.queue_full;
    if (!line.request_id.empty()) {
      ++dropped_by_request_[line.request_id];
      requests_with_drops_.store(dropped_by_request_.size(), std::memory_order_release);
    }
    return false;
  }
  const size_t half = options_.max_queue_bytes / 2;
  if (before <= half && before + cost > half) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      urgent_ = true;
    }
    cv_.notify_one();
  }
  return true;
}

void LogStore::Stage(const std::string& function, Line* lines, size_t n) {
  bool to_file[2] = {false, false};
  for (size_t i = 0; i < n; ++i) to_file[i] = Admit(function, lines[i]);
  Slot& slot = slots_[SlotOfThisThread(kMaxShards)];
  bool fold;
  {
    std::lock_guard<std::mutex> lock(slot.mu);
    for (size_t i = 0; i < n; ++i) {
      // Numbered under the slot's lock: a fold, which holds every slot's, sees every line
      // numbered before the newest it sees.
      lines[i].seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
      slot.bytes += Cost(lines[i]);
      slot.lines.push_back(Pending{function, std::move(lines[i]), to_file[i]});
    }
    fold = slot.lines.size() >= kFoldLines || slot.bytes >= kFoldBytes;
  }
  if (fold) {
    std::lock_guard<std::mutex> lock(mu_);
    FoldLocked();
  }
}

void LogStore::FoldLocked() const {
  thread_local std::vector<Pending> all;
  all.clear();
  int sources = 0;
  {
    std::array<std::unique_lock<std::mutex>, kSlots> locks;
    for (int i = 0; i < kSlots; ++i) locks[i] = std::unique_lock<std::mutex>(slots_[i].mu);
    for (Slot& slot : slots_) {
      if (slot.lines.empty()) continue;
      ++sources;
      std::move(slot.lines.begin(), slot.lines.end(), std::back_inserter(all));
      slot.lines.clear();
      slot.bytes = 0;
    }
  }
  if (sources > 1) {
    std::sort(all.begin(), all.end(),
              [](const Pending& a, const Pending& b) { return a.line.seq < b.line.seq; });
  }
  for (Pending& p : all) AddLocked(p.function, std::move(p.line), p.to_file);
  all.clear();
}

void LogStore::AddLocked(const std::string& function, Line line, bool to_file) const {
  const size_t cost = Cost(line);
  if (to_file) {
    FileChunk& file = unwritten_[function];
    AppendFileLine(file.text, line.ts_us, line.request_id, line.stream, line.text);
    file.ends.push_back(file.text.size());
    file.cost += cost;
  }
  Ring& ring = rings_[function];
  ring.bytes += cost;
  ring.lines.push_back(std::move(line));
  while (ring.lines.size() > 1 &&
         (ring.lines.size() > options_.max_lines || ring.bytes > options_.max_ring_bytes)) {
    ring.bytes -= Cost(ring.lines.front());
    ring.lines.pop_front();
  }
}

std::vector<Line> LogStore::Read(const std::string& function, int64_t after, size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  FoldLocked();
  std::vector<Line> out;
  auto it = rings_.find(function);
  if (it == rings_.end()) return out;
  const auto& ring = it->second.lines;
  // Walk back from the newest: followers ask for the few lines since their last read.
  auto pos = ring.end();
  while (pos != ring.begin() && std::prev(pos)->seq > after && out.size() < limit) {
    --pos;
    out.push_back(*pos);
  }
  return {out.rbegin(), out.rend()};
}

std::vector<Line> LogStore::ReadRequest(const std::string& function,
                                        const std::string& request_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  FoldLocked();
  std::vector<Line> out;
  auto it = rings_.find(function);
  if (it == rings_.end()) return out;
  for (auto pos = it->second.lines.rbegin(); pos != it->second.lines.rend(); ++pos) {
    if (pos->request_id == request_id) out.push_back(*pos);
    if (pos->stream == "platform" && pos->text.starts_with("START RequestId: " + request_id)) {
      break;
    }
  }
  return {out.rbegin(), out.rend()};
}

void LogStore::Forget(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  FoldLocked();
  rings_.erase(function);
}

void LogStore::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  if (dir_.empty()) return;
  // A pass that starts after this call sees every line queued before it.
  const int64_t target = passes_started_ + 1;
  urgent_ = true;
  cv_.notify_one();
  flushed_.wait(lock, [&] { return passes_done_ >= target; });
}

void LogStore::WarnLocked(const std::string& message) {
  // A flood would say the same thing every batch: once per 10 s is enough.
  const int64_t now = MonoNowMicros();
  if (last_warning_us_ != 0 && now - last_warning_us_ < 10'000'000) return;
  last_warning_us_ = now;
  spdlog::warn("{}", message);
}

int64_t LogStore::TakeDroppedFor(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = dropped_by_request_.find(request_id);
  if (it == dropped_by_request_.end()) return 0;
  const int64_t n = it->second;
  dropped_by_request_.erase(it);
  requests_with_drops_.store(dropped_by_request_.size(), std::memory_order_release);
  return n;
}

DroppedLines LogStore::Dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

void LogStore::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Batches every 200 ms keep writes few; a half-full queue or a Flush does not wait.
    cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_ || urgent_; });
    urgent_ = false;
    const int64_t pass = ++passes_started_;
    FoldLocked();
    // Counts of dropped lines are written even with no new line: once the disk has room again,
    // its file says what it lacks.
    if (!unwritten_.empty() || !unreported_.empty()) {
      Batch batch;
      batch.swap(unwritten_);
      size_t bytes = 0;
      for (const auto& [function, file] : batch) bytes += file.cost;
      unwritten_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
      std::map<std::string, Unreported> notes;
      notes.swap(unreported_);
      lock.unlock();
      std::map<std::string, Unreported> failed = Write(batch, notes);
      lock.lock();
      for (auto& [function, f] : failed) {
        if (!f.why.empty()) WarnLocked("function " + function + ": log lines dropped: " + f.why);
        Unreported& u = unreported_[function];
        u.queue_full += f.queue_full;
        u.write_failed += f.write_failed;
        if (!f.why.empty()) u.why = f.why;
        dropped_.write_failed += f.write_failed - notes[function].write_failed;
      }
    }
    passes_done_ = pass;
    flushed_.notify_all();
    if (stop_ && unwritten_.empty()) return;
  }
}

std::map<std::string, LogStore::Unreported> LogStore::Write(
    Batch& batch, const std::map<std::string, Unreported>& notes) {
  const int64_t now = WallNowMicros();
  for (const auto& [function, u] : notes) {
    // Said first, so the note sits where the gap is.
    std::string head;
    if (u.queue_full > 0) {
      AppendFileLine(head, now, "", "platform",
                     "thaw: " + std::to_string(u.queue_full) +
                         " log lines were not written here: the log writer queue was full");
    }
    if (u.write_failed > 0) {
      AppendFileLine(
          head, now, "", "platform",
          "thaw: " + std::to_string(u.write_failed) + " log lines were not written here: " + u.why);
    }
    FileChunk& c = batch[function];
    c.text.insert(0, head);
    for (size_t& end : c.ends) end += head.size();
  }
  std::map<std::string, Unreported> failed;
  for (const auto& [function, chunk] : batch) {
    const std::string path = dir_ + "/" + function + ".log";
    auto fail = [&](size_t written, int err) {
      Unreported& f = failed[function];
      // The notes were not written either: keep their counts for the next try.
      if (auto n = notes.find(function); n != notes.end()) {
        f.queue_full = n->second.queue_full;
        f.write_failed = n->second.write_failed;
      }
      for (size_t end : chunk.ends) {
        if (end > written) ++f.write_failed;
      }
      f.why = std::string("failed to write ") + path + ": " + std::strerror(err);
    };
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      fail(0, errno);
      continue;
    }
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0 &&
        st.st_size + static_cast<int64_t>(chunk.text.size()) > options_.max_file_bytes) {
      ::close(fd);
      Rotate(path);
      fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0) {
        fail(0, errno);
        continue;
      }
    }
    size_t off = 0;
    while (off < chunk.text.size()) {
      ssize_t n = ::write(fd, chunk.text.data() + off, chunk.text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fail(off, n < 0 ? errno : ENOSPC);
        break;
      }
      off += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  return failed;
}

void LogStore::Rotate(const std::string& path) const {
  if (options_.files_kept <= 0) {
    ::unlink(path.c_str());
    return;
  }
  for (int i = options_.files_kept - 1; i >= 1; --i) {
    const std::string from = path + "." + std::to_string(i);
    const std::string to = path + "." + std::to_string(i + 1);
    ::rename(from.c_str(), to.c_str());  // a missing older file is fine
  }
  ::rename(path.c_str(), (path + ".1").c_str());
}

}  // namespace thaw::logs

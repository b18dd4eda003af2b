#include "logs/log_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "common/clock.h"

namespace thaw::logs {

LogStore::LogStore(std::string dir, size_t max_lines_per_function)
    : dir_(std::move(dir)), max_lines_(max_lines_per_function) {
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

void LogStore::Append(const std::string& function, std::string request_id, std::string stream,
                      std::string text) {
  Line line{0, WallNowMicros(), std::move(request_id), std::move(stream), std::move(text)};
  std::lock_guard<std::mutex> lock(mu_);
  line.seq = next_seq_++;
  if (!dir_.empty()) unwritten_.emplace_back(function, line);
  auto& ring = lines_[function];
  ring.push_back(std::move(line));
  if (ring.size() > max_lines_) ring.pop_front();
}

std::vector<Line> LogStore::Read(const std::string& function, int64_t after, size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Line> out;
  auto it = lines_.find(function);
  if (it == lines_.end()) return out;
  const auto& ring = it->second;
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
  std::vector<Line> out;
  auto it = lines_.find(function);
  if (it == lines_.end()) return out;
  for (auto pos = it->second.rbegin(); pos != it->second.rend(); ++pos) {
    if (pos->request_id == request_id) out.push_back(*pos);
    if (pos->stream == "platform" && pos->text.starts_with("START RequestId: " + request_id)) {
      break;
    }
  }
  return {out.rbegin(), out.rend()};
}

void LogStore::Forget(const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  lines_.erase(function);
}

void LogStore::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_ || !unwritten_.empty()) {
    cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (unwritten_.empty()) continue;
    std::vector<std::pair<std::string, Line>> batch;
    batch.swap(unwritten_);
    lock.unlock();
    std::map<std::string, std::string> per_file;
    for (const auto& [function, line] : batch) {
      std::string& out = per_file[function];
      out += std::to_string(line.ts_us) + "\t" + line.request_id + "\t" + line.stream + "\t" +
             line.text + "\n";
    }
    for (const auto& [function, text] : per_file) {
      std::string path = dir_ + "/" + function + ".log";
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0) continue;  // logs are best effort; the ring still has them
      (void)!::write(fd, text.data(), text.size());
      ::close(fd);
    }
    lock.lock();
  }
}

}  // namespace thaw::logs

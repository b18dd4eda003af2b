#include "instance/template.h"

namespace thaw::instance {

const char* TemplateStateName(Template::State state) {
  switch (state) {
    case Template::State::kNone:
      return "none";
    case Template::State::kStarting:
      return "starting";
    case Template::State::kReady:
      return "ready";
    case Template::State::kUnusable:
      break;
  }
  return "unusable";
}

bool Template::BeginStart() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kNone) return false;
  state_ = State::kStarting;
  dropped_ = false;
  return true;
}

bool Template::WhenSettled(std::function<void()> then) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kStarting) return false;
  waiters_.push_back(std::move(then));
  return true;
}

bool Template::Ready(pid_t pid, int64_t init_us) {
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kStarting) return false;
    state_ = State::kReady;
    pid_ = pid;
    init_us_ = init_us;
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w();
  return true;
}

bool Template::MarkUnusableLocked(std::string why) {
  state_ = State::kUnusable;
  pid_ = 0;
  why_ = std::move(why);
  const bool first = !logged_;
  logged_ = true;
  return first;
}

bool Template::InitFailed(std::string why) {
  std::vector<std::function<void()>> waiters;
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kStarting) return false;
    first = MarkUnusableLocked(std::move(why));
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w();
  return first;
}

bool Template::Refused(std::string why) {
  std::vector<std::function<void()>> waiters;
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kUnusable) return false;
    first = MarkUnusableLocked(std::move(why));
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w();
  return first;
}

bool Template::Ended(pid_t pid, std::string why, bool* now_unusable) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now_unusable != nullptr) *now_unusable = false;
  if (state_ != State::kReady || pid_ != pid) return false;
  if (++ends_ >= kMaxRestarts) {
    const bool first =
        MarkUnusableLocked("its template ended " + std::to_string(ends_) + " times; last: " + why);
    if (now_unusable != nullptr) *now_unusable = first;
    return true;
  }
  state_ = State::kNone;
  pid_ = 0;
  return true;
}

pid_t Template::TakeFork() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady) return 0;
  ++forks_;
  return pid_;
}

void Template::ForkGone() {
  std::lock_guard<std::mutex> lock(mu_);
  --forks_;
}

void Template::SetWanted(bool latest, bool wanted) {
  std::lock_guard<std::mutex> lock(mu_);
  wanted_[latest ? 1 : 0] = wanted;
}

pid_t Template::Drop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady || forks_ > 0 || wanted_[0] || wanted_[1]) return 0;
  const pid_t pid = pid_;
  state_ = State::kNone;
  pid_ = 0;
  dropped_ = true;
  return pid;
}

bool Template::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_ && state_ == State::kNone;
}

pid_t Template::ready_pid() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kReady ? pid_ : 0;
}

Template::State Template::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::string Template::why() const {
  std::lock_guard<std::mutex> lock(mu_);
  return why_;
}

int64_t Template::init_us() const {
  std::lock_guard<std::mutex> lock(mu_);
  return init_us_;
}

bool TemplateStarts::Enter(std::function<void()> later) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ >= slots_) {
    queue_.push_back(std::move(later));
    return false;
  }
  ++running_;
  return true;
}

void TemplateStarts::Leave() {
  std::function<void()> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.empty()) {
      --running_;
      return;
    }
    next = std::move(queue_.front());  // it takes the slot given back
    queue_.pop_front();
  }
  next();
}

int TemplateStarts::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

size_t TemplateStarts::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace thaw::instance

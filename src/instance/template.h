// Template: one function version's template, a runtime that ran the function's init (imported
// the handler's module: the model is loaded) and waits to be forked into instances
// (instance_factory.h, docs/sandbox.md). This holds its state; the pool starts it and the
// spawner runs it. One per version, shared by the pools that serve the version (by number and
// as $LATEST), never across versions. Thread-safe.
//
//   kNone     -> kStarting (BeginStart)
//   kStarting -> kReady (Ready) | kUnusable (InitFailed)
//   kReady    -> kNone (Ended: it may be started again, kMaxRestarts times;
//                       Drop: the keep-alive plan let it go, to be made again when it says)
//              | kUnusable (Refused: its init left threads; or Ended too often)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace thaw::instance {

class Template {
 public:
  enum class State { kNone, kStarting, kReady, kUnusable };
  static constexpr int kMaxRestarts = 3;

  // True when the caller should start the template now (it was kNone).
  bool BeginStart();
  // While it is kStarting: keeps `then` to run (on the thread that settles it, with no lock
  // held) once it is ready or unusable, and returns true. Else returns false at once.
  bool WhenSettled(std::function<void()> then);
  // False when it was not starting any more (its init timed out): the caller ends `pid`.
  bool Ready(pid_t pid, int64_t init_us);
  // Returns true the first time this version's template becomes unusable, so the caller logs
  // why once per version.
  bool InitFailed(std::string why);
  bool Refused(std::string why);
  // The template `pid` ended (its exit event, or a fork found it gone); false when that is not
  // the current one. It is unusable after kMaxRestarts ends, and then returns true once more.
  bool Ended(pid_t pid, std::string why, bool* now_unusable = nullptr);

  // The pid to fork an instance from (0 unless kReady), counted as a live fork until ForkGone:
  // a template is never dropped under its forks (they die with it).
  pid_t TakeFork();
  void ForkGone();
  // The keep-alive plan of the pool serving the version as $LATEST (`latest`) or by number
  // wants the template kept (pool/keep_alive.h's WarmState other than kNothing).
  void SetWanted(bool latest, bool wanted);
  // Lets a kReady template go (-> kNone, not counted as an end) when no fork of it lives and
  // neither pool wants it; returns its pid for the caller to end, else 0.
  pid_t Drop();
  bool dropped() const;  // kNone because Drop let it go (BeginStart clears it)

  pid_t ready_pid() const;  // 0 unless kReady
  State state() const;
  std::string why() const;  // why it is unusable
  int64_t init_us() const;

 private:
  bool MarkUnusableLocked(std::string why);

  mutable std::mutex mu_;
  State state_ = State::kNone;                  // guarded by mu_
  pid_t pid_ = 0;                               // guarded by mu_: kReady's process
  int64_t init_us_ = 0;                         // guarded by mu_
  int ends_ = 0;                                // guarded by mu_
  std::string why_;                             // guarded by mu_
  bool logged_ = false;                         // guarded by mu_
  int64_t forks_ = 0;                           // guarded by mu_: TakeFork less ForkGone
  bool wanted_[2] = {false, false};             // guarded by mu_: by number, as $LATEST
  bool dropped_ = false;                        // guarded by mu_
  std::vector<std::function<void()>> waiters_;  // guarded by mu_: WhenSettled's
};

const char* TemplateStateName(Template::State state);

// TemplateStarts: how many templates a node inits at once when nobody waits for them (at a
// deploy, at server start). A thousand deploys in a row would otherwise start a thousand
// imports on a few cores, and those past the init timeout would be unusable for good. A start a
// call waits for does not queue here. Thread-safe.
class TemplateStarts {
 public:
  explicit TemplateStarts(int slots) : slots_(slots < 1 ? 1 : slots) {}

  // True: a slot was free and the caller holds it now. Else `later` is queued, to run when a
  // slot is given to it (on the thread of that Leave, with no lock held: it should post its
  // work, not Leave on that thread, or a long queue would recurse). Each slot taken ends with
  // one Leave.
  bool Enter(std::function<void()> later);
  void Leave();
  int running() const;
  size_t queued() const;

 private:
  const int slots_;
  mutable std::mutex mu_;
  int running_ = 0;                          // guarded by mu_
  std::deque<std::function<void()>> queue_;  // guarded by mu_
};

}  // namespace thaw::instance

// FunctionPool's private parts, shared by the files that implement it: pool.cc (scheduling
// and the invocation life cycle), launch.cc (starting instances and reading their logs).
// Not for use outside src/pool.
#pragma once

#include <atomic>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "meter/meter.h"
#include "pool/pool.h"
#include "pool/response_sink.h"
#include "sandbox/cgroup.h"

namespace thaw::pool {

// An instance's life. Every change goes through Transition, which allows only these steps and
// treats any other as a broken invariant:
//   kSpawning     -> kInitializing (the spawner answered) | kReady (its first GET /next came
//                    before the spawn reply was handled) | kStopping | kGone (the spawn failed)
//   kInitializing -> kReady (its first GET /next) | kStopping
//   kReady        -> kStopping
//   kStopping     -> kGone (its exit event, or the spawn failed after it was stopped)
enum class Lifecycle { kSpawning, kInitializing, kReady, kStopping, kGone };

// One run of a nodejs version's snapshot build (restore.cc): node writes the blob to its stdout,
// which is `tmp`, renamed to the version's blob once the build exits 0.
struct SnapshotBuild {
  std::string tmp;
  int64_t started_us = 0;
  std::atomic<pid_t> pid{0};  // once spawned; the init timer kills it
};

const char* LifecycleName(Lifecycle lifecycle);
std::string FormatMs(int64_t us);  // "12.34", as Lambda's REPORT lines
bool LegalTransition(Lifecycle from, Lifecycle to);

struct FunctionPool::Instance {
  uint64_t id = 0;
  Lifecycle lifecycle = Lifecycle::kSpawning;
  int64_t reserved_mb = 0;   // of the node's memory budget, given back when it is erased
  bool initialized = false;  // the runtime asked for its first event (stays true once it did)
  pid_t pid = 0;
  std::string endpoint;  // its Runtime API listener, as RuntimeEndpoints names it (Close)
  int shard = -1;        // the shard that started it, which serves its Runtime API (-1: none)
  int64_t spawned_us = 0;
  int64_t init_us = 0;
  bool served_any = false;
  // When its last call ended (PoolView). Written under mu_, or by its lane's answer (FinishOnLane).
  std::atomic<int64_t> idle_since_us{0};
  std::deque<InvocationPtr> assigned;           // given to this instance, not yet delivered
  std::map<std::string, InvocationPtr> active;  // delivered to the runtime, by request id
  std::deque<NextHandler> parked;               // GET /next waiting for an event
  // Guards the log pipes' reading and what it writes below (out_eof ... current_request_id,
  // init_log): the pool reads them under mu_ and then log_mu, a lane's answer under log_mu alone
  // (FinishOnLane). Uncontended unless a log read of this instance runs at that moment.
  std::mutex log_mu;
  std::unique_ptr<asio::posix::stream_descriptor> out, err;  // log pipes (read ends)
  bool out_eof = false, err_eof = false;
  // What it may still print before thaw stops reading its pipes for a moment (a token bucket
  // refilled at PoolContext::log_rate_bytes per second): a function printing faster is slowed
  // by its own full pipe, not by thaw's memory or CPU.
  int64_t log_tokens = -1;  // -1: a full bucket, not yet used
  int64_t log_tokens_at_us = 0;
  std::string out_partial, err_partial;
  std::string init_log;  // tail of what it printed before it was ready
  std::string init_error_type, init_error_message;
  bool init_failure_reported = false;  // InitFailedLocked ran (once per instance)
  std::string current_request_id;      // tags log lines
  std::string cgroup;                  // its cgroup name, when the spawner uses cgroups
  // Peak memory, as last read; atomic: its lane's answer reads it without mu_.
  std::atomic<int64_t> peak_rss_mb{0};
  std::atomic<bool> peak_read{false};          // a first answer read it (FinishLocked)
  std::atomic<bool> memory_sample_due{false};  // it answered since the tick last read its peak
  // The instance's CPU time: its cgroup's, else its process's; and its reading at the end of
  // the last call (-1: none). Its lane's answer writes cpu_last_us while it owns the entry.
  sandbox::CpuCounter cpu;
  int64_t cpu_last_us = -1;
  // GPU functions: the GPUs it holds until it is erased, and the GPU-microseconds its
  // invocations were billed (the rest of the time it held them is metered as idle).
  std::vector<sandbox::GpuDevice> gpus;
  int64_t gpu_billed_us = 0;
  // How it is being started: forked from the template, or fresh (also after a fork failed).
  instance::StartKind start_kind = instance::StartKind::kFull;
  bool fork_failed = false;      // start it fresh: forking failed, or there is no template
  bool awaits_template = false;  // waiting for the template's init (its own init timeout)
  bool holds_fork = false;       // counted among the template's live forks (Template::TakeFork)
  bool exit_drained = false;     // its exit waited for its Runtime API to be read (OnExit)
  // Lent to its shard's lane (FunctionPool::Lent) while set: then `parked` is empty, and its
  // waiting runtime, or the call the lane gave it, is the entry's until AdoptLocked.
  std::shared_ptr<FunctionPool::Lent> lent;

  int64_t inflight() const { return static_cast<int64_t>(assigned.size() + active.size()); }
  // What the scheduling policy sees.
  InstanceState state() const {
    switch (lifecycle) {
      case Lifecycle::kSpawning:
      case Lifecycle::kInitializing:
        return InstanceState::kStarting;
      case Lifecycle::kReady:
        return InstanceState::kReady;
      case Lifecycle::kStopping:
      case Lifecycle::kGone:
        break;
    }
    return InstanceState::kStopping;
  }
  // Moves to `to`; aborts on a step the life above does not allow.
  void Transition(Lifecycle to);
  // Takes it back from its lane, idle (its GET /next goes back to `parked`), without waiting;
  // the caller holds the pool's mutex. False when a lane has given it a call (it stays lent,
  // and counts busy). True when it was not lent.
  bool Reclaim();
};

// An idle instance lent to the lane of the shard that serves it: that shard's Submit hands it a
// call without the pool's mutex, and the runtime's answer on that shard (RespondAndNext) ends
// the call and lends it again without it (the warm path: no pool mutex per call); everything
// else takes it back under the mutex first (AdoptLocked). The entry changes hands through
// `state` alone:
//   kIdle      -> kTaken     the lane took it for a call (SubmitToLane, no mutex)
//   kIdle      -> kReclaimed the pool took it back, idle, under mu_: `handler` goes to parked
//   kTaken     -> kIdle      the lane gave it back before delivering (a Cancel or a queue raced)
//   kTaken     -> kFinishing the lane's answer claimed the call (FinishOnLane, no mutex)
//   kTaken     -> kAdopted   the pool took the call over under mu_ (it becomes an active call)
//   kFinishing -> kIdle      the lane ended the call and lent it again, with the next GET /next
//   kFinishing -> kTaken     the lane's answer declined before touching anything (locked path)
// kReclaimed and kAdopted are final: the entry is dropped (inst.lent reset, the lane forgets it).
// The lane writes `inv` and the call's fields, then sets `delivered` (release) before the
// runtime gets the event; another thread reads `inv` only once it sees kTaken and `delivered`
// (acquire). The pool waits out the lane's steps that end without the mutex (kTaken before
// `delivered`, kFinishing): none of them takes mu_, so the wait cannot deadlock. So a call on
// a lent instance is counted in flight from the moment the lane takes it until it is answered
// (InflightLocked), and every decision under mu_ (admission, the tick's stops, drain, stats)
// sees it. The entry is reused from call to call while the instance stays lent.
struct FunctionPool::Lent {
  enum State : int { kIdle, kTaken, kReclaimed, kFinishing, kAdopted };
  std::atomic<int> state{kIdle};
  std::atomic<bool> delivered{false};  // `inv` reached the runtime; cleared as it is answered
  // Valid while lent: an instance is erased only after AdoptLocked, which waits out the lane's
  // steps, after which the lane no longer touches it. The lane finds the entry by `instance_id`
  // (checking `state` before it follows `instance`).
  Instance* instance = nullptr;
  uint64_t instance_id = 0;
  std::optional<NextHandler> handler;  // the runtime's GET /next, waiting for an event
  // Copied when lent: the instance's first call is its cold start.
  bool served_any = false;
  instance::StartKind start_kind = instance::StartKind::kWarm;
  int64_t init_us = 0;
  // Written by the lane once kTaken (see above).
  InvocationPtr inv;
  int64_t idle_sample_us = -1;  // the version's idle time the call ended (-1: none)
};

struct FunctionPool::Effects {
  std::vector<std::pair<Completion<void(Result)>, Result>> results;
  std::vector<std::pair<NextHandler, InvocationPtr>> nexts;
  std::vector<pid_t> kills;
  std::vector<std::string> closes;
  std::vector<meter::Record> records;
  std::vector<InstancePtr> launches;
  std::vector<std::pair<std::shared_ptr<ResponseSink>, Result>> sink_ends;
  // The keep-alive plan's template decision (keep_alive.h's PlanTemplate).
  TemplateAction template_action = TemplateAction::kKeep;
};

}  // namespace thaw::pool

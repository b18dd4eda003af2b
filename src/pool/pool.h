// FunctionPool: the instances of one function version and the requests waiting for them.
// It applies the pure policy (policy.h): admits requests, starts instances (cold starts),
// hands events to runtimes through their Runtime API, enforces deadlines, replaces crashed
// instances and stops idle ones. PoolManager owns every pool and routes spawner exit events.
//
// Thread-safety: every public method may be called from any thread. A pool's state is
// guarded by its own mutex (no lock is shared across functions); completions run on the
// waiting coroutine's executor after the lock is released, never under it. The one exception
// is the warm path's lanes: an idle instance is lent to the shard that serves it, which hands
// it its next call, and ends that call when the runtime answers on that shard, without the
// mutex (Lent, in pool_internal.h, says how).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/timers.h"
#include "common/unique_fd.h"
#include "instance/instance_factory.h"
#include "instance/template.h"
#include "pool/keep_alive.h"
#include "pool/policy.h"
#include "registry/registry.h"
#include "sandbox/gpu.h"
#include "sandbox/spawner.h"

namespace thaw::sandbox {
class SpawnerClient;
struct ExitEvent;
}  // namespace thaw::sandbox
namespace thaw::logs {
class LogStore;
}
namespace thaw::instance {
class Template;
}
namespace thaw::meter {
class Meter;
struct Record;
}  // namespace thaw::meter
namespace thaw::metrics {
class Registry;
struct FunctionMetrics;
}  // namespace thaw::metrics

namespace thaw::pool {

struct SnapshotBuild;  // restore.cc

namespace asio = boost::asio;

class ResponseSink;
class IdleTimesStore;

struct Result {
  enum class Kind {
    kOk,             // body holds the function's response bytes
    kFunctionError,  // the handler raised: error_type / error_message from the runtime
    kTimeout,        // deadline passed; the instance was killed
    kExitError,      // the runtime exited or crashed mid-invocation
    kInitError,      // the instance failed to initialise
    kThrottled,      // no capacity within the queue limits
    kUnavailable,    // shutting down, or the function was deleted while it waited
    kCanceled,       // ended by FunctionPool::Cancel (a job's cancel)
  };
  Kind kind = Kind::kOk;
  std::string body;
  std::string error_type;
  std::string error_message;
  bool cold_start = false;
  instance::StartKind start_kind = instance::StartKind::kWarm;  // X-Thaw-Start-Kind
  int64_t init_us = 0;
  int64_t duration_us = 0;
  int64_t billed_ms = 0;
  int64_t cpu_us = 0;  // CPU the instance used during the call (0 when unknown)
  int64_t version = 0;
  // kOk only: the runtime streams its answer; `body` is empty and the chunks come through
  // here as the runtime writes them (response_sink.h). Its end carries the final Result.
  std::shared_ptr<ResponseSink> sink;
};

// A type-erased completion handler together with the executor it must run on.
template <typename Signature>
struct Completion {
  asio::any_completion_handler<Signature> handler;
  asio::any_io_executor executor;

  Completion(asio::any_completion_handler<Signature> h, asio::any_io_executor ex)
      : handler(std::move(h)), executor(std::move(ex)) {}
  // Move construction only. Boost 1.81's any_completion_handler wraps itself forever when
  // copied, and its move assignment copies: both must never compile here.
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  Completion(Completion&&) noexcept = default;
  Completion& operator=(Completion&&) = delete;
};

// Runs the waiter inline when this thread may run its executor (the common case: the
// runtime's answer resumes the client's coroutine right here, saving a cross-thread hop),
// else queues it there. Callers hold no lock.
template <typename Signature, typename Value>
void Complete(Completion<Signature> c, Value value) {
  asio::dispatch(c.executor, [h = std::move(c.handler), v = std::move(value)]() mutable {
    std::move(h)(std::move(v));
  });
}

struct Invocation {
  std::string id;
  std::string payload;
  std::string client_context;    // JSON, passed to the runtime as Lambda-Runtime-Client-Context
  std::string cognito_identity;  // JSON, passed through
  std::string trace_id;
  std::string qualifier;   // as the caller named it (version or alias); empty: $LATEST
  int64_t arrived_us = 0;  // monotonic; set by the pool from its clock
  int64_t arrived_wall_us = 0;
  // Set by the pool.
  int64_t started_us = 0;  // monotonic: handed to the runtime
  int64_t deadline_wall_ms = 0;
  bool cold_start = false;
  instance::StartKind start_kind = instance::StartKind::kWarm;
  int64_t init_us = 0;
  int64_t cpu_start_us = -1;  // the instance's CPU counter when the event was handed over
  std::unique_ptr<Timer> deadline_timer;
  std::optional<Completion<void(Result)>> handler;  // empty once completed
  std::shared_ptr<ResponseSink> sink;  // set when the runtime streams: finished with the call
  // A batch (batching.cc): the calls it carries, in the order of its {"batch": [...]} event.
  // It has no handler of its own: its answer is split among them.
  std::vector<std::shared_ptr<Invocation>> members;
};

using InvocationPtr = std::shared_ptr<Invocation>;
using NextHandler = Completion<void(InvocationPtr)>;

class PoolManager;

// Who may talk to a Runtime API listener on the host's loopback, where every instance that
// shares the host network could connect to it.
struct PeerCheck {
  enum class Kind {
    kAnyone,       // plain processes: nothing tells them apart (and they share thaw's uid)
    kUid,          // jailed as root: sockets owned by the instance's own uid (SetPeer)
    kProcessTree,  // rootless: sockets held by the instance's processes (all share one uid)
  };
  Kind kind = Kind::kAnyone;
};

// Where an instance's Runtime API listens. Implemented by runtime_api.
class RuntimeEndpoints {
 public:
  virtual ~RuntimeEndpoints() = default;
  // Opens a listener on the host's loopback that serves `instance_id` of `pool` to the peers
  // `check` admits; returns the host:port to give the runtime as AWS_LAMBDA_RUNTIME_API, which
  // is also the key for Close. `shard`: the shard (common/shard.h) that serves it, and its
  // native channel; -1: any.
  virtual StatusOr<std::string> Open(std::shared_ptr<class FunctionPool> pool, uint64_t instance_id,
                                     PeerCheck check, int shard) = 0;
  // kUid, kProcessTree: the instance's first process and its uid, once spawned (pid <= 0: it
  // never will be). Connections that arrive first wait for them.
  virtual void SetPeer(const std::string& address, pid_t pid, uid_t uid) = 0;
  // Serves `instance_id` on `listener`, made inside the instance's own network namespace,
  // where nothing else can connect: no peer check. Returns the key for Close.
  virtual StatusOr<std::string> Adopt(std::shared_ptr<class FunctionPool> pool,
                                      uint64_t instance_id, UniqueFd listener, int shard) = 0;
  // Serves `instance_id` on `channel`, thaw's end of the instance's native channel
  // (runtime_api/channel_frame.h), beside its Runtime API `key`, and closes it with it. Fails
  // when `key` is closed already.
  virtual Status AttachChannel(const std::string& key, std::shared_ptr<class FunctionPool> pool,
                               uint64_t instance_id, UniqueFd channel) = 0;
  virtual void Close(const std::string& key) = 0;
  // Calls `done` once, on any thread, when what an exited instance's processes sent before
  // they died has been read: its listen backlog accepted, its connections and its native
  // channel read to their end (or a bound passed: a runtime's orphaned child may hold a
  // socket). So a response or stream written just before the exit wins over the exit error.
  // At once when `key` is not open.
  virtual void Drain(const std::string& key, std::function<void()> done) { done(); }
};

class GpuTable;
class Launcher;

// Lambda gives a function one vCPU's share at 1,769 MB: a version with at most this much is
// a one-core function, which `pin_instances` may keep on its shard's CPU.
inline constexpr int64_t kPinMaxMemoryMb = 1769;

struct PoolContext {
  asio::any_io_executor executor;
  sandbox::SpawnerClient* spawner = nullptr;
  logs::LogStore* logs = nullptr;
  meter::Meter* meter = nullptr;
  metrics::Registry* metrics = nullptr;
  RuntimeEndpoints* endpoints = nullptr;
  const Clock* clock = nullptr;
  Timers* timers = nullptr;      // call deadlines (common/timers.h)
  Launcher* launcher = nullptr;  // starts and kills instances (launcher.h)
  PoolManager* manager = nullptr;
  std::string runtimes_dir;
  std::string python;
  std::string node;
  std::string region;
  int64_t max_queue = 256;
  int64_t queue_timeout_us = 10'000'000;
  int64_t init_timeout_us = 10'000'000;
  int64_t pids_max = 1024;                    // per instance, where cgroups exist
  int64_t node_memory_mb = int64_t{1} << 40;  // memory_mb of all live instances together
  int64_t log_rate_bytes = 1 << 20;           // per instance per second, with a burst of as much
  GpuTable* gpus = nullptr;                   // the node's GPUs (gpu_table.h); null: none
  // The model store's trees (models/store.h): a version's `models:` digest names a folder here.
  std::string models_dir;
  // Fork new instances from a per-version template where the function allows it (the
  // `templates` knob; instance/template.h).
  bool templates = false;
  // How many templates nobody waits for (at a deploy, at server start) init at once on this
  // node (instance::TemplateStarts); 0: two per CPU.
  int template_start_slots = 0;
  // Where pools keep their idle-time histograms across restarts; null: not kept.
  IdleTimesStore* idle_store = nullptr;
  // nodejs templates' heap snapshots, a folder per version (restore.cc); under the data dir.
  std::string snapshots_dir;
  // Give every instance a native channel (THAW_CHANNEL_FD) beside its Runtime API: thaw's own
  // runtimes then use it (the `runtime_channel` knob).
  bool runtime_channel = true;
  // The server's shards (its `threads`): each pool keeps a lane for each. 0: kMaxLanes.
  int shards = 0;
  // The `pin_instances` knob: the CPUs shards are pinned to (common/cpu_affinity.h ShardCpu);
  // an instance of a version with at most one vCPU's share (kPinMaxMemoryMb, no GPU) is
  // pinned to its shard's CPU when it starts and when its channel moves shard. Empty: none.
  std::vector<int> shard_cpus;
  // Brings a version's bundle and model trees to this node when it lacks them (deployed
  // through another node: cluster/artifact_fetcher.h), then calls back, on any thread, with
  // the outcome. Null: everything is here (one node).
  std::function<void(std::shared_ptr<const registry::Version>, std::function<void(Status)>)>
      fetch_artifacts;
};

struct PoolStats {
  std::string function;
  int64_t version = 0;
  bool draining = false;
  int64_t queued = 0;
  int64_t inflight = 0;
  std::map<std::string, int64_t> instances_by_state;
  int64_t busy = 0;          // ready instances serving at least one call
  int64_t lent = 0;          // idle instances lent to their shard's lane (FunctionPool::Lent)
  int64_t lane_calls = 0;    // calls a lane handed over without the pool's mutex, so far
  int64_t lane_answers = 0;  // of those, answered and lent again without it (FinishOnLane)
  int64_t init_failures_in_a_row = 0;  // since an instance of this version last initialised
  std::string last_init_error;
  // The keep-alive in force (keep_alive.h): what it is based on and its windows.
  std::string keep_alive;  // adaptive or fixed
  std::string keep_alive_basis;
  int64_t prewarm_us = 0;
  int64_t keep_alive_us = 0;
  int64_t idle_samples = 0;  // idle times in its histogram
  struct InstanceInfo {
    uint64_t id = 0;
    pid_t pid = 0;
    std::string state;  // starting | ready | stopping
    instance::StartKind start_kind = instance::StartKind::kFull;
  };
  std::vector<InstanceInfo> instances;
  // The version's template (instance/template.h): "" when it may have none, else its state.
  std::string template_state;
  pid_t template_pid = 0;
  std::string template_why;  // why it is unusable
};

// Where a nodejs version's heap snapshot lives under `root` (PoolContext::snapshots_dir): a
// folder per function (its name escaped into one path component) and version.
std::string SnapshotDirOf(const std::string& root, const std::string& function, int64_t version);

class FunctionPool : public std::enable_shared_from_this<FunctionPool> {
 public:
  // `latest`: the pool serves calls that named no version (or an alias of $LATEST). Lambda
  // keeps those apart from calls to the same version by number: its runtimes are told
  // "$LATEST" rather than the number (ShownVersion in lambda_env.h).
  FunctionPool(PoolContext* ctx, std::shared_ptr<const registry::Version> version, bool latest);
  ~FunctionPool();

  // Runs `inv` and completes with its Result. Never hangs: every path ends in a Result.
  template <typename Token>
  auto Invoke(InvocationPtr inv, Token&& token) {
    return asio::async_initiate<Token, void(Result)>(
        [this](auto handler, InvocationPtr inv) {
          auto ex = asio::get_associated_executor(handler, ctx_->executor);
          inv->handler.emplace(std::move(handler), std::move(ex));
          Submit(std::move(inv));
        },
        token, std::move(inv));
  }

  // Runtime API side. Next completes with the next event, or nullptr once the instance is
  // being stopped (the caller then closes the connection).
  template <typename Token>
  auto Next(uint64_t instance_id, Token&& token) {
    return asio::async_initiate<Token, void(InvocationPtr)>(
        [this, instance_id](auto handler) {
          auto ex = asio::get_associated_executor(handler, ctx_->executor);
          OnNext(instance_id, NextHandler(std::move(handler), std::move(ex)));
        },
        token);
  }
  // Next, for a caller that chose the handler's executor itself.
  void NextWith(uint64_t instance_id, NextHandler handler) {
    OnNext(instance_id, std::move(handler));
  }
  Status Respond(uint64_t instance_id, const std::string& request_id, std::string body);
  // Respond, then Next with `next`, under one acquisition of the pool's lock instead of two:
  // the native channel's "here is my response, and I am ready for the next event". `next`
  // runs whatever Respond returned.
  Status RespondAndNext(uint64_t instance_id, const std::string& request_id, std::string body,
                        NextHandler next);
  Status ReportError(uint64_t instance_id, const std::string& request_id, std::string body,
                     std::string error_type);
  void ReportInitError(uint64_t instance_id, std::string body, std::string error_type);
  // The instance's native channel moved to `shard` (runtime_api/shard_affinity.h): calls from
  // that shard now prefer it (InstanceView::local).
  void SetServingShard(uint64_t instance_id, int shard);
  // Lambda's streaming response mode. StreamBegin: the runtime started a streamed answer; the
  // caller is completed at once with a Result that carries the returned sink, and the call
  // stays active (deadline included) until StreamEnd, the deadline or the instance's exit,
  // which all finish the sink with the final Result. StreamEnd: the stream ended, with an
  // error when `error_type` or `error_body` is set (a mid-stream error, a disconnect).
  StatusOr<std::shared_ptr<ResponseSink>> StreamBegin(uint64_t instance_id,
                                                      const std::string& request_id,
                                                      std::string content_type);
  Status StreamEnd(uint64_t instance_id, const std::string& request_id, std::string error_body,
                   std::string error_type);

  // Ends invocation `request_id` at once with Kind::kCanceled: one still waiting leaves the
  // queue unbilled; one running is billed to this moment and its instance killed (its process
  // tree may still be running the handler; a fresh instance replaces it). One not submitted
  // yet is refused when it comes (for kCancelMemoryUs). Returns whether it was here.
  bool Cancel(const std::string& request_id);
  static constexpr int64_t kCancelMemoryUs = 60'000'000;

  void OnExit(uint64_t instance_id, const sandbox::ExitEvent& exit);
  // Launcher side (launcher.h). Spawn: starts instance `instance_id` through the spawner
  // (template, fork or exec; launch.cc), for SpawnerLauncher. OnStarted: another launcher's
  // answer: the instance runs as `pid`, or it could not start.
  void Spawn(uint64_t instance_id);
  void OnStarted(uint64_t instance_id, StatusOr<pid_t> pid);
  // Reads what the instance wrote. Returns when to look again: 0 at once, > 0 after that many
  // microseconds (it printed faster than log_rate_bytes), < 0 never (the pipe is closed).
  int64_t OnLogReadable(uint64_t instance_id, bool stderr_stream);
  void OnTick();
  // Stop keeping instances warm; queued and in-flight work still finishes.
  void Drain();
  // Starts one instance when the pool has none starting or ready (a drained node's warm work
  // moving here: cluster/drain_mover.h); it then idles out as any other. Returns at once.
  void WarmOne();
  // Stops the ready instances with nothing in flight now, when nothing is queued (a draining
  // node whose version is warm elsewhere). Busy ones finish their calls first.
  void StopIdle();
  // Fails queued requests and kills every instance (server shutdown).
  void Shutdown();
  bool Idle() const;  // no instances, nothing queued
  // A ready instance with room for one more call (fewer than `concurrency` in flight).
  bool CanTakeWork() const;
  PoolStats Stats() const;
  const registry::Version& version() const { return *version_; }
  // Makes this version's template now, if it may have one and has none (at deploy, and at
  // server start for versions called lately), so that even the next call forks. Returns at
  // once.
  void Prewarm();
  // Prewarm's start once it holds a slot: gives the slot back when the template settles.
  void StartTemplateInSlot();
  // Whether this version may fork from a template: the knob, `template: auto`, python3, no
  // GPUs, network: egress.
  bool TemplateAllowed() const;
  void AddModelMounts(sandbox::SpawnRequest& req) const;
  const std::string& arn() const { return qualified_arn_; }

 private:
  struct Instance;
  using InstancePtr = std::shared_ptr<Instance>;

  void Submit(InvocationPtr inv);
  // The warm path: hands `inv` to an idle instance lent to this thread's shard, without mu_.
  // False (and `inv` untouched) when the shard has none, or the pool must decide under mu_.
  bool SubmitToLane(InvocationPtr& inv);
  void OnNext(uint64_t instance_id, NextHandler handler);
  // The warm path's answer: ends the call a lane handed instance `instance_id` with `r` and lends
  // the instance again with `next`, without mu_. False (and `r`, `next` untouched) when the
  // call is not this shard's lane's, or the pool must decide under mu_ (calls waiting, a
  // shutdown, the instance's first answer).
  bool FinishOnLane(uint64_t instance_id, const std::string& request_id, Result& r,
                    std::optional<NextHandler>& next);
  // A version's idle time the lane saw end; and folding those into idle_times_ (under mu_).
  void NoteIdleSample(int64_t idle_us);
  void FoldIdleSamplesLocked() const;
  // A call ended (inflight_ counted it): starts the version's idle time when it was the last.
  void CallEnded(int64_t now, bool queue_empty);
  void OnDeadline(uint64_t instance_id, const std::string& request_id);
  // Ends the active call `request_id` with `r` (Respond, ReportError, StreamEnd).
  Status Finish(uint64_t instance_id, const std::string& request_id, Result r);

  // *Locked: the caller holds mu_. They collect side effects into Effects, applied unlocked.
  struct Effects;
  struct Lent;  // pool_internal.h
  // After calls were queued: idle instances lent to lanes take them (a lane that lent one again
  // as the call was queued may not have seen it).
  void ServeQueueFromLentLocked(Effects& fx);
  // An idle instance of this pool lent to shard `shard` (MaybeLendLocked), on that shard's
  // thread, with mu_ held.
  void MaybeLendLocked(Instance& instance);
  // Takes a lent instance back under mu_: a call a lane handed it becomes one of its active
  // calls; an idle one's waiting runtime goes back to `parked` when `reclaim_idle` (else it
  // stays lent).
  void AdoptLocked(Instance& instance, bool reclaim_idle);
  // Calls in flight on `instance`, a lane's included.
  int64_t InflightLocked(const Instance& instance) const;
  // queued_ := queue_.size(): after the queue grew, before the lock is let go.
  void NoteQueueLocked() { queued_.store(static_cast<int64_t>(queue_.size())); }
  void NextLocked(uint64_t instance_id, NextHandler handler, Effects& fx);
  Status FinishActiveLocked(uint64_t instance_id, const std::string& request_id, Result r,
                            Effects& fx);
  PoolView ViewLocked() const;
  Limits LimitsLocked() const;
  KeepAlivePlan KeepAlivePlanLocked() const;
  // Null when the node's memory budget, or its GPUs, have no room for one more; then
  // start_refusal_ says why.
  InstancePtr NewInstanceLocked(Effects& fx);
  // Forgets a gone instance and gives its memory and GPUs back.
  void EraseInstanceLocked(uint64_t instance_id, Effects& fx);
  // GPU functions (gpu_hooks.cc): takes the GPUs an instance of this version needs (none for
  // others), or says why it cannot; and gives an instance's back, metering the GPU time it
  // held them without running an invocation.
  StatusOr<std::vector<sandbox::GpuDevice>> TakeGpusLocked(uint64_t instance_id);
  void ReleaseGpusLocked(Instance& instance, Effects& fx);
  // Its GPUs' environment, device nodes and device cgroup denials, on its spawn request.
  void AddGpusLocked(const Instance& instance, sandbox::SpawnRequest& request) const;
  // GPU-microseconds an invocation of `duration_us` holds: every GPU of its instance.
  int64_t GpuMicros(int64_t duration_us) const;
  void LaunchInstance(const InstancePtr& instance);
  // True when the version's bundle and model trees are on this node. Else false, having asked
  // for them (PoolContext::fetch_artifacts): `then` runs on the executor once they came, or
  // with why not.
  bool ArtifactsHere(std::function<void(Status)> then);
  void StartWith(const InstancePtr& instance, instance::InstanceFactory& factory);
  static std::shared_ptr<instance::Template> TemplateFor(PoolContext* ctx,
                                                         const registry::Version& version);
  // The spawner's answer for `instance`: its log pipes' read ends are `out` and `err`, thaw's
  // end of its native channel `channel` (invalid: none).
  void OnSpawned(const InstancePtr& instance, StatusOr<sandbox::Spawned> spawned,
                 const std::string& address, PeerCheck check, UniqueFd out, UniqueFd err,
                 UniqueFd channel);
  void LaunchFailed(const InstancePtr& instance, const Status& why);
  // The instance runs as `pid` (`attached`: its Runtime API is served). Returns whether it was
  // stopped meanwhile (or cannot be served), and must be killed once registered.
  bool StartedLocked(Instance& instance, pid_t pid, bool attached);
  // Registers `pid` for its exit event, then kills it if `stopped`.
  // Pins the instance `pid` to shard's CPU where `pin_instances` asks for it (PoolContext).
  void PinToShard(pid_t pid, int shard) const;
  void Register(const InstancePtr& instance, pid_t pid, bool stopped);
  // Why the node's memory budget refuses one more instance of this version.
  Status MemoryRefusal() const;
  // Refuses `inv` for the reason in start_refusal_ (no room for the instance it needs).
  void RefuseStartLocked(InvocationPtr inv, Effects& fx);
  // Starts `instance` from the template, or waits for the template's init, or starts it fresh.
  void LaunchFromTemplate(const InstancePtr& instance);
  // A fork failed (refused, or the template is gone): says why once per version, and starts
  // the instance fresh.
  void ForkFailed(const InstancePtr& instance, const Status& why);
  void StartTemplate();
  void OnTemplateSpawned(StatusOr<sandbox::Spawned> spawned, int64_t started_us);
  // nodejs (restore.cc): the template is a heap snapshot built by `node --build-snapshot`, and
  // instances are restored from it (instance::RestoreFactory).
  std::string SnapshotDir() const;
  StatusOr<std::vector<std::string>> SnapshotBuildArgv() const;
  void OnSnapshotSpawned(StatusOr<sandbox::Spawned> spawned, std::shared_ptr<SnapshotBuild> build);
  void OnSnapshotBuilt(const SnapshotBuild& build, const sandbox::ExitEvent& exit);
  void LaunchFromSnapshot(const InstancePtr& instance, pid_t template_pid);
  void OnTemplateExit(pid_t pid, const sandbox::ExitEvent& exit);
  void AssignLocked(Instance& instance, InvocationPtr inv, Effects& fx);
  void DeliverLocked(Instance& instance, NextHandler handler, InvocationPtr inv, Effects& fx);
  void FinishLocked(Instance& instance, const InvocationPtr& inv, Result result, Effects& fx);
  // FinishLocked's part that needs no mu_ (the caller holds it, or owns the instance's lent
  // entry): fills `result`'s figures, writes END and REPORT; returns the meter status.
  const char* EndCall(Instance& instance, const Invocation& inv, Result& result, int64_t now);
  void FillFromQueueLocked(Instance& instance, Effects& fx);
  // Batched versions (batching.cc): hands waiting calls to instances as batches, as
  // dispatch/batch_assembly.h decides, and arms the batch timer when it says to wait.
  bool batched() const { return version_->manifest.batch.enabled(); }
  void PumpBatchesLocked(Effects& fx);
  InvocationPtr TakeBatchLocked(int64_t size);
  void OnBatchTimer();
  // Ends a batch: splits its answer (or its failure) among its calls, meters each for its share.
  void FinishBatchLocked(const InvocationPtr& batch, Result result, const char* status,
                         int64_t max_memory_mb, Effects& fx);
  // Puts work given to an instance but never delivered back at the front of the queue; a
  // batch goes back as its calls.
  void RequeueLocked(InvocationPtr inv);
  void StopInstanceLocked(Instance& instance, Effects& fx);
  void ApplyTickLocked(Effects& fx);
  // Reads the instance's pipes, within its log rate unless `all` (its last words at exit).
  // DrainLogsLocked takes the instance's log_mu; DrainLogsHeld is for a caller holding it.
  void DrainLogsLocked(Instance& instance, bool all = false);
  void DrainLogsHeld(Instance& instance, bool all);
  void EmitLineLocked(Instance& instance, const char* stream, std::string text);
  void InitFailedLocked(Instance& instance, Effects& fx);
  // Meters a failed init's time and CPU (no invocation was served).
  meter::Record InitRecord(int64_t init_us, std::string status) const;
  void RecordInitLocked(const Instance& instance, int64_t cpu_us, Effects& fx);
  void WatchLog(InstancePtr instance, bool stderr_stream);
  void RecordLocked(const InvocationPtr& inv, const Result& result, const char* status,
                    int64_t max_memory_mb, Effects& fx, int64_t batch_size = 0);
  void Apply(Effects& fx);
  void Fail(InvocationPtr inv, Result result, Effects& fx);
  std::vector<std::string> BuildEnv(const std::string& runtime_api) const;
  StatusOr<std::vector<std::string>> BuildArgv() const;
  std::string TaskRoot() const;    // the bundle as the runtime sees it
  std::string RuntimeDir() const;  // the shipped runtimes as the runtime sees them
  int64_t PeakMemoryMbLocked(const Instance& instance) const;

  PoolContext* const ctx_;
  const std::shared_ptr<const registry::Version> version_;
  const bool latest_;
  const std::string qualified_arn_;
  metrics::FunctionMetrics* const metrics_;  // owned by ctx_->metrics; may be null
  // This version's template, shared with its other pool; null when it may not have one.
  const std::shared_ptr<instance::Template> template_;
  std::atomic<bool> artifacts_here_{false};  // seen on disk once: they stay while the pool lives

  mutable std::mutex mu_;
  std::map<uint64_t, InstancePtr> instances_;  // guarded by mu_
  std::deque<InvocationPtr> queue_;            // guarded by mu_
  uint64_t next_instance_id_ = 1;              // guarded by mu_
  bool draining_ = false;                      // guarded by mu_
  bool shut_down_ = false;                     // guarded by mu_
  int64_t init_failures_in_a_row_ = 0;         // guarded by mu_
  std::string last_init_error_;                // guarded by mu_
  int64_t restart_not_before_us_ = 0;          // guarded by mu_: init back-off (monotonic)
  Status start_refusal_ = Status::Ok();        // guarded by mu_: see NewInstanceLocked
  // A call came since Drain (PoolView::stop_idle_now). Set by the lanes too.
  std::atomic<bool> called_since_drain_{false};
  // Batched versions: wakes the pool when a held batch is due (0: not armed). Guarded by mu_.
  std::unique_ptr<asio::steady_timer> batch_timer_;
  int64_t batch_wake_us_ = 0;
  // Cancel()ed before they were submitted: request id -> when (monotonic), guarded by mu_.
  std::map<std::string, int64_t> canceled_early_;
  // Guarded by mu_: the adaptive keep-alive's. Mutable: const readers fold the lanes' samples in.
  mutable IdleHistogram idle_times_;
  // Idle times the lanes saw end, by idle_times_'s bin (the last: out of bounds), not yet in
  // idle_times_; idle_pending_count_: how many.
  mutable std::array<std::atomic<int64_t>, IdleHistogram::kBins + 1> idle_pending_{};
  mutable std::atomic<int64_t> idle_pending_count_{0};
  // PoolView::idle_since_us. Written under mu_, and swapped to -1 by a lane's call.
  std::atomic<int64_t> idle_since_us_{-1};
  // The lanes (one per shard, each touched only by its shard's thread): the idle instances
  // lent to that shard, most recently idle last. Entries another thread took back stay until
  // the lane meets them. Shards from kMaxLanes on have none (they take the locked path).
  static constexpr int kMaxLanes = 64;
  // `busy`: entries the lane handed a call, until it is answered (FinishOnLane) or taken over.
  struct alignas(64) Lane {
    std::vector<std::shared_ptr<Lent>> ready;
    std::vector<std::shared_ptr<Lent>> busy;
  };
  const int lane_count_;  // ctx_->shards, at most kMaxLanes (a lane is 64 bytes, per pool)
  std::unique_ptr<Lane[]> lanes_;
  // What a lane checks before it serves a call without mu_; each sends it to the locked path
  // while set. queued_: queue_.size() as last noted (never below it while calls wait);
  // closed_: shut_down_; cancels_: Cancel calls running plus canceled_early_'s entries.
  std::atomic<int64_t> queued_{0};
  std::atomic<bool> closed_{false};
  std::atomic<int64_t> cancels_{0};
  std::atomic<int64_t> lane_calls_{0};    // PoolStats::lane_calls
  std::atomic<int64_t> lane_answers_{0};  // PoolStats::lane_answers
  // Calls given to instances and not yet ended, all instances together (assigned, active, or a
  // lane's): when it drops to 0 with nothing queued, the version's idle time starts.
  std::atomic<int64_t> inflight_{0};
  // idle_times_ changed since it was last saved to ctx_->idle_store, and when that was
  // (monotonic). Guarded by mu_.
  mutable bool idle_dirty_ = false;
  int64_t idle_saved_us_ = 0;
  static constexpr int64_t kIdleSaveEveryUs = 5'000'000;
  // Saves idle_times_ if it changed (and, unless `now`, kIdleSaveEveryUs have passed). Takes mu_.
  void SaveIdleTimes(bool now);
};

// All pools, keyed by function, version and whether they serve $LATEST, plus the pid -> instance
// map for exit events.
class PoolManager {
 public:
  explicit PoolManager(PoolContext* ctx);

  // The pool of `version` for calls through $LATEST (`latest`) or by its number.
  std::shared_ptr<FunctionPool> Get(const std::shared_ptr<const registry::Version>& version,
                                    bool latest);
  // A new version became $LATEST (or the function was deleted: `latest` null): older pools
  // of the function drain.
  void OnDeployed(const std::string& function,
                  const std::shared_ptr<const registry::Version>& latest);
  void RegisterPid(pid_t pid, std::weak_ptr<FunctionPool> pool, uint64_t instance_id);
  // A process that is not an instance (a template): `hook` gets its exit event.
  void RegisterExitHook(pid_t pid, std::function<void(const sandbox::ExitEvent&)> hook);
  // The template of `function` version `version` (made on first use).
  std::shared_ptr<instance::Template> TemplateOf(const std::string& function, int64_t version);
  // The node's slots for template starts nobody waits for yet (FunctionPool::Prewarm).
  instance::TemplateStarts& template_starts() { return template_starts_; }
  // Ends the templates of `function` other than version `keep` (0: all of them).
  void EndTemplates(const std::string& function, int64_t keep);
  void OnExit(const sandbox::ExitEvent& exit);
  void Tick();  // also forgets drained, empty pools
  // The node's memory budget (PoolContext::node_memory_mb): an instance reserves its memory_mb
  // before it starts and gives it back once gone. False: it does not fit now.
  bool ReserveMemory(int64_t mb);
  void ReleaseMemory(int64_t mb);
  // Whether the pool a call of `version` (through $LATEST: `latest`) goes to has a ready
  // instance with room (FunctionPool::CanTakeWork). Makes no pool. For routing (cluster).
  bool CanTakeWork(const std::string& function, int64_t version, bool latest) const;
  // Warm work moving from a draining node (cluster/drain_mover.h): WarmOne makes the pool of
  // `version` (through $LATEST: `latest`) and starts its template and one instance on the
  // executor; StopIdle stops the idle instances of both pools of `function` `version`.
  void WarmOne(const std::shared_ptr<const registry::Version>& version, bool latest);
  void StopIdle(const std::string& function, int64_t version);
  int64_t reserved_memory_mb() const { return reserved_mb_.load(std::memory_order_relaxed); }
  int64_t memory_budget_mb() const { return ctx_->node_memory_mb; }
  std::vector<PoolStats> Stats(const std::string& function) const;
  // The versions ({function, version}) whose template is ready to fork.
  std::vector<std::pair<std::string, int64_t>> ReadyTemplates();
  // A draining node (`thaw nodes drain`) starts no new instance: calls its ready instances
  // can serve still run, and what is in flight finishes; the rest are refused (503).
  void SetDraining(bool draining) { draining_.store(draining, std::memory_order_relaxed); }
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  bool Quiet() const;  // nothing queued or in flight anywhere
  void Shutdown();

 private:
  PoolContext* const ctx_;
  mutable std::shared_mutex mu_;
  std::map<std::tuple<std::string, int64_t, bool>, std::shared_ptr<FunctionPool>> pools_;
  std::mutex pid_mu_;
  std::map<pid_t, std::pair<std::weak_ptr<FunctionPool>, uint64_t>> pids_;  // pid_mu_
  std::map<pid_t, sandbox::ExitEvent> early_exits_;                         // guarded by pid_mu_
  std::map<pid_t, std::function<void(const sandbox::ExitEvent&)>> exit_hooks_;  // pid_mu_
  std::mutex template_mu_;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<instance::Template>>
      templates_;  // guarded by template_mu_
  // Templates of versions no longer deployed as $LATEST: ended once no pool of their version
  // is left (their forks die with them, so not while those may still serve calls).
  std::vector<std::tuple<std::string, int64_t, pid_t>> retired_;  // guarded by template_mu_
  instance::TemplateStarts template_starts_;
  std::atomic<int64_t> reserved_mb_{0};
  std::atomic<bool> draining_{false};
};

}  // namespace thaw::pool

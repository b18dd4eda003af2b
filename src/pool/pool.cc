#include "pool/pool.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/defer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "common/cpu_affinity.h"
#include "common/ids.h"
#include "common/shard.h"
#include "common/tenant.h"
#include "dispatch/admission.h"
#include "instance/template.h"
#include "logs/log_store.h"
#include "meter/meter.h"
#include "metrics/metrics.h"
#include "pool/gpu_table.h"
#include "pool/idle_times_store.h"
#include "pool/lambda_env.h"
#include "pool/launcher.h"
#include "pool/pool_internal.h"
#include "sandbox/spawner.h"

namespace thaw::pool {
namespace {

// Peak resident set of `pid` in MB (VmHWM), or 0 if it cannot be read.
int64_t ReadPeakRssMb(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char line[256];
  int64_t kb = 0;
  while (std::fgets(line, sizeof(line), f)) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
  }
  std::fclose(f);
  return (kb + 1023) / 1024;
}

Result CanceledResult() {
  Result r;
  r.kind = Result::Kind::kCanceled;
  r.error_type = "Canceled";
  r.error_message = "the invocation was canceled";
  return r;
}

// "START RequestId: <id> Version: <version>" in one allocation (per call).
std::string StartLine(const std::string& request_id, const std::string& version) {
  std::string line;
  line.reserve(32 + request_id.size() + version.size());
  line.append("START RequestId: ").append(request_id).append(" Version: ").append(version);
  return line;
}

}  // namespace

std::string FormatMs(int64_t us) {
  // Per call (the REPORT line). to_chars with a precision writes what printf's "%.2f" does, byte
  // for byte, without printf's format parsing and multi-precision arithmetic.
  char buf[32];
  auto end = std::to_chars(buf, buf + sizeof(buf), static_cast<double>(us) / 1000.0,
                           std::chars_format::fixed, 2);
  return std::string(buf, end.ptr);
}

FunctionPool::FunctionPool(PoolContext* ctx, std::shared_ptr<const registry::Version> version,
                           bool latest)
    : ctx_(ctx),
      version_(std::move(version)),
      latest_(latest),
      qualified_arn_("arn:aws:lambda:" + ctx->region + ":" +
                     AccountOf(TenantOfFunction(version_->function)) +
                     ":function:" + std::string(BareFunctionName(version_->function))),
      metrics_(ctx->metrics != nullptr ? ctx->metrics->For(version_->function) : nullptr),
      template_(TemplateFor(ctx, *version_)),
      lane_count_(ctx->shards > 0 ? std::min(ctx->shards, kMaxLanes) : kMaxLanes),
      lanes_(std::make_unique<Lane[]>(lane_count_)) {
  // What this function's traffic taught the pool before the server restarted (or the version
  // before this one): the adaptive keep-alive goes on from there.
  if (ctx_->idle_store != nullptr) {
    auto saved = ctx_->idle_store->Load(version_->function, latest_);
    if (!saved.ok()) {
      std::fprintf(stderr, "thaw: %s: idle times not loaded: %s\n", version_->function.c_str(),
                   saved.status().message().c_str());
    } else if (saved->has_value()) {
      idle_times_ = **saved;
    }
  }
}

void FunctionPool::SaveIdleTimes(bool now) {
  if (ctx_->idle_store == nullptr) return;
  IdleHistogram copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t mono = ctx_->clock->MonoMicros();
    // A draining pool's version was replaced: the new version's pool records from here on.
    FoldIdleSamplesLocked();
    if (!idle_dirty_ || draining_ || (!now && mono - idle_saved_us_ < kIdleSaveEveryUs)) return;
    idle_dirty_ = false;
    idle_saved_us_ = mono;
    copy = idle_times_;
  }
  Status st = ctx_->idle_store->Save(version_->function, latest_, copy, ctx_->clock->WallMicros());
  if (!st.ok()) {
    std::fprintf(stderr, "thaw: %s: idle times not saved: %s\n", version_->function.c_str(),
                 st.message().c_str());
  }
}

FunctionPool::~FunctionPool() {
  if (template_ != nullptr) template_->SetWanted(latest_, false);
}

PoolView FunctionPool::ViewLocked() const {
  PoolView view;
  view.instances.reserve(instances_.size());
  const int shard = CurrentShard();
  for (const auto& [id, inst] : instances_) {
    view.instances.push_back({id, inst->state(), InflightLocked(*inst), inst->idle_since_us.load(),
                              shard >= 0 && inst->shard == shard});
  }
  view.queued = static_cast<int64_t>(queue_.size());
  // Batched: what waits is counted in batches, each of which one slot serves.
  if (const int64_t size = version_->manifest.batch.max_size; size > 1) {
    view.queued = (view.queued + size - 1) / size;
  }
  view.draining = draining_;
  view.stop_idle_now = draining_ && !called_since_drain_.load(std::memory_order_relaxed);
  view.idle_since_us = idle_since_us_.load();
  return view;
}

KeepAlivePlan FunctionPool::KeepAlivePlanLocked() const {
  FoldIdleSamplesLocked();
  const registry::Manifest& m = version_->manifest;
  KeepAliveSnapshot s;
  s.mode = m.keep_alive == registry::KeepAlive::kFixed ? KeepAliveMode::kFixed
                                                       : KeepAliveMode::kAdaptive;
  s.idle = &idle_times_;
  s.fixed_window_us = m.idle_timeout_s * 1'000'000;
  s.templates = template_ != nullptr;
  s.now_us = ctx_->clock->MonoMicros();
  s.idle_since_us = idle_since_us_.load();
  return PlanKeepAlive(s);
}

Limits FunctionPool::LimitsLocked() const {
  const registry::Manifest& m = version_->manifest;
  const KeepAlivePlan plan = KeepAlivePlanLocked();
  Limits limits{m.concurrency, m.min_instances, m.max_instances, plan.keep_alive_us,
                ctx_->max_queue};
  limits.prewarm_us = plan.prewarm_us;
  limits.surplus_idle_timeout_us = plan.surplus_keep_us;
  return limits;
}

void FunctionPool::Submit(InvocationPtr inv) {
  // Every time the pool compares comes from its one clock (a fake one in tests).
  inv->arrived_us = ctx_->clock->MonoMicros();
  inv->arrived_wall_us = ctx_->clock->WallMicros();
  if (SubmitToLane(inv)) return;
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) {
      Result r;
      r.kind = Result::Kind::kUnavailable;
      r.error_type = "ServiceUnavailable";
      r.error_message = "thaw is shutting down";
      Fail(std::move(inv), std::move(r), fx);
    } else if (canceled_early_.erase(inv->id) > 0) {
      cancels_.fetch_sub(1);
      Fail(std::move(inv), CanceledResult(), fx);
    } else if (batched() && queue_.size() % version_->manifest.batch.max_size != 0) {
      // It joins the batch the last caller started, whose admission already decided how the
      // batch is served.
      called_since_drain_ = true;
      queue_.push_back(std::move(inv));
      PumpBatchesLocked(fx);
    } else if (batched() && static_cast<int64_t>(queue_.size()) >= ctx_->max_queue) {
      Result r;
      r.kind = Result::Kind::kThrottled;
      r.error_type = "TooManyRequestsException";
      r.error_message = "Rate Exceeded: function " + version_->function + " has " +
                        std::to_string(queue_.size()) + " requests waiting for a batch";
      RecordLocked(inv, r, "throttled", 0, fx);
      Fail(std::move(inv), std::move(r), fx);
    } else {
      called_since_drain_.store(true, std::memory_order_relaxed);
      // An idle time ends: from the end of the version's last call to this arrival.
      if (const int64_t since = idle_since_us_.exchange(-1); since >= 0) {
        idle_times_.Record(std::max<int64_t>(0, inv->arrived_us - since));
        idle_dirty_ = true;
      }
      // The version's half of admission (the tenant's and the function's ran in the gateway,
      // dispatch/dispatcher.h): the same decision, on this pool's snapshot.
      dispatch::Decision d;
      for (;;) {
        dispatch::AdmissionState state;
        dispatch::VersionState& v = state.version.emplace();
        v.pool = ViewLocked();
        v.limits = LimitsLocked();
        v.memory_room = ctx_->manager == nullptr ||
                        ctx_->manager->reserved_memory_mb() + version_->manifest.memory_mb <=
                            ctx_->manager->memory_budget_mb();
        d = dispatch::Admit(state, dispatch::CallRequest{{}, version_->function}, inv->arrived_us);
        if (d.kind != dispatch::Decision::Kind::kDispatch) break;
        // An instance lent to a lane: take it back first. A lane may have given it a call since
        // the snapshot; then it has no room (a new snapshot counts the call), and the decision
        // is made again.
        if (instances_.at(d.instance_id)->Reclaim()) break;
      }
      // Batched: the batcher decides when a call goes (PumpBatchesLocked, below).
      if (batched() && d.kind == dispatch::Decision::Kind::kDispatch) {
        d.kind = dispatch::Decision::Kind::kQueue;
      }
      if (d.reason == dispatch::RejectReason::kMemory) start_refusal_ = MemoryRefusal();
      using Kind = dispatch::Decision::Kind;
      switch (d.kind) {
        case Kind::kDispatch:
          AssignLocked(*instances_.at(d.instance_id), std::move(inv), fx);
          break;
        case Kind::kStart:
          if (NewInstanceLocked(fx) == nullptr) {
            // No free GPU (or the memory went meanwhile), but instances of this function will
            // serve it: wait for them.
            if (start_refusal_.code() == StatusCode::kResourceExhausted && !instances_.empty()) {
              queue_.push_back(std::move(inv));
              break;
            }
            RefuseStartLocked(std::move(inv), fx);
            break;
          }
          queue_.push_back(std::move(inv));
          break;
        case Kind::kAdmit:
        case Kind::kQueue:
          queue_.push_back(std::move(inv));
          break;
        case Kind::kReject: {
          if (d.reason == dispatch::RejectReason::kMemory) {
            RefuseStartLocked(std::move(inv), fx);
            break;
          }
          Result r;
          r.kind = Result::Kind::kThrottled;
          r.error_type = "TooManyRequestsException";
          r.error_message = "Rate Exceeded: function " + version_->function + " has " +
                            std::to_string(version_->manifest.max_instances) +
                            " instances busy and " + std::to_string(queue_.size()) +
                            " requests waiting";
          RecordLocked(inv, r, "throttled", 0, fx);
          Fail(std::move(inv), std::move(r), fx);
          break;
        }
      }
      if (batched()) PumpBatchesLocked(fx);
    }
    NoteQueueLocked();
    if (!queue_.empty()) ServeQueueFromLentLocked(fx);
  }
  Apply(fx);
}

void FunctionPool::ServeQueueFromLentLocked(Effects& fx) {
  if (batched()) return;
  for (auto& [_, inst] : instances_) {
    if (queue_.empty()) break;
    if (inst->lent == nullptr || inst->lent->state.load() != Lent::kIdle) continue;
    if (!inst->Reclaim()) continue;  // a lane gave it a call meanwhile
    FillFromQueueLocked(*inst, fx);
  }
  NoteQueueLocked();
}

void FunctionPool::NoteIdleSample(int64_t idle_us) {
  const int64_t bin = std::clamp<int64_t>(idle_us / IdleHistogram::kBinUs, 0, IdleHistogram::kBins);
  // The count first: it is never below what the bins hold, so a fold that sees 0 misses none.
  idle_pending_count_.fetch_add(1);
  idle_pending_[static_cast<size_t>(bin)].fetch_add(1);
}

void FunctionPool::FoldIdleSamplesLocked() const {
  if (idle_pending_count_.load() <= 0) return;
  for (int bin = 0; bin <= IdleHistogram::kBins; ++bin) {
    const int64_t n = idle_pending_[static_cast<size_t>(bin)].exchange(0);
    if (n == 0) continue;
    idle_pending_count_.fetch_sub(n);
    for (int64_t i = 0; i < n; ++i) idle_times_.Record(bin * IdleHistogram::kBinUs);
    idle_dirty_ = true;
  }
}

void FunctionPool::CallEnded(int64_t now, bool queue_empty) {
  if (inflight_.fetch_sub(1) != 1 || !queue_empty) return;
  idle_since_us_.store(now);  // nothing runs or waits: the version's idle time starts
  // Unless a lane gave a call to an instance meanwhile: then the version was not idle. (A lane
  // whose take this misses swaps `now` out itself, as an idle time of about 0: it counts its
  // call in inflight_ before it swaps.)
  if (inflight_.load() > 0) {
    int64_t expected = now;
    idle_since_us_.compare_exchange_strong(expected, -1);
  }
}

bool FunctionPool::SubmitToLane(InvocationPtr& inv) {
  const int shard = CurrentShard();
  if (shard < 0 || shard >= lane_count_ || batched()) return false;
  std::vector<std::shared_ptr<Lent>>& ready = lanes_[shard].ready;
  std::vector<std::shared_ptr<Lent>>& busy = lanes_[shard].busy;
  while (!ready.empty()) {
    // What would send this call elsewhere under mu_: calls waiting (FIFO), a shutdown, a
    // Cancel that may name it.
    if (queued_.load() > 0 || closed_.load() || cancels_.load() > 0) return false;
    std::shared_ptr<Lent> lent = std::move(ready.back());
    ready.pop_back();
    int idle = Lent::kIdle;
    if (!lent->state.compare_exchange_strong(idle, Lent::kTaken)) continue;  // taken back
    inflight_.fetch_add(1);
    // Checked again now that the instance is counted busy: a Cancel that scanned before the
    // take is seen here (its count went up before its scan), else its scan sees the take.
    if (queued_.load() > 0 || closed_.load() || cancels_.load() > 0) {
      inflight_.fetch_sub(1);
      lent->state.store(Lent::kIdle);
      ready.push_back(std::move(lent));
      return false;
    }
    called_since_drain_.store(true, std::memory_order_relaxed);
    if (const int64_t since = idle_since_us_.exchange(-1); since >= 0) {
      lent->idle_sample_us = std::max<int64_t>(0, inv->arrived_us - since);
    }
    // DeliverLocked's work, on the lent instance's copy of what it reads.
    const int64_t timeout_ms = version_->manifest.timeout_ms;
    inv->started_us = ctx_->clock->MonoMicros();
    inv->deadline_wall_ms = ctx_->clock->WallMicros() / 1000 + timeout_ms;
    inv->cold_start = !lent->served_any;
    inv->start_kind = inv->cold_start ? lent->start_kind : instance::StartKind::kWarm;
    // As in DeliverLocked: the reading that ended its last call (written before it was lent).
    inv->cpu_start_us = lent->instance->cpu_last_us >= 0 ? lent->instance->cpu_last_us
                                                         : lent->instance->cpu.ReadMicros();
    inv->init_us = inv->cold_start ? lent->init_us : 0;
    const uint64_t instance_id = lent->instance->id;
    inv->deadline_timer = ctx_->timers->After(
        timeout_ms * 1000, [self = shared_from_this(), instance_id, id = inv->id] {
          self->OnDeadline(instance_id, id);
        });
    ctx_->logs->Append(version_->function, inv->id, "platform",
                       StartLine(inv->id, ShownVersion(version_->version, latest_)));
    NextHandler handler = std::move(*lent->handler);
    lent->handler.reset();
    lent->inv = inv;
    lent->delivered.store(true, std::memory_order_release);
    lane_calls_.fetch_add(1, std::memory_order_relaxed);
    // The answer finds it here (FinishOnLane); entries the pool took over meanwhile go.
    std::erase_if(busy,
                  [](const std::shared_ptr<Lent>& l) { return l->state.load() == Lent::kAdopted; });
    busy.push_back(std::move(lent));
    Complete(std::move(handler), std::move(inv));
    return true;
  }
  return false;
}

void FunctionPool::MaybeLendLocked(Instance& inst) {
  const int shard = CurrentShard();
  if (shard < 0 || shard >= lane_count_ || inst.shard != shard || batched() || shut_down_ ||
      version_->manifest.concurrency != 1 || inst.lifecycle != Lifecycle::kReady ||
      inst.lent != nullptr || inst.parked.size() != 1 || !inst.assigned.empty() ||
      !inst.active.empty() || !queue_.empty()) {
    return;
  }
  auto lent = std::make_shared<Lent>();
  lent->instance = &inst;
  lent->instance_id = inst.id;
  lent->handler.emplace(std::move(inst.parked.front()));
  inst.parked.clear();
  lent->served_any = inst.served_any;
  lent->start_kind = inst.start_kind;
  lent->init_us = inst.init_us;
  inst.lent = lent;
  // This is the lane's own thread: drop the entries taken back meanwhile, then lend.
  std::vector<std::shared_ptr<Lent>>& ready = lanes_[shard].ready;
  std::erase_if(ready,
                [](const std::shared_ptr<Lent>& l) { return l->state.load() != Lent::kIdle; });
  ready.push_back(std::move(lent));
}

bool FunctionPool::Instance::Reclaim() {
  if (lent == nullptr) return true;
  int idle = Lent::kIdle;
  if (!lent->state.compare_exchange_strong(idle, Lent::kReclaimed)) return false;
  parked.push_back(std::move(*lent->handler));
  lent->handler.reset();
  lent.reset();
  return true;
}

void FunctionPool::AdoptLocked(Instance& inst, bool reclaim_idle) {
  if (inst.lent == nullptr) return;
  Lent& lent = *inst.lent;
  for (;;) {
    int state = lent.state.load();
    if (state == Lent::kIdle) {
      if (!reclaim_idle || inst.Reclaim()) return;
      continue;  // a lane took it meanwhile
    }
    // The lane's steps that end without mu_: its take before the runtime gets the event (or
    // its undo), and its answer (FinishOnLane), which ends idle and lent again (or declines).
    if (state == Lent::kFinishing ||
        (state == Lent::kTaken && !lent.delivered.load(std::memory_order_acquire))) {
      std::this_thread::yield();
      continue;
    }
    if (state != Lent::kTaken) {
      std::fprintf(stderr, "thaw: instance %llu: lent entry taken back twice\n",
                   static_cast<unsigned long long>(inst.id));
      std::abort();
    }
    // Taken, delivered: the call becomes one of its active calls, unless the lane's answer
    // claimed it first.
    if (!lent.state.compare_exchange_strong(state, Lent::kAdopted)) continue;
    InvocationPtr inv = std::move(lent.inv);
    if (lent.idle_sample_us >= 0) {
      idle_times_.Record(lent.idle_sample_us);
      idle_dirty_ = true;
    }
    inst.served_any = true;
    inst.current_request_id = inv->id;
    inst.active[inv->id] = std::move(inv);
    inst.lent.reset();
    return;
  }
}

int64_t FunctionPool::InflightLocked(const Instance& inst) const {
  const int state = inst.lent != nullptr ? inst.lent->state.load() : Lent::kIdle;
  const bool lane_call = state == Lent::kTaken || state == Lent::kFinishing;
  return inst.inflight() + (lane_call ? 1 : 0);
}

void FunctionPool::RefuseStartLocked(InvocationPtr inv, Effects& fx) {
  Result r;
  r.kind = start_refusal_.code() == StatusCode::kFailedPrecondition ? Result::Kind::kUnavailable
                                                                    : Result::Kind::kThrottled;
  r.error_type =
      r.kind == Result::Kind::kThrottled ? "TooManyRequestsException" : "ResourceNotReadyException";
  r.error_message =
      (r.kind == Result::Kind::kThrottled ? "Rate Exceeded: " : "") + start_refusal_.message();
  RecordLocked(inv, r, "throttled", 0, fx);
  Fail(std::move(inv), std::move(r), fx);
}

Status FunctionPool::MemoryRefusal() const {
  return Status(StatusCode::kResourceExhausted,
                "the node's memory budget (node_memory_mb " + std::to_string(ctx_->node_memory_mb) +
                    " MB) has no room for another " + std::to_string(version_->manifest.memory_mb) +
                    " MB instance of " + version_->function);
}

void FunctionPool::Fail(InvocationPtr inv, Result result, Effects& fx) {
  result.version = version_->version;
  if (inv->handler) {
    fx.results.emplace_back(std::move(*inv->handler), std::move(result));
    inv->handler.reset();
  }
}

FunctionPool::InstancePtr FunctionPool::NewInstanceLocked(Effects& fx) {
  const int64_t memory_mb = version_->manifest.memory_mb;
  if (ctx_->manager != nullptr && ctx_->manager->draining()) {
    start_refusal_ = FailedPrecondition(
        "this node is draining (thaw nodes drain): it starts no new instance of " +
        version_->function);
    return nullptr;
  }
  auto gpus = TakeGpusLocked(next_instance_id_);
  if (!gpus.ok()) {
    start_refusal_ = gpus.status();
    return nullptr;
  }
  if (ctx_->manager != nullptr && !ctx_->manager->ReserveMemory(memory_mb)) {
    if (ctx_->gpus != nullptr) ctx_->gpus->Release(*gpus);
    start_refusal_ = MemoryRefusal();
    return nullptr;
  }
  auto inst = std::make_shared<Instance>();
  inst->gpus = std::move(*gpus);
  inst->reserved_mb = ctx_->manager != nullptr ? memory_mb : 0;
  inst->id = next_instance_id_++;
  inst->shard = CurrentShard();
  inst->spawned_us = ctx_->clock->MonoMicros();
  inst->idle_since_us = inst->spawned_us;
  instances_[inst->id] = inst;
  fx.launches.push_back(inst);
  return inst;
}

const char* LifecycleName(Lifecycle lifecycle) {
  switch (lifecycle) {
    case Lifecycle::kSpawning:
      return "spawning";
    case Lifecycle::kInitializing:
      return "initializing";
    case Lifecycle::kReady:
      return "ready";
    case Lifecycle::kStopping:
      return "stopping";
    case Lifecycle::kGone:
      return "gone";
  }
  return "?";
}

bool LegalTransition(Lifecycle from, Lifecycle to) {
  using L = Lifecycle;
  switch (from) {
    case L::kSpawning:
      return to == L::kInitializing || to == L::kReady || to == L::kStopping || to == L::kGone;
    case L::kInitializing:
      return to == L::kReady || to == L::kStopping;
    case L::kReady:
      return to == L::kStopping;
    case L::kStopping:
      return to == L::kGone;
    case L::kGone:
      break;
  }
  return false;
}

void FunctionPool::Instance::Transition(Lifecycle to) {
  if (!LegalTransition(lifecycle, to)) {
    std::fprintf(stderr, "thaw: instance %llu: illegal lifecycle step %s -> %s\n",
                 static_cast<unsigned long long>(id), LifecycleName(lifecycle), LifecycleName(to));
    std::abort();
  }
  lifecycle = to;
}

void FunctionPool::EraseInstanceLocked(uint64_t instance_id, Effects& fx) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return;
  AdoptLocked(*it->second, true);
  it->second->Transition(Lifecycle::kGone);
  if (it->second->reserved_mb > 0) ctx_->manager->ReleaseMemory(it->second->reserved_mb);
  if (it->second->holds_fork) template_->ForkGone();
  ReleaseGpusLocked(*it->second, fx);
  instances_.erase(it);
}

int64_t FunctionPool::PeakMemoryMbLocked(const Instance& inst) const {
  // The cgroup's high-water mark covers every process of the instance; without cgroups, the
  // runtime process's own peak RSS is the best there is.
  if (ctx_->spawner == nullptr) return 0;  // no processes of its own (a test's launcher)
  if (const sandbox::Cgroups* cg = ctx_->spawner->cgroups();
      cg != nullptr && !inst.cgroup.empty()) {
    if (const int64_t peak = cg->PeakMemoryBytes(inst.cgroup); peak > 0) {
      return (peak + (1 << 20) - 1) >> 20;
    }
  }
  return ReadPeakRssMb(inst.pid);
}

void FunctionPool::OnNext(uint64_t instance_id, NextHandler handler) {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    NextLocked(instance_id, std::move(handler), fx);
  }
  Apply(fx);
}

void FunctionPool::NextLocked(uint64_t instance_id, NextHandler handler, Effects& fx) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end() || it->second->lifecycle == Lifecycle::kStopping) {
    fx.nexts.emplace_back(std::move(handler), nullptr);
  } else {
    Instance& inst = *it->second;
    AdoptLocked(inst, true);
    if (!inst.initialized) {
      int64_t now = ctx_->clock->MonoMicros();
      inst.initialized = true;
      inst.init_us = now - inst.spawned_us;
      inst.Transition(Lifecycle::kReady);
      inst.idle_since_us = now;
      init_failures_in_a_row_ = 0;
      last_init_error_.clear();
      restart_not_before_us_ = 0;
      DrainLogsLocked(inst);
      inst.init_log.clear();
    }
    if (!inst.assigned.empty()) {
      InvocationPtr inv = std::move(inst.assigned.front());
      inst.assigned.pop_front();
      DeliverLocked(inst, std::move(handler), std::move(inv), fx);
    } else {
      inst.parked.push_back(std::move(handler));
    }
    FillFromQueueLocked(inst, fx);
    MaybeLendLocked(inst);
  }
  NoteQueueLocked();
}

void FunctionPool::AssignLocked(Instance& inst, InvocationPtr inv, Effects& fx) {
  inflight_.fetch_add(1);
  if (!inst.parked.empty()) {
    NextHandler handler = std::move(inst.parked.front());
    inst.parked.pop_front();
    DeliverLocked(inst, std::move(handler), std::move(inv), fx);
  } else {
    inst.assigned.push_back(std::move(inv));
  }
}

void FunctionPool::DeliverLocked(Instance& inst, NextHandler handler, InvocationPtr inv,
                                 Effects& fx) {
  const int64_t timeout_ms = version_->manifest.timeout_ms;
  inv->started_us = ctx_->clock->MonoMicros();
  inv->deadline_wall_ms = ctx_->clock->WallMicros() / 1000 + timeout_ms;
  inv->cold_start = !inst.served_any;
  inv->start_kind = inv->cold_start ? inst.start_kind : instance::StartKind::kWarm;
  // The reading that ended the instance's last call starts this one when nothing else runs on
  // it: one read per call. CPU it burns between calls (a background thread, a GC) is then
  // billed to its next call; after its last call, to none.
  inv->cpu_start_us =
      inst.cpu_last_us >= 0 && inst.active.empty() ? inst.cpu_last_us : inst.cpu.ReadMicros();
  inv->init_us = inv->cold_start ? inst.init_us : 0;
  inst.served_any = true;
  inst.current_request_id = inv->id;
  inst.active[inv->id] = inv;
  // A deadline that fires as the response arrives finds the call finished: OnDeadline checks.
  inv->deadline_timer =
      ctx_->timers->After(timeout_ms * 1000, [self = shared_from_this(), instance_id = inst.id,
                                              id = inv->id] { self->OnDeadline(instance_id, id); });
  ctx_->logs->Append(version_->function, inv->id, "platform",
                     StartLine(inv->id, ShownVersion(version_->version, latest_)));
  fx.nexts.emplace_back(std::move(handler), std::move(inv));
}

void FunctionPool::FillFromQueueLocked(Instance& inst, Effects& fx) {
  if (batched()) return PumpBatchesLocked(fx);
  const int64_t concurrency = version_->manifest.concurrency;
  while (inst.lifecycle == Lifecycle::kReady && inst.inflight() < concurrency && !queue_.empty()) {
    InvocationPtr inv = std::move(queue_.front());
    queue_.pop_front();
    AssignLocked(inst, std::move(inv), fx);
  }
}

void FunctionPool::RecordLocked(const InvocationPtr& inv, const Result& r, const char* status,
                                int64_t max_memory_mb, Effects& fx, int64_t batch_size) {
  meter::Record rec;
  rec.request_id = inv->id;
  rec.function = version_->function;
  rec.version = std::to_string(version_->version);
  rec.start_us = inv->arrived_wall_us;
  rec.end_us = ctx_->clock->WallMicros();
  rec.duration_us = r.duration_us;
  rec.billed_ms = r.billed_ms;
  rec.memory_mb = version_->manifest.memory_mb;
  rec.max_memory_used_mb = max_memory_mb;
  rec.cpu_us = r.cpu_us;
  rec.gpu_us = GpuMicros(r.duration_us);
  rec.cold_start = r.cold_start;
  rec.forked = r.start_kind == instance::StartKind::kFork;
  rec.restored = r.start_kind == instance::StartKind::kRestore;
  rec.init_us = r.init_us;
  rec.status = status;
  rec.error_type = r.error_type;
  rec.batch_size = batch_size;
  rec.bytes_in = static_cast<int64_t>(inv->payload.size());
  rec.bytes_out = inv->sink                     ? inv->sink->bytes_written()
                  : r.kind == Result::Kind::kOk ? static_cast<int64_t>(r.body.size())
                                                : 0;
  if (metrics_ != nullptr) {
    metrics_->Record(rec.status, r.duration_us, r.cold_start, r.init_us);
    if (rec.cold_start && rec.forked && rec.status != "throttled") {
      metrics_->fork_starts.fetch_add(1, std::memory_order_relaxed);
    }
    if (rec.cold_start && rec.restored && rec.status != "throttled") {
      metrics_->restore_starts.fetch_add(1, std::memory_order_relaxed);
    }
  }
  fx.records.push_back(std::move(rec));
}

void FunctionPool::FinishLocked(Instance& inst, const InvocationPtr& inv, Result result,
                                Effects& fx) {
  inst.active.erase(inv->id);
  if (inv->deadline_timer) inv->deadline_timer->Cancel();
  // What the runtime printed before it answered is already in the pipe: read it now so the
  // lines land before END/REPORT and carry this request id.
  DrainLogsLocked(inst);
  const int64_t now = ctx_->clock->MonoMicros();
  // Peak memory is read on the tick (and from the cgroup at exit), not per call; only an
  // instance's first answer reads it here, so its first REPORT line has a figure.
  if (inst.pid > 0) {
    if (inst.peak_rss_mb.load() == 0) inst.peak_rss_mb = PeakMemoryMbLocked(inst);
    inst.peak_read = true;  // its lane's answers may go without mu_ (FinishOnLane)
  }
  const char* status = EndCall(inst, *inv, result, now);
  if (inst.inflight() == 0) inst.idle_since_us = now;
  CallEnded(now, queue_.empty());
  if (!inv->members.empty()) {
    FinishBatchLocked(inv, std::move(result), status, inst.peak_rss_mb, fx);
  } else {
    RecordLocked(inv, result, status, inst.peak_rss_mb, fx);
    if (inv->handler) {
      fx.results.emplace_back(std::move(*inv->handler), std::move(result));
      inv->handler.reset();
    } else if (inv->sink) {
      fx.sink_ends.emplace_back(inv->sink, std::move(result));
    }
  }
  FillFromQueueLocked(inst, fx);
  NoteQueueLocked();
}

const char* FunctionPool::EndCall(Instance& inst, const Invocation& inv, Result& result,
                                  int64_t now) {
  result.duration_us = now - inv.started_us;
  result.billed_ms = meter::BilledMillis(result.duration_us);
  const int64_t cpu_end = inst.cpu.ReadMicros();
  inst.cpu_last_us = cpu_end;
  if (inv.cpu_start_us >= 0 && cpu_end >= 0) {
    result.cpu_us = std::max<int64_t>(0, cpu_end - inv.cpu_start_us);
  }
  result.cold_start = inv.cold_start;
  result.start_kind = inv.start_kind;
  result.init_us = inv.init_us;
  result.version = version_->version;
  inst.memory_sample_due = true;
  std::string report;
  report.reserve(256);  // the line and what AppendEndReport adds to it: one allocation
  report.append("REPORT RequestId: ")
      .append(inv.id)
      .append("\tDuration: ")
      .append(FormatMs(result.duration_us))
      .append(" ms\tBilled Duration: ")
      .append(std::to_string(result.billed_ms))
      .append(" ms\tMemory Size: ")
      .append(std::to_string(version_->manifest.memory_mb))
      .append(" MB\tMax Memory Used: ")
      .append(std::to_string(inst.peak_rss_mb.load()))
      .append(" MB");
  if (result.cold_start) {
    report.append("\tInit Duration: ")
        .append(FormatMs(result.init_us))
        .append(" ms\tStart Kind: ")
        .append(instance::StartKindName(result.start_kind));
  }
  // One lock for END, REPORT and the count of the request's dropped lines.
  ctx_->logs->AppendEndReport(version_->function, inv.id, std::move(report),
                              result.kind == Result::Kind::kTimeout    ? "\tStatus: timeout"
                              : result.kind == Result::Kind::kCanceled ? "\tStatus: canceled"
                                                                       : "");
  inst.gpu_billed_us += GpuMicros(result.duration_us);
  switch (result.kind) {
    case Result::Kind::kOk:
      return "success";
    case Result::Kind::kFunctionError:
      return "error";
    case Result::Kind::kTimeout:
      return "timeout";
    case Result::Kind::kCanceled:
      return "canceled";
    default:
      return "crash";
  }
}

bool FunctionPool::FinishOnLane(uint64_t instance_id, const std::string& request_id, Result& r,
                                std::optional<NextHandler>& next) {
  const int shard = CurrentShard();
  if (shard < 0 || shard >= lane_count_) return false;
  std::vector<std::shared_ptr<Lent>>& busy = lanes_[shard].busy;
  std::shared_ptr<Lent> lent;
  for (size_t i = 0; i < busy.size();) {
    if (busy[i]->instance_id != instance_id) {
      ++i;
      continue;
    }
    int taken = Lent::kTaken;
    if (busy[i]->state.compare_exchange_strong(taken, Lent::kFinishing)) {
      lent = busy[i];
      break;
    }
    busy[i] = std::move(busy.back());  // the pool took the call over: the entry is done
    busy.pop_back();
  }
  if (lent == nullptr) return false;
  // Claimed: until the entry is idle again (or declined) the call and the instance are this
  // thread's, and every thread under mu_ waits for that (AdoptLocked).
  Instance& inst = *lent->instance;
  const InvocationPtr& inv = lent->inv;
  // The locked path decides when calls wait (FIFO: the instance goes to the first of them,
  // not back to the lane), at a shutdown, and for what only the locked path handles.
  if (inv->id != request_id || !inv->handler || inv->sink || !inst.peak_read.load() ||
      queued_.load() > 0 || closed_.load()) {
    lent->state.store(Lent::kTaken);
    return false;
  }
  std::erase(busy, lent);
  if (inv->deadline_timer) inv->deadline_timer->Cancel();
  {
    // Its lines before END/REPORT, tagged with its request id (EmitLineLocked); then lines
    // carry it as the instance's last request id.
    std::lock_guard<std::mutex> lock(inst.log_mu);
    DrainLogsHeld(inst, false);
    inst.current_request_id = inv->id;
    lent->delivered.store(false);
  }
  const int64_t now = ctx_->clock->MonoMicros();
  const char* status = EndCall(inst, *inv, r, now);
  inst.idle_since_us = now;
  inst.served_any = true;
  lent->served_any = true;
  Effects fx;
  RecordLocked(inv, r, status, inst.peak_rss_mb.load(), fx);  // touches nothing under mu_
  fx.results.emplace_back(std::move(*inv->handler), std::move(r));
  inv->handler.reset();
  if (lent->idle_sample_us >= 0) {
    NoteIdleSample(lent->idle_sample_us);
    lent->idle_sample_us = -1;
  }
  lent->inv.reset();
  lent->handler.emplace(std::move(*next));
  next.reset();
  CallEnded(now, queued_.load() == 0);
  lane_answers_.fetch_add(1, std::memory_order_relaxed);
  // Lent again, before the caller is answered: its next call finds it.
  lent->state.store(Lent::kIdle);
  lanes_[shard].ready.push_back(lent);
  // A call queued as this one ended may have seen the instance busy, and this thread may have
  // missed the queue: one of the two sees the other (both sides store, then load), and
  // whichever does serves the queue from the idle lent instances under mu_.
  if (queued_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    ServeQueueFromLentLocked(fx);
  }
  Apply(fx);
  return true;
}

Status FunctionPool::Respond(uint64_t instance_id, const std::string& request_id,
                             std::string body) {
  Result r;
  r.kind = Result::Kind::kOk;
  r.body = std::move(body);
  return Finish(instance_id, request_id, std::move(r));
}

Status FunctionPool::Finish(uint64_t instance_id, const std::string& request_id, Result r) {
  Effects fx;
  Status st = Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    st = FinishActiveLocked(instance_id, request_id, std::move(r), fx);
  }
  Apply(fx);
  return st;
}

Status FunctionPool::FinishActiveLocked(uint64_t instance_id, const std::string& request_id,
                                        Result r, Effects& fx) {
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return NotFound("instance is gone");
  Instance& inst = *it->second;
  AdoptLocked(inst, false);
  auto a = inst.active.find(request_id);
  if (a == inst.active.end()) return NotFound("unknown or finished request id " + request_id);
  InvocationPtr inv = a->second;
  FinishLocked(inst, inv, std::move(r), fx);
  return Status::Ok();
}

Status FunctionPool::RespondAndNext(uint64_t instance_id, const std::string& request_id,
                                    std::string body, NextHandler next) {
  Result r;
  r.kind = Result::Kind::kOk;
  r.body = std::move(body);
  std::optional<NextHandler> nh;
  nh.emplace(std::move(next));
  if (FinishOnLane(instance_id, request_id, r, nh)) return Status::Ok();
  Effects fx;
  Status st = Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    st = FinishActiveLocked(instance_id, request_id, std::move(r), fx);
    NextLocked(instance_id, std::move(*nh), fx);
  }
  Apply(fx);
  return st;
}

namespace {

// A runtime's error report as a Result: the type from the header, else the body's errorType.
Result ErrorResult(std::string body, std::string error_type) {
  Result r;
  r.kind = Result::Kind::kFunctionError;
  // Error bodies are small and rare: parse them here, off the success path.
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* t = o.if_contains("errorType"); t && t->is_string() && error_type.empty()) {
      error_type = std::string(t->as_string());
    }
    if (auto* m = o.if_contains("errorMessage"); m && m->is_string()) {
      r.error_message = std::string(m->as_string());
    }
  } else if (!body.empty()) {
    r.error_message = body;
  }
  r.error_type = error_type.empty() ? "Unhandled" : error_type;
  r.body = std::move(body);
  return r;
}

}  // namespace

Status FunctionPool::ReportError(uint64_t instance_id, const std::string& request_id,
                                 std::string body, std::string error_type) {
  return Finish(instance_id, request_id, ErrorResult(std::move(body), std::move(error_type)));
}

StatusOr<std::shared_ptr<ResponseSink>> FunctionPool::StreamBegin(uint64_t instance_id,
                                                                  const std::string& request_id,
                                                                  std::string content_type) {
  auto sink = std::make_shared<ResponseSink>(std::move(content_type));
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return NotFound("instance is gone");
    Instance& inst = *it->second;
    AdoptLocked(inst, false);
    auto a = inst.active.find(request_id);
    if (a != inst.active.end() && !a->second->members.empty()) {
      return FailedPrecondition("request " + request_id +
                                " is a batch: a batched function returns one list, it cannot "
                                "stream its answer");
    }
    if (a == inst.active.end() || a->second->sink || !a->second->handler) {
      return NotFound("unknown, finished or already streaming request id " + request_id);
    }
    InvocationPtr inv = a->second;
    inv->sink = sink;
    Result r;
    r.kind = Result::Kind::kOk;
    r.sink = sink;
    r.cold_start = inv->cold_start;
    r.start_kind = inv->start_kind;
    r.init_us = inv->init_us;
    r.version = version_->version;
    fx.results.emplace_back(std::move(*inv->handler), std::move(r));
    inv->handler.reset();
  }
  Apply(fx);
  return sink;
}

Status FunctionPool::StreamEnd(uint64_t instance_id, const std::string& request_id,
                               std::string error_body, std::string error_type) {
  Result r;
  if (!error_body.empty() || !error_type.empty()) {
    r = ErrorResult(std::move(error_body), std::move(error_type));
  }
  return Finish(instance_id, request_id, std::move(r));
}

void FunctionPool::SetServingShard(uint64_t instance_id, int shard) {
  pid_t pid = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    it->second->shard = shard;
    pid = it->second->pid;
  }
  PinToShard(pid, shard);
}

void FunctionPool::PinToShard(pid_t pid, int shard) const {
  const int cpu = ShardCpu(ctx_->shard_cpus, shard);
  if (cpu < 0 || pid <= 0 || version_->manifest.memory_mb > kPinMaxMemoryMb ||
      version_->manifest.gpu.count > 0) {
    return;
  }
  // Best effort: an instance that exits meanwhile, or one thaw may not move, runs anywhere.
  if (Status st = PinProcess(pid, cpu); !st.ok()) {
    spdlog::debug("{}: {}", version_->function, st.message());
  }
}

void FunctionPool::ReportInitError(uint64_t instance_id, std::string body, std::string error_type) {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    Instance& inst = *it->second;
    AdoptLocked(inst, true);
    std::string message = body;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(body, ec);
    if (!ec && v.is_object()) {
      const auto& o = v.as_object();
      if (auto* t = o.if_contains("errorType"); t && t->is_string() && error_type.empty()) {
        error_type = std::string(t->as_string());
      }
      if (auto* m = o.if_contains("errorMessage"); m && m->is_string()) {
        message = std::string(m->as_string());
      }
    }
    inst.init_error_type = error_type.empty() ? "Runtime.Unknown" : error_type;
    inst.init_error_message = message;
    // What the init printed before it failed is in its pipes, read or not yet: the error's log
    // tail needs all of it, and the report can come before the pipes' read turn.
    DrainLogsLocked(inst, true);
    // The init failed now: the back-off starts now, before a tick could replace the instance
    // while it is still stopping (its exit event, which meters the init, may come later).
    InitFailedLocked(inst, fx);
    // The runtime exits after reporting; make sure of it. The exit event finishes the job.
    StopInstanceLocked(inst, fx);
  }
  Apply(fx);
}

void FunctionPool::OnDeadline(uint64_t instance_id, const std::string& request_id) {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    Instance& inst = *it->second;
    AdoptLocked(inst, false);
    auto a = inst.active.find(request_id);
    if (a == inst.active.end()) return;
    InvocationPtr inv = a->second;
    char msg[96];
    std::snprintf(msg, sizeof(msg), "Task timed out after %.2f seconds",
                  static_cast<double>(version_->manifest.timeout_ms) / 1000.0);
    Result r;
    r.kind = Result::Kind::kTimeout;
    r.error_type = "Sandbox.Timedout";
    r.error_message = msg;
    // Before END/REPORT, where Lambda writes it.
    ctx_->logs->Append(version_->function, request_id, "platform",
                       "RequestId: " + request_id + " Error: " + msg);
    FinishLocked(inst, inv, std::move(r), fx);
    // Its process tree may still be running the handler: kill it all; a fresh one replaces it.
    StopInstanceLocked(inst, fx);
  }
  Apply(fx);
}

bool FunctionPool::Cancel(const std::string& request_id) {
  Effects fx;
  bool found = false;
  // Before the scan: a lane that takes an instance from here on sees it and leaves the call to
  // the locked path (SubmitToLane); one that took it before is seen by the scan.
  cancels_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, inst] : instances_) AdoptLocked(*inst, false);
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if ((*it)->id != request_id) continue;
      InvocationPtr inv = std::move(*it);
      queue_.erase(it);
      Fail(std::move(inv), CanceledResult(), fx);
      found = true;
      break;
    }
    for (auto& [id, inst] : instances_) {
      if (found) break;
      for (auto it = inst->assigned.begin(); it != inst->assigned.end(); ++it) {
        if ((*it)->id != request_id) continue;
        InvocationPtr inv = std::move(*it);
        inst->assigned.erase(it);
        inflight_.fetch_sub(1);
        Fail(std::move(inv), CanceledResult(), fx);
        found = true;
        break;
      }
      auto a = inst->active.find(request_id);
      if (found || a == inst->active.end()) continue;
      ctx_->logs->Append(version_->function, request_id, "platform",
                         "RequestId: " + request_id + " Error: canceled");
      InvocationPtr inv = a->second;
      FinishLocked(*inst, inv, CanceledResult(), fx);
      StopInstanceLocked(*inst, fx);
      found = true;
    }
    if (!found) {
      const int64_t now = ctx_->clock->MonoMicros();
      if (canceled_early_.insert_or_assign(request_id, now).second) cancels_.fetch_add(1);
    }
  }
  cancels_.fetch_sub(1);
  Apply(fx);
  return found;
}

void FunctionPool::StopInstanceLocked(Instance& inst, Effects& fx) {
  AdoptLocked(inst, true);
  if (inst.lifecycle == Lifecycle::kStopping) return;
  inst.Transition(Lifecycle::kStopping);
  for (auto& handler : inst.parked) fx.nexts.emplace_back(std::move(handler), nullptr);
  inst.parked.clear();
  // Work that never reached the runtime goes back to the front of the queue, in order.
  while (!inst.assigned.empty()) {
    RequeueLocked(std::move(inst.assigned.back()));
    inst.assigned.pop_back();
    inflight_.fetch_sub(1);
  }
  NoteQueueLocked();
  if (inst.pid > 0) fx.kills.push_back(inst.pid);
}

void FunctionPool::OnExit(uint64_t instance_id, const sandbox::ExitEvent& exit) {
  // An instance that died mid-call may have written its answer (or a stream's first chunks)
  // just before: the exit event can overtake those bytes. Its Runtime API is read to the end
  // first, then the exit is handled.
  std::string drain;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    Instance& inst = *it->second;
    AdoptLocked(inst, true);
    if (!inst.active.empty() && !inst.exit_drained && !inst.endpoint.empty()) {
      inst.exit_drained = true;
      drain = inst.endpoint;
    }
  }
  if (!drain.empty()) {
    ctx_->endpoints->Drain(drain, [weak = weak_from_this(), instance_id, exit] {
      if (auto self = weak.lock()) self->OnExit(instance_id, exit);
    });
    return;
  }
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    InstancePtr inst = it->second;
    AdoptLocked(*inst, true);
    DrainLogsLocked(*inst, true);  // its last words: at most a pipe's worth
    if (exit.peak_memory_bytes > 0) {
      inst->peak_rss_mb =
          std::max(inst->peak_rss_mb.load(), (exit.peak_memory_bytes + (1 << 20) - 1) >> 20);
    }
    const bool oom = exit.oom_kills > 0;
    std::string how = sandbox::DescribeWaitStatus(exit.wait_status);
    if (oom) {
      how += " (out of memory: the instance needed more than its memory_mb of " +
             std::to_string(version_->manifest.memory_mb) +
             " MB; Max Memory Used: " + std::to_string(inst->peak_rss_mb.load()) + " MB)";
    }
    // A restore that ended before its first GET /next: node could not use the blob (the user's
    // init ran when it was built). The version stops restoring, said once, and the calls
    // waiting get a full start (the tick below) instead of this error.
    const bool restore_failed = !inst->initialized && !oom && template_ != nullptr &&
                                inst->start_kind == instance::StartKind::kRestore &&
                                inst->lifecycle != Lifecycle::kStopping;
    if (restore_failed && template_->Refused("restore from the snapshot failed: " + how)) {
      ctx_->logs->Append(version_->function, "", "platform",
                         "TEMPLATE_REPORT Status: refused\trestore from the snapshot failed: " +
                             how + " (instances start fresh)");
    }
    if (!inst->initialized && !restore_failed) {
      if (inst->init_error_type.empty()) {
        inst->init_error_type = oom ? "Runtime.OutOfMemory" : "Runtime.ExitError";
        inst->init_error_message = "Runtime exited with error: " + how;
      } else {
        inst->init_error_message += " (runtime " + how + ")";
      }
      InitFailedLocked(*inst, fx);
      RecordInitLocked(*inst, exit.cpu_us, fx);
    }
    StopInstanceLocked(*inst, fx);
    std::vector<InvocationPtr> active;
    for (auto& [_, inv] : inst->active) active.push_back(inv);
    for (auto& inv : active) {
      Result r;
      r.kind = Result::Kind::kExitError;
      r.error_type = oom ? "Runtime.OutOfMemory" : "Runtime.ExitError";
      r.error_message = "RequestId: " + inv->id + " Error: Runtime exited with error: " + how;
      ctx_->logs->Append(version_->function, inv->id, "platform", r.error_message);
      FinishLocked(*inst, inv, std::move(r), fx);
    }
    fx.closes.push_back(inst->endpoint);
    EraseInstanceLocked(instance_id, fx);
    ApplyTickLocked(fx);  // replace it if work is waiting or min_instances asks
  }
  Apply(fx);
}

void FunctionPool::InitFailedLocked(Instance& inst, Effects& fx) {
  if (inst.init_failure_reported) return;
  inst.init_failure_reported = true;
  std::string message = inst.init_error_message;
  if (!inst.init_log.empty()) message += "\nInit log tail:\n" + inst.init_log;
  ++init_failures_in_a_row_;
  last_init_error_ = inst.init_error_type + ": " + inst.init_error_message;
  restart_not_before_us_ = ctx_->clock->MonoMicros() + InitBackoffUs(init_failures_in_a_row_);
  if (metrics_ != nullptr) metrics_->init_failures.fetch_add(1, std::memory_order_relaxed);
  ctx_->logs->Append(version_->function, "", "platform",
                     "INIT_REPORT Status: error\t" + inst.init_error_type + ": " + message);
  // The requests waiting fail with this init error, unless a ready instance will serve them.
  // Instances still starting do not count: they would most likely fail the same way, and
  // waiting for them turns a clear init error into a queue timeout.
  for (const auto& [id, other] : instances_) {
    if (id != inst.id && other->lifecycle == Lifecycle::kReady) return;
  }
  while (!queue_.empty()) {
    InvocationPtr inv = std::move(queue_.front());
    queue_.pop_front();
    Result r;
    r.kind = Result::Kind::kInitError;
    r.error_type = inst.init_error_type;  // as the runtime reported it, as on Lambda
    r.error_message = message;
    r.cold_start = true;  // it waited for an instance to start: a cold start, if a failed one
    r.start_kind = inst.start_kind;
    RecordLocked(inv, r, "error", 0, fx);
    Fail(std::move(inv), std::move(r), fx);
  }
}

// The meter record of an init that ran on its own (no invocation): billed as Lambda bills its
// INIT phase, from `init_us` ago until now.
meter::Record FunctionPool::InitRecord(int64_t init_us, std::string status) const {
  meter::Record rec;
  rec.request_id = NewRequestId();
  rec.function = version_->function;
  rec.version = std::to_string(version_->version);
  rec.end_us = ctx_->clock->WallMicros();
  rec.start_us = rec.end_us - init_us;
  rec.duration_us = init_us;
  rec.billed_ms = meter::BilledMillis(init_us);
  rec.memory_mb = version_->manifest.memory_mb;
  rec.init_us = init_us;
  rec.status = std::move(status);
  return rec;
}

void FunctionPool::RecordInitLocked(const Instance& inst, int64_t cpu_us, Effects& fx) {
  const int64_t init_us = ctx_->clock->MonoMicros() - inst.spawned_us;
  meter::Record rec = InitRecord(init_us, "init_error");
  rec.max_memory_used_mb = inst.peak_rss_mb;
  rec.cpu_us = std::max<int64_t>(0, cpu_us);
  rec.error_type = inst.init_error_type;
  fx.records.push_back(std::move(rec));
}

void FunctionPool::ApplyTickLocked(Effects& fx) {
  if (shut_down_) return;
  const int64_t now = ctx_->clock->MonoMicros();
  TickPlan plan = Tick(ViewLocked(), LimitsLocked(), now);
  // Inits that keep failing are retried with back-off, not at once forever.
  if (now < restart_not_before_us_) plan.start = 0;
  for (uint64_t id : plan.stop) {
    Instance& idle = *instances_.at(id);
    if (!idle.Reclaim()) continue;  // a lane gave it a call since the snapshot
    StopInstanceLocked(idle, fx);
  }
  for (int64_t i = 0; i < plan.start; ++i) {
    if (NewInstanceLocked(fx) == nullptr) break;  // no room: memory budget or GPUs
  }
  // The template part of the plan (a replaced version's template is retired by the manager).
  if (template_ != nullptr && !draining_) {
    const KeepAlivePlan keep = KeepAlivePlanLocked();
    template_->SetWanted(latest_, keep.state != WarmState::kNothing);
    TemplateSnapshot t;
    t.ready = template_->state() == instance::Template::State::kReady;
    t.dropped = template_->dropped();
    t.pool_empty = instances_.empty() && queue_.empty();
    fx.template_action = PlanTemplate(keep, t);
  }
}

void FunctionPool::OnTick() {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = ctx_->clock->MonoMicros();
    cancels_.fetch_sub(
        static_cast<int64_t>(std::erase_if(canceled_early_, [now](const auto& entry) {
          return now - entry.second > kCancelMemoryUs;
        })));
    // An init that does not finish fails as an init error, with the requests waiting for it
    // (not as a throttle when they have waited as long).
    for (auto& [id, inst] : instances_) {
      if (!inst->awaits_template &&
          (inst->lifecycle == Lifecycle::kSpawning ||
           inst->lifecycle == Lifecycle::kInitializing) &&
          now - inst->spawned_us >= ctx_->init_timeout_us) {
        inst->init_error_type = "Runtime.InitError";
        inst->init_error_message = "init did not finish within " +
                                   std::to_string(ctx_->init_timeout_us / 1000) +
                                   " ms (the runtime never asked for an event)";
        StopInstanceLocked(*inst, fx);
        InitFailedLocked(*inst, fx);
      }
    }
    // A held batch due now goes before the queue timeout below looks at what waits.
    if (batched()) PumpBatchesLocked(fx);
    // While the only instances are starting, requests wait for their init (bounded by the
    // init timeout above), not for the queue timeout.
    bool ready = false, starting = false;
    for (const auto& [id, inst] : instances_) {
      ready = ready || inst->state() == InstanceState::kReady;
      starting = starting || inst->state() == InstanceState::kStarting;
    }
    while (!queue_.empty() && dispatch::QueueTimedOut(queue_.front()->arrived_us, ready, starting,
                                                      ctx_->queue_timeout_us, now)) {
      InvocationPtr inv = std::move(queue_.front());
      queue_.pop_front();
      Result r;
      r.kind = Result::Kind::kThrottled;
      r.error_type = "TooManyRequestsException";
      r.error_message = "Rate Exceeded: no instance of " + version_->function +
                        " became free within " + std::to_string(ctx_->queue_timeout_us / 1000) +
                        " ms";
      RecordLocked(inv, r, "throttled", 0, fx);
      Fail(std::move(inv), std::move(r), fx);
    }
    for (auto& [id, inst] : instances_) {
      if (inst->memory_sample_due && inst->pid > 0) {
        inst->peak_rss_mb = std::max(inst->peak_rss_mb.load(), PeakMemoryMbLocked(*inst));
        inst->memory_sample_due = false;
      }
    }
    ApplyTickLocked(fx);
    NoteQueueLocked();
  }
  Apply(fx);
  SaveIdleTimes(false);
}

void FunctionPool::Drain() {
  SaveIdleTimes(true);  // before draining_: the next version's pool loads it
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    called_since_drain_.store(false, std::memory_order_relaxed);
    ApplyTickLocked(fx);
  }
  Apply(fx);
}

void FunctionPool::WarmOne() {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_ || draining_) return;
    for (const auto& [_, inst] : instances_) {
      if (inst->state() != InstanceState::kStopping) return;
    }
    (void)NewInstanceLocked(fx);  // no room (memory, GPUs, this node draining): none
  }
  Apply(fx);
}

void FunctionPool::StopIdle() {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty()) return;  // the idle ones are about to get work
    for (auto& [_, inst] : instances_) {
      if (inst->state() != InstanceState::kReady || !inst->Reclaim()) continue;
      if (inst->inflight() == 0) StopInstanceLocked(*inst, fx);
    }
  }
  Apply(fx);
}

void FunctionPool::Shutdown() {
  SaveIdleTimes(true);
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut_down_ = true;
    closed_.store(true);
    while (!queue_.empty()) {
      InvocationPtr inv = std::move(queue_.front());
      queue_.pop_front();
      Result r;
      r.kind = Result::Kind::kUnavailable;
      r.error_type = "ServiceUnavailable";
      r.error_message = "thaw is shutting down";
      Fail(std::move(inv), std::move(r), fx);
    }
    for (auto& [_, inst] : instances_) StopInstanceLocked(*inst, fx);
  }
  Apply(fx);
}

bool FunctionPool::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return instances_.empty() && queue_.empty();
}

bool FunctionPool::CanTakeWork() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, inst] : instances_) {
    if (inst->state() == InstanceState::kReady &&
        InflightLocked(*inst) < version_->manifest.concurrency) {
      return true;
    }
  }
  return false;
}

PoolStats FunctionPool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PoolStats s;
  s.function = version_->function;
  s.version = version_->version;
  s.draining = draining_;
  s.queued = static_cast<int64_t>(queue_.size());
  for (const auto& [_, inst] : instances_) {
    s.inflight += InflightLocked(*inst);
    ++s.instances_by_state[InstanceStateName(inst->state())];
    if (inst->state() == InstanceState::kReady && InflightLocked(*inst) > 0) ++s.busy;
    if (inst->lent != nullptr && inst->lent->state.load() == Lent::kIdle) ++s.lent;
    s.instances.push_back(
        {inst->id, inst->pid, InstanceStateName(inst->state()), inst->start_kind});
  }
  s.lane_calls = lane_calls_.load(std::memory_order_relaxed);
  s.lane_answers = lane_answers_.load(std::memory_order_relaxed);
  s.init_failures_in_a_row = init_failures_in_a_row_;
  s.last_init_error = last_init_error_;
  const KeepAlivePlan plan = KeepAlivePlanLocked();
  s.keep_alive = registry::KeepAliveName(version_->manifest.keep_alive);
  s.keep_alive_basis = KeepAliveBasisName(plan.basis);
  s.prewarm_us = plan.prewarm_us;
  s.keep_alive_us = plan.keep_alive_us;
  s.idle_samples = idle_times_.total();
  if (template_ != nullptr) {
    s.template_state = instance::TemplateStateName(template_->state());
    s.template_pid = template_->ready_pid();
    s.template_why = template_->why();
  }
  return s;
}

void FunctionPool::Apply(Effects& fx) {
  // Meter records first: once a response is on its way, its record must already be queued,
  // so a flush that follows the response (a usage query, a shutdown) always includes it. They
  // are staged in this thread's shard buffer, not written: the waiters are queued behind this
  // loop turn's other ready events (other runtimes' answers, whose records stage there too), and
  // the first of them to run journals the buffer with one write before its answer can leave (the
  // kill -9 guarantee), on whichever thread it runs (the ticket names the buffer); the rest find
  // their lines written. Answers this pool writes itself (a stream's end) are synced here.
  meter::Meter* const meter = fx.records.empty() ? nullptr : ctx_->meter;
  meter::StageTicket ticket;
  if (meter != nullptr) {
    for (auto& rec : fx.records) ticket = meter->Stage(std::move(rec));
    if (fx.results.empty() || !fx.sink_ends.empty()) meter->Sync(ticket);
  }
  for (auto& [handler, inv] : fx.nexts) {
    Complete(std::move(handler), std::move(inv));
  }
  for (auto& [handler, result] : fx.results) {
    if (meter == nullptr) {
      Complete(std::move(handler), std::move(result));
      continue;
    }
    // defer, not post: from the executor's own thread it queues behind this turn's ready
    // events without waking another thread (post would, with an epoll_ctl per call).
    asio::defer(handler.executor,
                [meter, ticket, h = std::move(handler.handler), r = std::move(result)]() mutable {
                  meter->Sync(ticket);
                  std::move(h)(std::move(r));
                });
  }
  for (auto& [sink, result] : fx.sink_ends) sink->Finish(std::move(result));
  for (pid_t pid : fx.kills) ctx_->launcher->Kill(pid);
  for (const std::string& address : fx.closes) {
    if (!address.empty()) ctx_->endpoints->Close(address);
  }
  // Before the launches: an instance the same tick pre-warms waits for the template remade here.
  if (fx.template_action == TemplateAction::kDrop) {
    // Drop refuses while a fork lives or the version's other pool wants it: then it stays.
    if (const pid_t pid = template_->Drop(); pid > 0) {
      ctx_->logs->Append(version_->function, "", "platform",
                         "TEMPLATE_REPORT Status: dropped\tthe keep-alive plan expects no call "
                         "soon (it is made again when it does)");
      ctx_->spawner->Kill(pid);
    }
  } else if (fx.template_action == TemplateAction::kMake) {
    StartTemplate();
  }
  for (const InstancePtr& inst : fx.launches) ctx_->launcher->Launch(shared_from_this(), inst->id);
}

// ---- PoolManager ----

}  // namespace thaw::pool

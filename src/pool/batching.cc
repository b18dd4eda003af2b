// Dynamic batching for versions with `batch:` in thaw.yaml: waiting calls go to an instance as
// one {"batch": [...]} event when dispatch/batch_assembly.h says so, and the handler's list is
// split back into one answer per caller, each metered for its share (pool/batch.h).
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <chrono>

#include "common/ids.h"
#include "dispatch/batch_assembly.h"
#include "logs/log_store.h"
#include "metrics/metrics.h"
#include "pool/batch.h"
#include "pool/pool.h"
#include "pool/pool_internal.h"

namespace thaw::pool {

void FunctionPool::PumpBatchesLocked(Effects& fx) {
  if (shut_down_) return;
  const registry::BatchSpec& spec = version_->manifest.batch;
  const dispatch::BatchLimits limits{spec.max_size, spec.max_wait_ms * 1000};
  while (!queue_.empty()) {
    const int64_t now = ctx_->clock->MonoMicros();
    PoolView view = ViewLocked();
    int64_t running = 0;
    for (const InstanceView& i : view.instances) running += i.inflight;
    // With nothing counted as waiting, Admit names the instance a new invocation would go to,
    // if one has a free slot.
    view.queued = 0;
    const Admission slot = Admit(view, LimitsLocked());
    const InvocationPtr& oldest = queue_.front();
    const dispatch::BatchQueue queue{
        .waiting = static_cast<int64_t>(queue_.size()),
        .oldest_arrived_us = oldest->arrived_us,
        // A call waits for an instance at most queue_timeout_us (then OnTick refuses it):
        // its deadline, which a held batch never passes. FIFO: the oldest's is the earliest.
        .earliest_deadline_us = oldest->arrived_us + ctx_->queue_timeout_us,
        .slot_free = slot.kind == Admission::Kind::kDispatch,
        .running = running,
    };
    const dispatch::BatchDecision d = dispatch::AssembleBatch(queue, limits, now);
    switch (d.kind) {
      case dispatch::BatchDecision::Kind::kIdle:
        return;
      case dispatch::BatchDecision::Kind::kHold: {
        if (batch_wake_us_ != 0 && batch_wake_us_ <= d.wake_us) return;  // armed sooner
        if (!batch_timer_) batch_timer_ = std::make_unique<asio::steady_timer>(ctx_->executor);
        batch_wake_us_ = d.wake_us;
        batch_timer_->expires_after(std::chrono::microseconds(d.wake_us - now));
        batch_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
          if (ec) return;  // re-armed or cancelled
          if (auto self = weak.lock()) self->OnBatchTimer();
        });
        return;
      }
      case dispatch::BatchDecision::Kind::kDispatch:
        AssignLocked(*instances_.at(slot.instance_id), TakeBatchLocked(d.size), fx);
        break;
    }
  }
}

void FunctionPool::OnBatchTimer() {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch_wake_us_ = 0;
    PumpBatchesLocked(fx);
  }
  Apply(fx);
}

InvocationPtr FunctionPool::TakeBatchLocked(int64_t size) {
  auto batch = std::make_shared<Invocation>();
  batch->id = NewRequestId();
  batch->members.reserve(static_cast<size_t>(size));
  std::vector<std::string_view> events;
  std::vector<std::string> ids;
  events.reserve(static_cast<size_t>(size));
  ids.reserve(static_cast<size_t>(size));
  for (int64_t i = 0; i < size && !queue_.empty(); ++i) {
    InvocationPtr call = std::move(queue_.front());
    queue_.pop_front();
    events.push_back(call->payload);
    ids.push_back(call->id);
    batch->members.push_back(std::move(call));
  }
  const Invocation& first = *batch->members.front();
  batch->payload = BatchEvent(events);
  batch->client_context = BatchClientContext(ids);
  batch->trace_id = first.trace_id;
  batch->qualifier = first.qualifier;
  batch->arrived_us = first.arrived_us;
  batch->arrived_wall_us = first.arrived_wall_us;
  const std::string n = std::to_string(batch->members.size());
  for (size_t i = 0; i < batch->members.size(); ++i) {
    // The handler's log lines carry the batch's request id: this line leads there from each
    // caller's.
    ctx_->logs->Append(version_->function, ids[i], "platform",
                       "BATCH RequestId: " + ids[i] + " BatchId: " + batch->id +
                           " Position: " + std::to_string(i + 1) + "/" + n);
  }
  if (metrics_ != nullptr) metrics_->RecordBatch(static_cast<int64_t>(batch->members.size()));
  return batch;
}

void FunctionPool::FinishBatchLocked(const InvocationPtr& batch, Result result, const char* status,
                                     int64_t max_memory_mb, Effects& fx) {
  const int64_t n = static_cast<int64_t>(batch->members.size());
  StatusOr<std::vector<BatchItem>> items = Internal("not split");
  if (result.kind == Result::Kind::kOk) {
    items = SplitBatchAnswer(result.body, static_cast<size_t>(n));
    if (!items.ok()) {
      ctx_->logs->Append(version_->function, batch->id, "platform",
                         "RequestId: " + batch->id + " Error: " + items.status().message());
    }
  }
  const int64_t gpu_us = GpuMicros(result.duration_us);
  for (int64_t i = 0; i < n; ++i) {
    const InvocationPtr& call = batch->members[static_cast<size_t>(i)];
    Result r;
    r.cold_start = result.cold_start;
    r.init_us = result.init_us;
    r.version = result.version;
    // The caller waited for the whole batch; it pays an even share of what the batch used.
    r.duration_us = result.duration_us;
    r.billed_ms = EvenShare(result.billed_ms, n, i);
    r.cpu_us = EvenShare(result.cpu_us, n, i);
    const char* call_status = status;
    if (result.kind != Result::Kind::kOk) {  // the whole batch failed: so does every call
      r.kind = result.kind;
      r.error_type = result.error_type;
      r.error_message = result.error_message;
      r.body = result.body;
    } else if (!items.ok()) {
      r.kind = Result::Kind::kFunctionError;
      r.error_type = kInvalidBatchAnswer;
      r.error_message = items.status().message();
      r.body = "{\"errorMessage\":" + boost::json::serialize(boost::json::string(r.error_message)) +
               ",\"errorType\":\"" + kInvalidBatchAnswer + "\"}";
      call_status = "error";
    } else {
      BatchItem& item = (*items)[static_cast<size_t>(i)];
      r.kind = item.failed ? Result::Kind::kFunctionError : Result::Kind::kOk;
      r.error_type = std::move(item.error_type);
      r.error_message = std::move(item.error_message);
      r.body = std::move(item.body);
      if (item.failed) call_status = "error";
    }
    RecordLocked(call, r, call_status, max_memory_mb, fx, n);
    // The ledger holds each call's share of the time too, so that sums over calls (peak
    // GB-s) count the batch once.
    fx.records.back().duration_us = EvenShare(result.duration_us, n, i);
    fx.records.back().gpu_us = EvenShare(gpu_us, n, i);
    if (call->handler) {
      fx.results.emplace_back(std::move(*call->handler), std::move(r));
      call->handler.reset();
    }
  }
}

void FunctionPool::RequeueLocked(InvocationPtr inv) {
  if (inv->members.empty()) {
    queue_.push_front(std::move(inv));
    return;
  }
  for (auto it = inv->members.rbegin(); it != inv->members.rend(); ++it) queue_.push_front(*it);
}

}  // namespace thaw::pool

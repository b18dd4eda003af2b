// FunctionPool's GPU side: an instance of a GPU function takes whole GPUs from the node's
// GpuTable before it starts, sees only them (environment, device nodes, device cgroup), and
// gives them back once gone. GPU time is metered per invocation (duration x GPUs held) and, when
// the instance goes, the rest of the time it held them (init, idle keep-alive) as one
// "gpu_idle" record: a GPU held is a GPU billed, as on Modal.
#include "common/ids.h"
#include "pool/gpu_table.h"
#include "pool/pool.h"
#include "pool/pool_internal.h"

namespace thaw::pool {

StatusOr<std::vector<sandbox::GpuDevice>> FunctionPool::TakeGpusLocked(uint64_t instance_id) {
  const registry::GpuSpec& spec = version_->manifest.gpu;
  if (spec.count == 0) return std::vector<sandbox::GpuDevice>{};
  if (ctx_->gpus == nullptr) {
    return FailedPrecondition("this node has no GPUs, and " + version_->function + " asks for " +
                              std::to_string(spec.count));
  }
  return ctx_->gpus->Acquire(version_->function + " v" + std::to_string(version_->version) + " #" +
                                 std::to_string(instance_id),
                             dispatch::GpuAsk{spec.count, spec.memory_gb, spec.kind});
}

int64_t FunctionPool::GpuMicros(int64_t duration_us) const {
  return duration_us * version_->manifest.gpu.count;
}

void FunctionPool::ReleaseGpusLocked(Instance& inst, Effects& fx) {
  if (inst.gpus.empty()) return;
  ctx_->gpus->Release(inst.gpus);
  const int64_t held_us = ctx_->clock->MonoMicros() - inst.spawned_us;
  const int64_t idle_gpu_us =
      std::max<int64_t>(0, held_us * static_cast<int64_t>(inst.gpus.size()) - inst.gpu_billed_us);
  inst.gpus.clear();
  if (idle_gpu_us == 0) return;
  meter::Record rec;
  rec.request_id = NewRequestId();
  rec.function = version_->function;
  rec.version = std::to_string(version_->version);
  rec.end_us = ctx_->clock->WallMicros();
  rec.start_us = rec.end_us - held_us;
  rec.duration_us = held_us;
  rec.gpu_us = idle_gpu_us;
  rec.status = "gpu_idle";
  fx.records.push_back(std::move(rec));
}

void FunctionPool::AddGpusLocked(const Instance& inst, sandbox::SpawnRequest& req) const {
  if (ctx_->gpus == nullptr || ctx_->gpus->devices().empty()) return;
  // The platform's word on which GPUs these are wins over the manifest's environment.
  std::erase_if(req.env, [](const std::string& kv) {
    return kv.starts_with("CUDA_VISIBLE_DEVICES=") || kv.starts_with("NVIDIA_VISIBLE_DEVICES=");
  });
  // An instance without GPUs is told there are none (CUDA_VISIBLE_DEVICES empty): its jail
  // has no GPU nodes anyway; unjailed, this is all that keeps CUDA off the node's GPUs.
  for (auto& kv : sandbox::GpuEnvironment(inst.gpus)) req.env.push_back(std::move(kv));
  if (inst.gpus.empty()) return;
  req.gpu_bind = sandbox::GpuNodesToBind(ctx_->gpus->dev_dir(), inst.gpus);
  req.gpu_deny = sandbox::GpuNodesToDeny(ctx_->gpus->dev_dir(), ctx_->gpus->devices(), inst.gpus);
}

}  // namespace thaw::pool

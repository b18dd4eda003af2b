// GpuTable: the node's GPUs and which instance holds each. The pool takes GPUs for a GPU
// function's instance before it starts (dispatch::AssignGpus decides which) and gives them back
// once the instance is gone; GET /v1/node and /metrics read it. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "dispatch/gpu_assign.h"
#include "sandbox/gpu.h"

namespace thaw::pool {

class GpuTable {
 public:
  // `devices`: the inventory; `dev_dir`: where their nodes are (/dev, or a test's directory);
  // `nvml`: for live samples, may be null; `source`: "nvml", "static" or why there are none.
  GpuTable(std::vector<sandbox::GpuDevice> devices, std::string dev_dir,
           std::unique_ptr<sandbox::Nvml> nvml, std::string source);
  ~GpuTable();

  // Takes the GPUs `ask` needs for `holder` (a label such as "hello v3 #2"); the status is
  // AssignGpus's when they cannot be had.
  StatusOr<std::vector<sandbox::GpuDevice>> Acquire(const std::string& holder,
                                                    const dispatch::GpuAsk& ask);
  void Release(const std::vector<sandbox::GpuDevice>& gpus);

  struct Row {
    sandbox::GpuDevice device;
    std::string holder;  // empty: free
    sandbox::GpuSample sample;
  };
  std::vector<Row> Snapshot() const;  // samples NVML, outside the lock
  int64_t held() const;

  const std::vector<sandbox::GpuDevice>& devices() const { return devices_; }
  const std::string& dev_dir() const { return dev_dir_; }
  const std::string& source() const { return source_; }

 private:
  const std::vector<sandbox::GpuDevice> devices_;
  const std::string dev_dir_;
  const std::unique_ptr<sandbox::Nvml> nvml_;
  const std::string source_;
  mutable std::mutex mu_;
  std::vector<std::string> holders_;  // guarded by mu_: by position in devices_, "" when free
};

}  // namespace thaw::pool

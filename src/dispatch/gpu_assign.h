// GPU assignment: which of the node's GPUs an instance that asks for some gets. An instance
// holds whole GPUs, exclusively, for its lifetime; this decides from a snapshot of who holds
// what and nothing else. Pure: tested as a table (tests/gpu_assign_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace thaw::dispatch {

struct GpuSlot {
  int index = 0;
  std::string name;          // "NVIDIA H200"
  int64_t memory_bytes = 0;  // 0: unknown
  bool held = false;         // an instance holds it now
};

struct GpuAsk {
  int64_t count = 0;
  int64_t memory_gb = 0;  // each GPU at least this much (1 GB = 2^30 bytes); 0: any
  std::string kind;       // must appear in the GPU's name, ignoring case; empty: any
};

// Whether `slot` could ever serve `ask` (held or not).
bool GpuMatches(const GpuSlot& slot, const GpuAsk& ask);

// The indexes of the GPUs to give, `ask.count` of them: free matching GPUs, the smallest
// memory first (so larger GPUs stay free for asks that need them), then by index.
// ResourceExhausted: not enough free now (wait and retry: 429). FailedPrecondition: this
// node never could (too few matching GPUs at all), with what it has.
StatusOr<std::vector<int>> AssignGpus(const std::vector<GpuSlot>& gpus, const GpuAsk& ask);

// At deploy: OK, or InvalidArgument naming thaw.yaml's `gpu` field when this node could never
// give an instance what it asks for (every GPU counted, held or not).
Status CheckGpusFit(const std::vector<GpuSlot>& gpus, const GpuAsk& ask);

}  // namespace thaw::dispatch

// CPU affinity for thread-per-core: a shard's thread pinned to one CPU (the `pin_shards` knob)
// and a small instance pinned to its shard's CPU (`pin_instances`), so that the wake-ups of a
// warm call (thaw writes the event, the runtime answers) stay on one CPU instead of crossing
// to another by an inter-processor interrupt. Plain functions over sched_{get,set}affinity;
// any thread may call them.
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/status.h"

namespace thaw {

// The CPUs this process may run on (its affinity mask at the time of the call), in order.
std::vector<int> AllowedCpus();

// The CPU shard `shard` is pinned to: the shard-th of `cpus`, round robin; -1 when `cpus` is
// empty (nothing is pinned).
int ShardCpu(const std::vector<int>& cpus, int shard);

// Pins the calling thread to `cpu`.
[[nodiscard]] Status PinThisThread(int cpu);

// Pins every thread of process `pid` to `cpu` (threads it starts later inherit it). A thread
// that exits meanwhile is skipped.
[[nodiscard]] Status PinProcess(pid_t pid, int cpu);

}  // namespace thaw

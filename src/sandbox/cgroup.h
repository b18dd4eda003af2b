// Cgroups: per-instance resource limits and accounting, with a backend for cgroup v1 (one
// hierarchy per controller: memory, cpu, cpuacct, pids) and one for v2 (the unified tree).
// Creating, joining, killing and removing happen in the spawner (root); reading usage is
// plain file reads and may happen from any thread of thaw. Instances are named; the backend
// maps a name to its directories under the hierarchy's "thaw" parent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "sandbox/gpu.h"

namespace thaw::sandbox {

struct CgroupLimits {
  int64_t memory_bytes = 128LL << 20;
  int64_t pids_max = 1024;
  int64_t cpu_weight = 100;  // 1..10000, v2 semantics; v1 converts to cpu.shares

  bool operator==(const CgroupLimits&) const = default;
};

struct CgroupUsage {
  int64_t cpu_us = 0;             // user + system CPU time of every process in it
  int64_t peak_memory_bytes = 0;  // high-water mark (0 when the kernel does not track it)
  int64_t oom_kills = 0;          // processes the kernel killed for hitting memory_bytes
};

// Lambda's CPU share is proportional to memory: a full vCPU at 1769 MB.
int64_t CpuWeightForMemory(int64_t memory_mb);

class Cgroups {
 public:
  virtual ~Cgroups() = default;

  // The backend this machine supports for thaw's use, or an error saying why none does
  // (not root, no cgroup filesystem, a controller missing).
  static StatusOr<std::unique_ptr<Cgroups>> Detect(const std::string& root = "/sys/fs/cgroup");

  virtual std::string Describe() const = 0;
  virtual Status Create(const std::string& name, const CgroupLimits& limits) = 0;
  // Changes the limits of an existing cgroup (a pre-created one, when an instance takes it).
  virtual Status SetLimits(const std::string& name, const CgroupLimits& limits) = 0;
  // Moves `pid` (0: the caller) into `name`, in every hierarchy (ProcsFiles), by path.
  Status AddProcess(const std::string& name, pid_t pid);
  // The cgroup.procs file of each hierarchy `name` is in (one on v2).
  virtual std::vector<std::string> ProcsFiles(const std::string& name) const = 0;
  virtual StatusOr<CgroupUsage> Usage(const std::string& name) const = 0;
  // Usage's peak_memory_bytes alone: one file read (0 when unknown or gone).
  virtual int64_t PeakMemoryBytes(const std::string& name) const = 0;
  // The file holding the cgroup's CPU counter (for a reader that keeps it open) and how to
  // parse it; see CpuCounter.
  virtual std::string CpuFile(const std::string& name) const = 0;
  // Refuses the processes in `name` every access to the `denied` device nodes (another
  // instance's GPUs): v1 writes devices.deny, v2 attaches a BPF device program. Called as root
  // from inside the cgroup, before exec. An error when the backend has no device control.
  virtual Status DenyDevices(const std::string& name, const std::vector<DeviceNumber>& denied) = 0;
  // SIGKILLs every process in it.
  virtual Status Kill(const std::string& name) = 0;
  // Removes it; it must be empty (kill first, and wait for the processes to be reaped).
  virtual Status Remove(const std::string& name) = 0;
  // The names of the instance cgroups that exist now.
  virtual std::vector<std::string> Names() const = 0;
};

// A cgroup's cgroup.procs files held open, so that moving a process in is one write per
// hierarchy with no path lookup: the spawner makes cgroups for forks ahead this way (on cgroup
// v1, opening the five files by path cost it more than the writes). Move-only.
class CgroupProcs {
 public:
  static StatusOr<CgroupProcs> Open(const Cgroups& cgroups, const std::string& name);
  // Moves `pid` (0: the caller) into the cgroup, in every hierarchy.
  Status Add(pid_t pid) const;
  bool empty() const { return fds_.empty(); }

 private:
  std::vector<UniqueFd> fds_;
};

// Reads a CPU-time counter cheaply and often: one pread on a file kept open. Sources: a
// cgroup's cpuacct.usage (v1, ns) or cpu.stat (v2, usage_usec), or /proc/PID/stat (a single
// process's utime+stime, where there are no cgroups). Move-only; not thread-safe.
class CpuCounter {
 public:
  CpuCounter() = default;
  static CpuCounter ForCgroupFile(const std::string& path);
  static CpuCounter ForProcess(pid_t pid);
  CpuCounter(CpuCounter&& other) noexcept;
  CpuCounter& operator=(CpuCounter&& other) noexcept;
  CpuCounter(const CpuCounter&) = delete;
  CpuCounter& operator=(const CpuCounter&) = delete;
  ~CpuCounter();

  // Microseconds of CPU so far, or -1 if unreadable (the process or cgroup is gone).
  int64_t ReadMicros() const;

 private:
  enum class Kind { kNone, kCpuacctUsage, kCpuStat, kProcStat };
  Kind kind_ = Kind::kNone;
  int fd_ = -1;
};

}  // namespace thaw::sandbox

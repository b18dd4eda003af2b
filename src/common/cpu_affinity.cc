#include "common/cpu_affinity.h"

#include <dirent.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace thaw {

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

int ShardCpu(const std::vector<int>& cpus, int shard) {
  if (cpus.empty() || shard < 0) return -1;
  return cpus[static_cast<size_t>(shard) % cpus.size()];
}

namespace {

// 0 or the errno.
int PinTask(pid_t tid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  // SAFETY: changes only where the scheduler may run the task; thaw has the right to (its own
  // threads, or an instance: same uid, or thaw is root).
  return ::sched_setaffinity(tid, sizeof(set), &set) == 0 ? 0 : errno;
}

}  // namespace

Status PinThisThread(int cpu) {
  const int err = PinTask(0, cpu);
  return err == 0 ? Status::Ok() : ErrnoStatus("set CPU affinity", "this thread", err);
}

Status PinProcess(pid_t pid, int cpu) {
  const std::string object = "process " + std::to_string(pid);
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus("list threads", object, errno);
  Status result = Status::Ok();
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const pid_t tid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    const int err = PinTask(tid, cpu);
    if (err != 0 && err != ESRCH && result.ok())
      result = ErrnoStatus("set CPU affinity", object, err);
  }
  ::closedir(d);
  return result;
}

}  // namespace thaw

// Spawner: the small single-threaded helper process that starts instances. thaw forks it at
// start-up before any thread exists; the multi-threaded gateway never forks. The gateway sends
// spawn and kill requests over a unix socket (SpawnerClient) and reads exit events from a
// second one. This is the one place that uses privileges (namespaces, cgroups), or, when thaw
// is not root, user namespaces.
//
// SpawnerClient is thread-safe: requests serialize on a mutex (a spawn is a fork+exec, well
// under a millisecond); exit events are read by one owner of exit_fd().
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "sandbox/cgroup.h"

namespace thaw::sandbox {

// How instances are isolated, decided once at start (docs/sandbox.md has the layers).
enum class Isolation {
  kPlain,     // plain processes of thaw's uid: sandbox off, or no user namespaces without root
  kJail,      // root: namespaces, private root, a uid per instance, seccomp, cgroups
  kRootless,  // not root: the same namespaces inside a user namespace, thaw's uid, rlimits
};

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is the absolute path to exec
  std::vector<std::string> env;   // "KEY=value", the complete environment
  std::string cwd;
  int stdout_fd = -1;  // write ends the child gets as fd 1 and 2; borrowed, not closed
  int stderr_fd = -1;
  // Used when the spawner isolates (SpawnerClient::isolated()): argv, env and cwd then name
  // paths inside the jail (/var/task, /opt/thaw).
  std::string bundle_dir;  // host path of the bundle
  std::string cgroup;      // instance name for the cgroup
  CgroupLimits limits;
  uid_t uid = 65534;  // the jailed runtime's uid and gid: one per live instance (kJail)
  // network: none: the instance runs in a network namespace of its own holding only loopback,
  // with its Runtime API listener made inside it at kPrivateRuntimeApi (jail.h). Refused
  // under Isolation::kPlain, which cannot enforce it.
  bool private_network = false;
};

struct Spawned {
  pid_t pid = 0;
  std::string cgroup;    // the cgroup it runs in (a pre-created shell's); empty without cgroups
  UniqueFd runtime_api;  // private_network: the listener made inside its namespace
};

struct ExitEvent {
  pid_t pid = 0;
  int wait_status = 0;  // as from waitpid
  // From the instance's cgroup, read before it is removed (zero without cgroups).
  int64_t cpu_us = 0;
  int64_t peak_memory_bytes = 0;
  int64_t oom_kills = 0;
};

// "exit status 1" / "signal: killed", as Lambda words a runtime's end.
std::string DescribeWaitStatus(int wait_status);

class SpawnerClient {
 public:
  // Forks the spawner process. Call before starting any thread. With `sandbox`, instances are
  // jailed (see jail.h) with `jail_root` (an empty directory) as their mount point: as root,
  // in cgroups too when the machine has them; not root, inside user namespaces when the
  // kernel allows them (tried once here), else they are plain processes with rlimits.
  // Every jailed instance sees `runtimes_dir` at /opt/thaw and a /tmp of `tmp_bytes`.
  static StatusOr<std::unique_ptr<SpawnerClient>> Start(const std::string& jail_root,
                                                        const std::string& runtimes_dir,
                                                        int64_t tmp_bytes, bool sandbox);
  ~SpawnerClient();
  SpawnerClient(const SpawnerClient&) = delete;
  SpawnerClient& operator=(const SpawnerClient&) = delete;

  // Starts the child in its own session and process group; fails with the exec error.
  StatusOr<Spawned> Spawn(const SpawnRequest& request);
  // SIGKILLs the child's whole process group, unless the child was already reaped.
  Status Kill(pid_t pid);
  // Readable socket of ExitEvent records (one per datagram).
  int exit_fd() const { return exit_fd_; }
  pid_t spawner_pid() const { return spawner_pid_; }
  Isolation mode() const { return mode_; }
  // Whether instances run jailed, seeing the paths of jail.h (kTaskRoot, kRuntimeDir).
  bool isolated() const { return mode_ != Isolation::kPlain; }
  // Cgroup usage of a live instance; null without cgroups.
  const Cgroups* cgroups() const { return cgroups_.get(); }
  // One line for logs and GET /v1/node: what isolation is active, and why not more.
  const std::string& isolation() const { return isolation_; }

 private:
  SpawnerClient(int request_fd, int exit_fd, pid_t pid)
      : request_fd_(request_fd), exit_fd_(exit_fd), spawner_pid_(pid) {}
  StatusOr<std::string> Call(const std::string& message, const int* fds, int nfds,
                             UniqueFd* reply_fd = nullptr);

  std::mutex mu_;
  const int request_fd_;
  const int exit_fd_;
  const pid_t spawner_pid_;
  Isolation mode_ = Isolation::kPlain;
  std::unique_ptr<Cgroups> cgroups_;
  std::string isolation_;
};

}  // namespace thaw::sandbox

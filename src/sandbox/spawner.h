// Spawner: the small single-threaded helper process that starts instances. thaw forks it at
// start-up before any thread exists; the multi-threaded gateway never forks. The gateway sends
// spawn and kill requests over a unix socket (SpawnerClient) and reads exit events from a
// second one. This is the one place that will need privileges (namespaces, cgroups).
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

namespace thaw::sandbox {

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is the absolute path to exec
  std::vector<std::string> env;   // "KEY=value", the complete environment
  std::string cwd;
  int stdout_fd = -1;  // write ends the child gets as fd 1 and 2; borrowed, not closed
  int stderr_fd = -1;
};

struct ExitEvent {
  pid_t pid = 0;
  int wait_status = 0;  // as from waitpid
};

// "exit status 1" / "signal: killed", as Lambda words a runtime's end.
std::string DescribeWaitStatus(int wait_status);

class SpawnerClient {
 public:
  // Forks the spawner process. Call before starting any thread.
  static StatusOr<std::unique_ptr<SpawnerClient>> Start();
  ~SpawnerClient();
  SpawnerClient(const SpawnerClient&) = delete;
  SpawnerClient& operator=(const SpawnerClient&) = delete;

  // Starts the child in its own session and process group; fails with the exec error.
  StatusOr<pid_t> Spawn(const SpawnRequest& request);
  // SIGKILLs the child's whole process group, unless the child was already reaped.
  Status Kill(pid_t pid);
  // Readable socket of ExitEvent records (one per datagram).
  int exit_fd() const { return exit_fd_; }
  pid_t spawner_pid() const { return spawner_pid_; }

 private:
  SpawnerClient(int request_fd, int exit_fd, pid_t pid)
      : request_fd_(request_fd), exit_fd_(exit_fd), spawner_pid_(pid) {}
  StatusOr<std::string> Call(const std::string& message, const int* fds, int nfds);

  std::mutex mu_;
  const int request_fd_;
  const int exit_fd_;
  const pid_t spawner_pid_;
};

}  // namespace thaw::sandbox

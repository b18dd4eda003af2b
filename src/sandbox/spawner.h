// Spawner: the small single-threaded helper process that starts instances. thaw forks it at
// start-up before any thread exists; the multi-threaded gateway never forks. This is the one
// place that uses privileges (namespaces, cgroups), or, when thaw is not root, user namespaces.
//
// The protocol is asynchronous: spawn requests carry ids, replies come back with them, and the
// spawner keeps many starts in flight (it waits for no child's exec), so no gateway thread ever
// waits for a spawn or a kill. Exit events arrive on a second socket.
//
// SpawnerClient is thread-safe: Spawn and Kill may be called from any thread and only send;
// replies are read, and their callbacks run, on the client's reply thread (StartReplyThread),
// or, without it, by SpawnAndWait; exit events by the one owner of exit_fd().
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
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
  // The runtime's end of its native channel (runtime_api/channel_frame.h), which the child
  // gets as fd kChannelFd; borrowed. -1: none. Never with template_channel.
  int channel_fd = -1;
  // Used when the spawner isolates (SpawnerClient::isolated()): argv, env and cwd then name
  // paths inside the jail (/var/task, /opt/thaw).
  std::string bundle_dir;  // host path of the bundle
  std::string cgroup;      // instance name for the cgroup
  CgroupLimits limits;
  // network: none: the instance runs in a network namespace of its own holding only loopback,
  // with its Runtime API listener made inside it at kPrivateRuntimeApi (jail.h). Refused
  // under Isolation::kPlain, which cannot enforce it.
  bool private_network = false;
  // GPU instances: host device nodes bound into the jail, and those its device cgroup denies
  // (sandbox/gpu.h). Isolation::kPlain ignores both: such an instance could open every GPU and
  // only CUDA_VISIBLE_DEVICES steers it (GET /v1/node says so).
  std::vector<std::string> gpu_bind, gpu_deny;
  // Models (models/store.h): {host folder, path in the jail}, each bound read-only. Ignored by
  // Isolation::kPlain, whose instances find the host folder in THAW_MODEL_<NAME> instead.
  std::vector<std::pair<std::string, std::string>> mounts;
  // Start a template (instance/template.h): a runtime that does the function's init, says so
  // on its channel (fd kTemplateFd, THAW_TEMPLATE_FD) and then forks instances on request.
  // The spawn is answered only once it is ready (or failed); after that its exit is an
  // ordinary exit event.
  bool template_channel = false;
  // The size of its /tmp (jailed instances); 0: SpawnerOptions::tmp_bytes. Shells are kept
  // ready per size, so a size seen before costs nothing at the start.
  int64_t tmp_bytes = 0;
};

// Where a template's runtime finds its channel to the spawner (THAW_TEMPLATE_FD).
inline constexpr int kTemplateFd = 4;
// Where an exec'd instance finds its native channel to thaw (THAW_CHANNEL_FD). A forked one
// gets it with its identity, at whatever number the template's child receives it.
inline constexpr int kChannelFd = 5;

// A new instance forked from a ready template: its own cgroup (and limits), its own log pipes
// and its own environment (Runtime API address, log stream), applied by the child before any
// of the function's code runs again. It runs as the template's uid (docs/sandbox.md).
struct ForkRequest {
  pid_t template_pid = 0;
  std::vector<std::string> env;  // "KEY=value", the complete environment
  int stdout_fd = -1;            // borrowed, as in SpawnRequest
  int stderr_fd = -1;
  int channel_fd = -1;  // borrowed, as in SpawnRequest; -1: none
  CgroupLimits limits;
};

struct Spawned {
  pid_t pid = 0;
  std::string cgroup;  // the cgroup it runs in (a pre-created shell's); empty without cgroups
  // Isolation::kJail: the uid the spawner gave it, its own among every live instance on the
  // host (uid_pool.h); 0 otherwise.
  uid_t uid = 0;
  UniqueFd runtime_api;  // private_network: the listener made inside its namespace
};

using SpawnDone = std::function<void(StatusOr<Spawned>)>;

struct SpawnerOptions {
  std::string jail_root;            // an empty directory: jailed instances' mount point
  std::string runtimes_dir;         // seen by jailed instances at /opt/thaw
  int64_t tmp_bytes = 512LL << 20;  // /tmp of spawns that name no size; shells kept ready
  // Jailed instances: sandboxes (shells) kept ready, made while the spawner is idle, so that as
  // many cold starts at once take one and wait for no namespace, cgroup or disk: per kind of
  // shell that functions asked for (network mode and /tmp size); a start that finds none
  // makes its own. Each holds a process, a loop device, a mount and a cgroup while it waits.
  int64_t ready_shells = 2;
  // Where jailed instances' /tmp disks are made (tmp_disk.h): a folder on the disk they should
  // use; empty, or where loop devices cannot be had, /tmp is a tmpfs (isolation() says which).
  std::string tmp_disk_dir;
  bool sandbox = true;
  // Isolation::kJail: how many instances may be live at once (each needs a uid of its own),
  // and where the host-wide uid leases are kept (shared by every thaw server on the host).
  int64_t instance_uids = 10000;
  std::string uid_lock_dir = "/run/thaw";
  // thaw-shell (built beside thaw): jailed shells exec it before they wait, so a start's exec
  // is cheap (SpawnerSetup::shell_exe). Empty or missing: shells wait as copies of the spawner.
  std::string shell_exe;
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
  // jailed (see jail.h): as root, in cgroups too when the machine has them, each with a uid of
  // its own; not root, inside user namespaces when the kernel allows them (tried once here),
  // else they are plain processes with rlimits. Every jailed instance sees `runtimes_dir` at
  // /opt/thaw and a /tmp of its request's size (its own disk where loop devices allow).
  static StatusOr<std::unique_ptr<SpawnerClient>> Start(const SpawnerOptions& options);
  ~SpawnerClient();
  SpawnerClient(const SpawnerClient&) = delete;
  SpawnerClient& operator=(const SpawnerClient&) = delete;

  // Asks for the child to be started in its own session and process group, and returns at
  // once. `done` runs later, on the reply thread, with the child or its exec error; or at
  // once, on this thread, when the request cannot be sent. The descriptors in `request` are
  // sent before this returns: the caller may close its copies. `done` must not block.
  void Spawn(const SpawnRequest& request, SpawnDone done);
  // Asks a ready template for a new instance, as Spawn asks for a fresh one: `done` gets the
  // child (its pid as thaw sees it, its cgroup) or why not (the template is gone, or refused:
  // it holds threads). The child's exit comes as an exit event like any instance's.
  void Fork(const ForkRequest& request, SpawnDone done);
  // SIGKILLs the child's whole process group, unless the child was already reaped. Sends and
  // returns: the exit event tells when it is gone.
  void Kill(pid_t pid);
  // Starts the thread that reads replies and runs Spawn's callbacks, until the spawner is gone
  // or StopReplyThread. Stop it before anything its callbacks use is destroyed: it fails the
  // spawns still waiting, running their callbacks one last time.
  void StartReplyThread();
  void StopReplyThread();
  // Spawn, then read replies until this one's: for tests and tools, never with the reply
  // thread running.
  StatusOr<Spawned> SpawnAndWait(const SpawnRequest& request);
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
  // What a function's /tmp (ephemeral_storage_mb) is here: "disk" (an ext4 of its own, not
  // memory), "memory" (a tmpfs counted against memory_mb: no loop devices), "host memory" (a
  // tmpfs outside RLIMIT_DATA: rootless) or "shared" (the host's /tmp, size not enforced:
  // plain processes).
  const std::string& tmp_storage() const { return tmp_storage_; }
  // Isolation::kJail: the uids this server's instances run as ("200000-209999"); else empty.
  const std::string& instance_uids() const { return instance_uids_; }

 private:
  SpawnerClient(int request_fd, int exit_fd, pid_t pid)
      : request_fd_(request_fd), exit_fd_(exit_fd), spawner_pid_(pid) {}
  // Reads the replies that arrived and runs their callbacks; false once the spawner is gone
  // (every waiting callback has then failed).
  bool OnReplies();
  void FailAllPending(const Status& why);
  // Registers `done` under a new id written at `id_at` in `msg`, and sends it with `fds`.
  void Send(std::string msg, size_t id_at, const int* fds, int nfds, SpawnDone done);

  std::mutex mu_;
  uint64_t next_id_ = 0;                   // guarded by mu_
  std::map<uint64_t, SpawnDone> pending_;  // guarded by mu_: spawns sent, not yet answered
  const int request_fd_;
  const int exit_fd_;
  const pid_t spawner_pid_;
  Isolation mode_ = Isolation::kPlain;
  std::unique_ptr<Cgroups> cgroups_;
  std::string isolation_;
  std::string instance_uids_;
  std::string tmp_storage_;
  std::thread reply_thread_;
};

}  // namespace thaw::sandbox

#include "sandbox/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include "sandbox/jail.h"
#include "sandbox/shell.h"
#include "sandbox/wire.h"

namespace thaw::sandbox {
namespace {

// Requests (wire.h) are an op byte followed by NUL-separated fields; the reply is
// "ok <pid> [<cgroup>]", carrying a network: none instance's Runtime API listener, or
// "err <message>".
constexpr char kOpSpawn = 'S';
constexpr char kOpKill = 'K';
constexpr size_t kReadyShells = 2;  // pre-created sandboxes kept for cold starts
constexpr int kRefillDelayMs = 20;  // how long the spawner is idle before it makes more

// The ready shells, one queue per network mode. Until some function asks for network: none,
// one such shell is kept (its first cold start is then as quick as the rest), not
// kReadyShells: most machines never use it.
struct Shells {
  std::deque<Shell> ready[2];  // indexed by private_network
  size_t keep[2] = {kReadyShells, 1};

  bool Short() const { return ready[0].size() < keep[0] || ready[1].size() < keep[1]; }

  // Forgets the ready shell with this pid; false when it is not one.
  bool Forget(pid_t pid, std::vector<std::string>& unremoved) {
    for (auto& queue : ready) {
      auto it =
          std::find_if(queue.begin(), queue.end(), [pid](const Shell& s) { return s.pid == pid; });
      if (it == queue.end()) continue;
      ::close(it->control);
      if (!it->cgroup.empty()) unremoved.push_back(it->cgroup);
      queue.erase(it);
      return true;
    }
    return false;
  }
};

// Fills the queues: one shell each at once, the rest only when `idle`. A shell costs CPU (its
// mounts, a cgroup, a network namespace) that, made right after a spawn, the instance just
// started would have to share.
void RefillShells(const SpawnerSetup& setup, Shells& shells, bool idle) {
  if (setup.mode == Isolation::kPlain) return;
  for (bool net : {false, true}) {
    auto& queue = shells.ready[net];
    const size_t target = idle ? shells.keep[net] : 1;
    while (queue.size() < target) {
      auto shell = StartShell(setup, net);
      if (!shell.ok()) break;  // the next spawn reports the error
      queue.push_back(std::move(*shell));
    }
  }
}

// Waits for a shell's exec like AwaitExec, on its control socket, which may first carry the
// Runtime API listener it made.
std::string AwaitShellExec(int control, UniqueFd& listener) {
  std::string buf;
  std::vector<int> fds;
  for (;;) {
    fds.clear();
    if (RecvWithFds(control, buf, fds, 4096) <= 0) return "";
    if (fds.empty()) return buf;
    listener.reset(fds[0]);
    for (size_t i = 1; i < fds.size(); ++i) ::close(fds[i]);
  }
}

struct Reply {
  std::string text;  // "ok PID CGROUP" or "err MESSAGE"
  UniqueFd fd;       // the private Runtime API listener, when there is one
};

Reply SpawnInShell(const SpawnerSetup& setup, const ChildSpec& spec,
                   const std::vector<std::string>& fields, const std::vector<int>& fds,
                   Shells& shells, std::map<pid_t, std::string>& live) {
  auto& ready = shells.ready[spec.private_network];
  shells.keep[spec.private_network] = kReadyShells;
  if (ready.empty()) {
    auto fresh = StartShell(setup, spec.private_network);
    if (!fresh.ok()) return {"err " + fresh.status().message(), {}};
    ready.push_back(std::move(*fresh));
  }
  Shell shell = ready.front();
  ready.pop_front();
  if (!shell.cgroup.empty()) {
    Status st = setup.cgroups->SetLimits(shell.cgroup, spec.limits);
    if (!st.ok()) {
      ::close(shell.control);
      ::kill(shell.pid, SIGKILL);
      live[shell.pid] = shell.cgroup;  // reaped and removed like any child
      return {"err " + st.message(), {}};
    }
  }
  std::string msg;
  for (const auto& f : fields) AppendField(msg, f);
  int child_fds[2] = {fds[0], fds[1]};
  live[shell.pid] = shell.cgroup;
  if (SendWithFds(shell.control, msg, child_fds, 2) < 0) {
    int err = errno;
    ::close(shell.control);
    ::kill(shell.pid, SIGKILL);
    return {std::string("err failed to start instance in sandbox shell: ") + strerror(err), {}};
  }
  Reply reply;
  std::string error = AwaitShellExec(shell.control, reply.fd);
  ::close(shell.control);
  if (!error.empty()) return {"err " + error, {}};  // the shell exits; its reaping cleans up
  if (spec.private_network && !reply.fd.valid()) {
    ::kill(shell.pid, SIGKILL);
    return {"err failed to start instance in sandbox shell: no Runtime API listener came back", {}};
  }
  reply.text = "ok " + std::to_string(shell.pid) + " " + shell.cgroup;
  return reply;
}

Reply SpawnPlain(const SpawnerSetup& setup, const ChildSpec& spec, const std::vector<int>& fds,
                 std::map<pid_t, std::string>& live) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return {std::string("err failed to create pipe on spawner: ") + strerror(errno), {}};
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return {std::string("err failed to fork on spawner: ") + strerror(err), {}};
  }
  if (pid == 0) {
    ::close(status_pipe[0]);
    ExecChild(setup, spec, fds[0], fds[1], status_pipe[1], nullptr);
  }
  ::close(status_pipe[1]);
  std::string error = AwaitExec(status_pipe[0]);
  ::close(status_pipe[0]);
  if (!error.empty()) {
    ::waitpid(pid, nullptr, 0);
    return {"err " + error, {}};
  }
  live[pid] = "";
  return {"ok " + std::to_string(pid), {}};
}

Reply HandleSpawn(const SpawnerSetup& setup, const std::vector<std::string>& fields,
                  const std::vector<int>& fds, Shells& shells, std::map<pid_t, std::string>& live) {
  auto spec = ParseSpawn(fields);
  if (!spec.ok() || fds.size() != 2) return {"err malformed spawn request", {}};
  if (setup.mode != Isolation::kPlain) return SpawnInShell(setup, *spec, fields, fds, shells, live);
  if (spec->private_network) {
    return {
        "err failed to start instance: network: none needs the sandbox, and instances run "
        "as plain processes here (GET /v1/node says why)",
        {}};
  }
  return SpawnPlain(setup, *spec, fds, live);
}

// Reaps exited children: a ready shell that died unused is dropped quietly; an instance's
// cgroup is read and removed and its exit event sent.
void ReapChildren(const SpawnerSetup& setup, int exit_fd, Shells& shells,
                  std::map<pid_t, std::string>& live, std::vector<std::string>& unremoved) {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (shells.Forget(pid, unremoved)) continue;
    ExitEvent ev{pid, status, 0, 0, 0};
    auto it = live.find(pid);
    if (it != live.end() && setup.cgroups != nullptr && !it->second.empty()) {
      if (auto usage = setup.cgroups->Usage(it->second); usage.ok()) {
        ev.cpu_us = usage->cpu_us;
        ev.peak_memory_bytes = usage->peak_memory_bytes;
        ev.oom_kills = usage->oom_kills;
      }
      (void)setup.cgroups->Kill(it->second);
      if (!setup.cgroups->Remove(it->second).ok()) unremoved.push_back(it->second);
    }
    if (it != live.end()) live.erase(it);
    (void)!::send(exit_fd, &ev, sizeof(ev), MSG_NOSIGNAL);
  }
}

Reply HandleKill(const SpawnerSetup& setup, const std::vector<std::string>& fields,
                 std::map<pid_t, std::string>& live) {
  pid_t pid = static_cast<pid_t>(std::stol(fields[1]));
  // Only a child not yet reaped: its pid cannot have been reused.
  if (auto it = live.find(pid); it != live.end()) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup.cgroups != nullptr && !it->second.empty()) (void)setup.cgroups->Kill(it->second);
  }
  return {"ok 0", {}};
}

[[noreturn]] void SpawnerMain(const SpawnerSetup& setup, int request_fd, int exit_fd) {
  ::prctl(PR_SET_NAME, "thaw-spawner");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  // SIGINT/SIGTERM from a terminal reach the whole process group; thaw decides when we stop.
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  std::map<pid_t, std::string> live;   // child -> its cgroup name (may be empty)
  Shells shells;                       // ready sandboxes, when isolated
  std::vector<std::string> unremoved;  // cgroups still busy when their child was reaped
  std::string buf;
  bool idle = false;  // the last poll timed out: no request came for a moment
  for (;;) {
    // Keep sandboxes ready for the next cold starts (after any reply went out).
    RefillShells(setup, shells, idle);
    int timeout = shells.Short() ? kRefillDelayMs : -1;
    // Cgroups whose last processes were still exiting are retried shortly.
    if (!unremoved.empty()) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
    pollfd pfds[2] = {{request_fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    int ready = ::poll(pfds, 2, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    idle = ready == 0;
    if (pfds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sfd, &info, sizeof(info)) == sizeof(info)) {
      }
      ReapChildren(setup, exit_fd, shells, live, unremoved);
    }
    for (auto it = unremoved.begin(); it != unremoved.end();) {
      it = setup.cgroups->Remove(*it).ok() ? unremoved.erase(it) : std::next(it);
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      std::vector<int> fds;
      ssize_t n = RecvWithFds(request_fd, buf, fds);
      if (n <= 0) break;  // thaw is gone
      auto fields = SplitFields(buf.data(), buf.size());
      Reply reply{"err unknown request", {}};
      if (!fields.empty() && fields[0].size() == 1 && fields[0][0] == kOpSpawn) {
        reply = HandleSpawn(setup, fields, fds, shells, live);
      } else if (fields.size() == 2 && fields[0].size() == 1 && fields[0][0] == kOpKill) {
        reply = HandleKill(setup, fields, live);
      }
      for (int fd : fds) ::close(fd);
      int reply_fd = reply.fd.get();
      (void)!SendWithFds(request_fd, reply.text, &reply_fd, reply.fd.valid() ? 1 : 0);
    }
  }
  for (auto& queue : shells.ready) {
    for (const Shell& shell : queue) live[shell.pid] = shell.cgroup;
  }
  for (const auto& [pid, cgroup] : live) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup.cgroups != nullptr && !cgroup.empty()) {
      (void)setup.cgroups->Kill(cgroup);
      ::waitpid(pid, nullptr, 0);
      (void)setup.cgroups->Remove(cgroup);
    }
  }
  _exit(0);
}

}  // namespace

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit status " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    // strsignal's wording, lower-cased, matches Lambda's: "signal: killed", "signal:
    // segmentation fault", "signal: aborted".
    std::string name = strsignal(WTERMSIG(wait_status));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "signal: " + name;
  }
  return "unknown status " + std::to_string(wait_status);
}

namespace {

constexpr char kNetworkLayers[] =
    "network: none gets a network namespace of its own (loopback only, Runtime API inside it)";

// Root: every layer, cgroups where the machine has them.
std::string SetUpJail(SpawnerSetup& setup, std::unique_ptr<Cgroups>& cgroups) {
  setup.mode = Isolation::kJail;
  std::string isolation =
      "jail (root): mount, PID, IPC and UTS namespaces; private root (bundle read-only at "
      "/var/task, tmpfs /tmp); a uid of its own; no_new_privs; seccomp";
  auto detected = Cgroups::Detect();
  if (detected.ok()) {
    cgroups = std::move(*detected);
    setup.cgroups = cgroups.get();
    isolation += "; " + cgroups->Describe() + " with memory, pids and CPU-weight limits";
  } else {
    isolation += "; no cgroups (" + detected.status().message() + "): memory_mb is not enforced";
  }
  return isolation +
         "; network: egress shares the host network, its Runtime API answering only its "
         "instance's uid; " +
         kNetworkLayers;
}

// Not root: user namespaces if the kernel allows them, else plain processes; rlimits for the
// limits cgroups would give.
std::string SetUpRootless(SpawnerSetup& setup) {
  const std::string uid = std::to_string(setup.host_uid);
  setup.mode = Isolation::kRootless;
  setup.rlimit_memory = true;
  Status probe = ProbeUserNamespaces(setup);
  if (probe.ok()) {
    setup.rlimit_pids = true;
    return "rootless (thaw is uid " + uid +
           ", not root): user namespaces: user, mount, PID, IPC and UTS namespaces; private "
           "root (bundle read-only at /var/task, tmpfs /tmp); every instance runs as uid " +
           uid +
           "; no_new_privs; seccomp; no cgroups (not root): memory_mb is RLIMIT_DATA (private "
           "writable memory), pids_max is RLIMIT_NPROC per instance, no CPU weight; network: "
           "egress shares the host network, its Runtime API answering only sockets held by its "
           "instance's processes; " +
           kNetworkLayers;
  }
  setup.mode = Isolation::kPlain;
  return "none: thaw is not root and user namespaces are refused (" + probe.message() +
         "): instances are plain processes of uid " + uid +
         " in their own process groups; memory_mb is RLIMIT_DATA only; network: none cannot be "
         "enforced (such functions fail to start)";
}

}  // namespace

StatusOr<std::unique_ptr<SpawnerClient>> SpawnerClient::Start(const std::string& jail_root,
                                                              const std::string& runtimes_dir,
                                                              int64_t tmp_bytes, bool sandbox) {
  SpawnerSetup setup;
  setup.jail_root = jail_root;
  setup.runtimes_dir = runtimes_dir;
  setup.tmp_bytes = tmp_bytes;
  setup.host_uid = ::geteuid();
  setup.host_gid = ::getegid();
  std::unique_ptr<Cgroups> cgroups;
  std::string isolation;
  if (!sandbox) {
    isolation =
        "none: the sandbox is switched off (sandbox=false): instances are plain "
        "processes of uid " +
        std::to_string(setup.host_uid) +
        " in their own process groups; network: none cannot be enforced (such "
        "functions fail to start)";
  } else if (setup.host_uid == 0) {
    isolation = SetUpJail(setup, cgroups);
  } else {
    isolation = SetUpRootless(setup);
  }
  int req[2], ex[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) != 0) {
    return ErrnoStatus("create socketpair", "spawner requests", errno);
  }
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ex) != 0) {
    return ErrnoStatus("create socketpair", "spawner exits", errno);
  }
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("fork", "spawner", errno);
  if (pid == 0) {
    ::close(req[0]);
    ::close(ex[0]);
    SpawnerMain(setup, req[1], ex[1]);
  }
  ::close(req[1]);
  ::close(ex[1]);
  std::unique_ptr<SpawnerClient> client(new SpawnerClient(req[0], ex[0], pid));
  client->mode_ = setup.mode;
  client->cgroups_ = std::move(cgroups);
  client->isolation_ = isolation;
  return client;
}

SpawnerClient::~SpawnerClient() {
  ::close(request_fd_);  // the spawner sees EOF, kills what is left and exits
  ::close(exit_fd_);
  ::waitpid(spawner_pid_, nullptr, 0);
}

StatusOr<std::string> SpawnerClient::Call(const std::string& message, const int* fds, int nfds,
                                          UniqueFd* reply_fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (SendWithFds(request_fd_, message, fds, nfds) < 0) {
    return ErrnoStatus("send request", "spawner", errno);
  }
  std::string reply;
  std::vector<int> received;
  if (RecvWithFds(request_fd_, reply, received, 64 << 10) <= 0) {
    return Internal("spawner process is gone");
  }
  for (size_t i = 0; i < received.size(); ++i) {
    if (i == 0 && reply_fd != nullptr) {
      reply_fd->reset(received[i]);
    } else {
      ::close(received[i]);
    }
  }
  return reply;
}

StatusOr<Spawned> SpawnerClient::Spawn(const SpawnRequest& request) {
  std::string msg;
  AppendField(msg, std::string(1, kOpSpawn));
  AppendField(msg, request.cwd);
  AppendField(msg, std::to_string(request.argv.size()));
  AppendField(msg, std::to_string(request.env.size()));
  for (const auto& a : request.argv) AppendField(msg, a);
  for (const auto& e : request.env) AppendField(msg, e);
  AppendField(msg, request.bundle_dir);
  AppendField(msg, request.cgroup);
  AppendField(msg, std::to_string(request.limits.memory_bytes));
  AppendField(msg, std::to_string(request.limits.pids_max));
  AppendField(msg, std::to_string(request.limits.cpu_weight));
  AppendField(msg, std::to_string(request.uid));
  AppendField(msg, request.private_network ? "1" : "0");
  if (msg.size() > kMaxMessage) return InvalidArgument("spawn request too large");
  int fds[2] = {request.stdout_fd, request.stderr_fd};
  Spawned spawned;
  auto reply = Call(msg, fds, 2, &spawned.runtime_api);
  if (!reply.ok()) return reply.status();
  if (!reply->starts_with("ok ")) return Internal(reply->substr(4));
  // "ok PID [CGROUP]"
  size_t space = reply->find(' ', 3);
  spawned.pid = static_cast<pid_t>(std::stol(reply->substr(3)));
  spawned.cgroup = space == std::string::npos ? "" : reply->substr(space + 1);
  return spawned;
}

Status SpawnerClient::Kill(pid_t pid) {
  std::string msg;
  AppendField(msg, std::string(1, kOpKill));
  AppendField(msg, std::to_string(pid));
  auto reply = Call(msg, nullptr, 0);
  return reply.ok() ? Status::Ok() : reply.status();
}

}  // namespace thaw::sandbox

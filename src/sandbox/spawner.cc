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
#include <optional>
#include <vector>

#include "common/files.h"
#include "sandbox/jail.h"
#include "sandbox/shell.h"
#include "sandbox/uid_pool.h"
#include "sandbox/wire.h"

namespace thaw::sandbox {
namespace {

// Requests (wire.h) are NUL-separated fields: [op, id, ...]. A spawn ('S') is answered
// [id, "ok", pid, uid, cgroup], carrying a network: none instance's Runtime API listener, or
// [id, "err", message]. A kill ('K', [op, id, pid]) is not answered: the exit event follows.
constexpr char kOpSpawn = 'S';
constexpr char kOpKill = 'K';
constexpr size_t kReadyShells = 2;  // pre-created sandboxes kept for cold starts
constexpr int kRefillDelayMs = 20;  // how long the spawner is idle before it makes more
constexpr size_t kMaxReply = 64 << 10;

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

// A child the spawner made and has not reaped yet.
struct Child {
  std::string cgroup;   // may be empty
  uid_t uid = 0;        // from the uid pool (kJail), given back when reaped; 0: none
  bool report = false;  // thaw knows its pid: send an exit event (not for failed starts)
};

// A start whose exec is not confirmed yet: the child reports on `wait_fd` (a shell's control
// socket, or a plain child's status pipe), which its exec closes.
struct PendingStart {
  std::string id;
  pid_t pid = 0;
  UniqueFd wait_fd;
  bool shell = false;
  bool private_network = false;
  UniqueFd listener;  // a network: none shell's Runtime API listener, handed over first
};

class Spawner {
 public:
  Spawner(const SpawnerSetup& setup, int request_fd, int exit_fd, std::optional<UidPool> uids)
      : setup_(setup), request_fd_(request_fd), exit_fd_(exit_fd), uids_(std::move(uids)) {}

  [[noreturn]] void Run();
  // Cgroups to remove once empty (left behind by a spawner that was killed).
  void RemoveWhenEmpty(std::vector<std::string> cgroups) {
    for (auto& c : cgroups) {
      (void)setup_.cgroups->Kill(c);
      unremoved_.push_back(std::move(c));
    }
  }

 private:
  void OnRequest(std::vector<std::string> fields, std::vector<int>& fds);
  void Spawn(const std::string& id, std::vector<std::string> fields, const std::vector<int>& fds);
  void SpawnInShell(const std::string& id, const ChildSpec& spec, std::vector<std::string> fields,
                    const std::vector<int>& fds, uid_t uid);
  void SpawnPlain(const std::string& id, const ChildSpec& spec, const std::vector<int>& fds);
  void Kill(const std::vector<std::string>& fields);
  // The child on `pending.wait_fd` wrote or exec'd: true when the start is settled.
  bool OnPendingReadable(PendingStart& pending);
  void Reap();
  // Reads the child's cgroup usage, removes the cgroup, gives its uid back.
  void Release(pid_t pid, ExitEvent* usage);
  void ReplyError(const std::string& id, const std::string& message);
  void ReplyOk(const std::string& id, pid_t pid, UniqueFd listener);
  [[noreturn]] void Stop();

  const SpawnerSetup& setup_;
  const int request_fd_;
  const int exit_fd_;
  std::optional<UidPool> uids_;         // kJail only
  std::map<pid_t, Child> live_;         // every child not yet reaped, shells in use included
  std::map<pid_t, int> early_exits_;    // pending children reaped before their start settled
  std::vector<PendingStart> pending_;   // starts waiting for their exec
  Shells shells_;                       // ready sandboxes, when isolated
  std::vector<std::string> unremoved_;  // cgroups still busy when their child was reaped
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

void Spawner::ReplyError(const std::string& id, const std::string& message) {
  std::string msg;
  AppendField(msg, id);
  AppendField(msg, "err");
  AppendField(msg, message.substr(0, kMaxReply / 2));
  (void)!SendWithFds(request_fd_, msg, nullptr, 0);
}

void Spawner::ReplyOk(const std::string& id, pid_t pid, UniqueFd listener) {
  const Child& child = live_.at(pid);
  std::string msg;
  AppendField(msg, id);
  AppendField(msg, "ok");
  AppendField(msg, std::to_string(pid));
  AppendField(msg, std::to_string(child.uid));
  AppendField(msg, child.cgroup);
  int fd = listener.get();
  (void)!SendWithFds(request_fd_, msg, &fd, listener.valid() ? 1 : 0);
}

void Spawner::OnRequest(std::vector<std::string> fields, std::vector<int>& fds) {
  if (fields.size() < 2 || fields[0].size() != 1) return;  // no id to answer: not thaw
  const std::string id = fields[1];
  fields.erase(fields.begin() + 1);  // the rest is what ParseSpawn and the shell read
  if (fields[0][0] == kOpSpawn) {
    Spawn(id, std::move(fields), fds);
  } else if (fields[0][0] == kOpKill && fields.size() == 2) {
    Kill(fields);
  } else {
    ReplyError(id, "unknown request");
  }
}

void Spawner::Spawn(const std::string& id, std::vector<std::string> fields,
                    const std::vector<int>& fds) {
  auto spec = ParseSpawn(fields);
  if (!spec.ok() || fds.size() != 2) return ReplyError(id, "malformed spawn request");
  if (setup_.mode == Isolation::kPlain) {
    if (spec->private_network) {
      return ReplyError(id,
                        "failed to start instance: network: none needs the sandbox, and "
                        "instances run as plain processes here (GET /v1/node says why)");
    }
    return SpawnPlain(id, *spec, fds);
  }
  uid_t uid = 0;
  if (uids_.has_value()) {
    auto taken = uids_->Take();
    if (!taken.has_value()) {
      return ReplyError(id, "failed to start instance: all " + std::to_string(uids_->taken()) +
                                " instance uids are in use (raise instance_uids)");
    }
    uid = *taken;
    fields[SpawnUidField(fields)] = std::to_string(uid);  // the jailed uid
  }
  SpawnInShell(id, *spec, std::move(fields), fds, uid);
}

void Spawner::SpawnInShell(const std::string& id, const ChildSpec& spec,
                           std::vector<std::string> fields, const std::vector<int>& fds,
                           uid_t uid) {
  auto& ready = shells_.ready[spec.private_network];
  shells_.keep[spec.private_network] = kReadyShells;
  if (ready.empty()) {
    auto fresh = StartShell(setup_, spec.private_network);
    if (!fresh.ok()) {
      if (uid != 0) uids_->Give(uid);
      return ReplyError(id, fresh.status().message());
    }
    ready.push_back(std::move(*fresh));
  }
  Shell shell = ready.front();
  ready.pop_front();
  // From here the shell is a child like any other: reaping it removes its cgroup and gives
  // its uid back, whether it became an instance or failed on the way.
  live_[shell.pid] = Child{shell.cgroup, uid, false};
  UniqueFd control(shell.control);
  if (!shell.cgroup.empty()) {
    if (Status st = setup_.cgroups->SetLimits(shell.cgroup, spec.limits); !st.ok()) {
      ::kill(shell.pid, SIGKILL);
      return ReplyError(id, st.message());
    }
  }
  std::string msg;
  for (const auto& f : fields) AppendField(msg, f);
  int child_fds[2] = {fds[0], fds[1]};
  if (SendWithFds(control.get(), msg, child_fds, 2) < 0) {
    int err = errno;
    ::kill(shell.pid, SIGKILL);
    return ReplyError(id,
                      std::string("failed to start instance in sandbox shell: ") + strerror(err));
  }
  PendingStart pending;
  pending.id = id;
  pending.pid = shell.pid;
  pending.wait_fd = std::move(control);
  pending.shell = true;
  pending.private_network = spec.private_network;
  pending_.push_back(std::move(pending));
}

void Spawner::SpawnPlain(const std::string& id, const ChildSpec& spec,
                         const std::vector<int>& fds) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return ReplyError(id, std::string("failed to create pipe on spawner: ") + strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return ReplyError(id, std::string("failed to fork on spawner: ") + strerror(err));
  }
  if (pid == 0) {
    ::close(status_pipe[0]);
    ExecChild(setup_, spec, fds[0], fds[1], status_pipe[1], nullptr);
  }
  ::close(status_pipe[1]);
  live_[pid] = Child{"", 0, false};
  PendingStart pending;
  pending.id = id;
  pending.pid = pid;
  pending.wait_fd.reset(status_pipe[0]);
  pending_.push_back(std::move(pending));
}

bool Spawner::OnPendingReadable(PendingStart& p) {
  std::string error;
  if (p.shell) {
    std::string buf;
    std::vector<int> fds;
    ssize_t n = RecvWithFds(p.wait_fd.get(), buf, fds, 4096, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    if (n > 0 && !fds.empty()) {  // the listener comes first; the exec (EOF) follows
      p.listener.reset(fds[0]);
      for (size_t i = 1; i < fds.size(); ++i) ::close(fds[i]);
      return false;
    }
    if (n > 0) error = buf;
  } else {
    error = AwaitExec(p.wait_fd.get());  // a pipe: readable means EOF or the whole message
  }
  if (error.empty() && p.private_network && !p.listener.valid()) {
    error = "failed to start instance in sandbox shell: no Runtime API listener came back";
  }
  auto early = early_exits_.find(p.pid);
  if (!error.empty()) {
    // The child exits (or is killed here); reaping it cleans up, and reports nothing.
    if (early == early_exits_.end()) {
      ::kill(p.pid, SIGKILL);
    } else {
      Release(p.pid, nullptr);
      early_exits_.erase(early);
    }
    ReplyError(p.id, error);
    return true;
  }
  live_.at(p.pid).report = true;
  ReplyOk(p.id, p.pid, std::move(p.listener));
  if (early != early_exits_.end()) {  // it exec'd and already ended: say so now
    ExitEvent ev{p.pid, early->second, 0, 0, 0};
    Release(p.pid, &ev);
    early_exits_.erase(early);
    (void)!::send(exit_fd_, &ev, sizeof(ev), MSG_NOSIGNAL);
  }
  return true;
}

void Spawner::Release(pid_t pid, ExitEvent* usage) {
  auto it = live_.find(pid);
  if (it == live_.end()) return;
  const Child& child = it->second;
  if (setup_.cgroups != nullptr && !child.cgroup.empty()) {
    if (usage != nullptr) {
      if (auto u = setup_.cgroups->Usage(child.cgroup); u.ok()) {
        usage->cpu_us = u->cpu_us;
        usage->peak_memory_bytes = u->peak_memory_bytes;
        usage->oom_kills = u->oom_kills;
      }
    }
    (void)setup_.cgroups->Kill(child.cgroup);
    if (!setup_.cgroups->Remove(child.cgroup).ok()) unremoved_.push_back(child.cgroup);
  }
  // SAFETY: the uid is free again only now: the instance's last process is gone (its cgroup
  // was killed above; without cgroups its PID namespace died with its first process).
  if (child.uid != 0) uids_->Give(child.uid);
  live_.erase(it);
}

// Reaps exited children: a ready shell that died unused is dropped quietly; a child whose start
// is still settling waits for it; an instance's cgroup is read and removed and its exit event
// sent.
void Spawner::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (shells_.Forget(pid, unremoved_)) continue;
    const bool settling = std::any_of(pending_.begin(), pending_.end(),
                                      [pid](const PendingStart& p) { return p.pid == pid; });
    if (settling) {
      early_exits_[pid] = status;
      continue;
    }
    auto it = live_.find(pid);
    const bool report = it != live_.end() && it->second.report;
    ExitEvent ev{pid, status, 0, 0, 0};
    Release(pid, &ev);
    if (report) (void)!::send(exit_fd_, &ev, sizeof(ev), MSG_NOSIGNAL);
  }
}

void Spawner::Kill(const std::vector<std::string>& fields) {
  pid_t pid = static_cast<pid_t>(std::strtol(fields[1].c_str(), nullptr, 10));
  // Only a child not yet reaped: its pid cannot have been reused.
  if (auto it = live_.find(pid); it != live_.end() && pid > 0) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup_.cgroups != nullptr && !it->second.cgroup.empty()) {
      (void)setup_.cgroups->Kill(it->second.cgroup);
    }
  }
}

void Spawner::Run() {
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
  std::string buf;
  std::vector<pollfd> pfds;
  bool idle = false;  // the last poll timed out: no request came for a moment
  for (;;) {
    // Keep sandboxes ready for the next cold starts, unless starts are settling: the
    // instances being started would share the CPU with it.
    if (pending_.empty()) RefillShells(setup_, shells_, idle);
    int timeout = shells_.Short() ? kRefillDelayMs : -1;
    // Cgroups whose last processes were still exiting are retried shortly.
    if (!unremoved_.empty()) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
    pfds.assign({{request_fd_, POLLIN, 0}, {sfd, POLLIN, 0}});
    for (const auto& p : pending_) pfds.push_back({p.wait_fd.get(), POLLIN, 0});
    int ready = ::poll(pfds.data(), pfds.size(), timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    idle = ready == 0;
    if (pfds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sfd, &info, sizeof(info)) == sizeof(info)) {
      }
      Reap();
    }
    // Settle the starts whose child wrote or exec'd (pfds[2 + i] is pending_[i]'s).
    size_t kept = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
      const bool settled =
          (pfds[2 + i].revents & (POLLIN | POLLHUP | POLLERR)) && OnPendingReadable(pending_[i]);
      if (!settled) {
        if (kept != i) pending_[kept] = std::move(pending_[i]);
        ++kept;
      }
    }
    pending_.resize(kept);
    for (auto it = unremoved_.begin(); it != unremoved_.end();) {
      it = setup_.cgroups->Remove(*it).ok() ? unremoved_.erase(it) : std::next(it);
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      // Every request that is waiting, so a burst of starts is in flight at once.
      for (;;) {
        std::vector<int> fds;
        ssize_t n = RecvWithFds(request_fd_, buf, fds, kMaxMessage, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) Stop();  // thaw is gone
        OnRequest(SplitFields(buf.data(), buf.size()), fds);
        for (int fd : fds) ::close(fd);
      }
    }
  }
  Stop();
}

void Spawner::Stop() {
  for (auto& queue : shells_.ready) {
    for (const Shell& shell : queue) live_[shell.pid] = Child{shell.cgroup, 0, false};
  }
  for (const auto& [pid, child] : live_) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup_.cgroups != nullptr && !child.cgroup.empty()) {
      (void)setup_.cgroups->Kill(child.cgroup);
      ::waitpid(pid, nullptr, 0);
      (void)setup_.cgroups->Remove(child.cgroup);
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

// The cgroups a spawner that is gone left behind (thaw killed with -9: its spawner died by
// PDEATHSIG before it could remove them). Shell cgroups are named shell-<spawner pid>-<n>; a
// spawner is gone when no live process of that pid is a thaw-spawner (a zombie is gone: a
// killed spawner's parent died with it, and whoever inherits it may reap it late). Those of
// other live thaw servers are left alone.
std::vector<std::string> OrphanedCgroups(const Cgroups& cgroups) {
  std::vector<std::string> out;
  for (const std::string& name : cgroups.Names()) {
    if (!name.starts_with("shell-")) continue;
    const pid_t owner = static_cast<pid_t>(std::strtol(name.c_str() + 6, nullptr, 10));
    auto stat = ReadFile("/proc/" + std::to_string(owner) + "/stat");  // "pid (comm) S ..."
    if (owner <= 0 || !stat.ok() || stat->find("(thaw-spawner) ") == std::string::npos ||
        stat->find("(thaw-spawner) Z") != std::string::npos) {
      out.push_back(name);
    }
  }
  return out;
}

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

StatusOr<std::unique_ptr<SpawnerClient>> SpawnerClient::Start(const SpawnerOptions& options) {
  SpawnerSetup setup;
  setup.jail_root = options.jail_root;
  setup.runtimes_dir = options.runtimes_dir;
  setup.tmp_bytes = options.tmp_bytes;
  setup.host_uid = ::geteuid();
  setup.host_gid = ::getegid();
  std::unique_ptr<Cgroups> cgroups;
  std::string isolation;
  if (!options.sandbox) {
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
  std::optional<UidLease> lease;
  if (setup.mode == Isolation::kJail) {
    auto leased = LeaseInstanceUids(options.uid_lock_dir, options.instance_uids);
    if (!leased.ok()) return leased.status();
    lease = std::move(*leased);
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
    std::optional<UidPool> uids;
    if (lease.has_value()) uids.emplace(lease->uids);
    Spawner spawner(setup, req[1], ex[1], std::move(uids));
    if (setup.cgroups != nullptr) spawner.RemoveWhenEmpty(OrphanedCgroups(*setup.cgroups));
    spawner.Run();
  }
  ::close(req[1]);
  ::close(ex[1]);
  std::unique_ptr<SpawnerClient> client(new SpawnerClient(req[0], ex[0], pid));
  client->mode_ = setup.mode;
  client->cgroups_ = std::move(cgroups);
  client->isolation_ = isolation;
  if (lease.has_value()) {
    client->instance_uids_ = lease->Describe();
    client->isolation_ += "; instance uids " + client->instance_uids_ + " (leased host-wide)";
  }
  // The spawner holds the leases' locks now (inherited); this process's copies close here.
  return client;
}

SpawnerClient::~SpawnerClient() {
  StopReplyThread();
  ::close(request_fd_);  // the spawner sees EOF, kills what is left and exits
  ::close(exit_fd_);
  ::waitpid(spawner_pid_, nullptr, 0);
}

void SpawnerClient::Spawn(const SpawnRequest& request, SpawnDone done) {
  std::string msg;
  AppendField(msg, std::string(1, kOpSpawn));
  const size_t id_at = msg.size();  // the id goes here once it is known
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
  AppendField(msg, "65534");  // the jailed uid: the spawner's to choose (uid_pool.h)
  AppendField(msg, request.private_network ? "1" : "0");
  AppendField(msg, JoinSpawnList(request.gpu_bind));
  AppendField(msg, JoinSpawnList(request.gpu_deny));
  std::vector<std::string> mount_src, mount_dst;
  for (const auto& [src, dst] : request.mounts) {
    mount_src.push_back(src);
    mount_dst.push_back(dst);
  }
  AppendField(msg, JoinSpawnList(mount_src));
  AppendField(msg, JoinSpawnList(mount_dst));
  if (msg.size() + 32 > kMaxMessage) return done(InvalidArgument("spawn request too large"));
  int fds[2] = {request.stdout_fd, request.stderr_fd};
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t id = ++next_id_;
    std::string id_field;
    AppendField(id_field, std::to_string(id));
    msg.insert(id_at, id_field);
    // Registered before the send: the reply may be read before this thread runs again.
    pending_.emplace(id, std::move(done));
    if (SendWithFds(request_fd_, msg, fds, 2) < 0) {
      failed = ErrnoStatus("send request", "spawner", errno);
      done = std::move(pending_.at(id));
      pending_.erase(id);
    }
  }
  if (!failed.ok()) done(std::move(failed));
}

void SpawnerClient::Kill(pid_t pid) {
  std::string msg;
  AppendField(msg, std::string(1, kOpKill));
  AppendField(msg, "0");
  AppendField(msg, std::to_string(pid));
  // A failed send means the spawner is gone, and its instances with it (PDEATHSIG).
  (void)!SendWithFds(request_fd_, msg, nullptr, 0);
}

bool SpawnerClient::OnReplies() {
  std::string buf;
  for (;;) {
    std::vector<int> fds;
    ssize_t n = RecvWithFds(request_fd_, buf, fds, kMaxReply, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
      for (int fd : fds) ::close(fd);
      FailAllPending(Internal("spawner process is gone"));
      return false;
    }
    std::vector<UniqueFd> received;
    for (int fd : fds) received.emplace_back(fd);
    auto fields = SplitFields(buf.data(), buf.size());
    if (fields.size() < 3) continue;  // not a reply: the spawner never sends these
    SpawnDone done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(std::strtoull(fields[0].c_str(), nullptr, 10));
      if (it == pending_.end()) continue;
      done = std::move(it->second);
      pending_.erase(it);
    }
    if (fields[1] != "ok" || fields.size() != 5) {
      done(Internal(fields[2]));
      continue;
    }
    Spawned spawned;
    spawned.pid = static_cast<pid_t>(std::strtol(fields[2].c_str(), nullptr, 10));
    spawned.uid = static_cast<uid_t>(std::strtoul(fields[3].c_str(), nullptr, 10));
    spawned.cgroup = fields[4];
    if (!received.empty()) spawned.runtime_api = std::move(received[0]);
    done(std::move(spawned));
  }
}

void SpawnerClient::StartReplyThread() {
  reply_thread_ = std::thread([this] {
    for (;;) {
      pollfd pfd{request_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) break;
      if (!OnReplies()) break;
    }
  });
}

void SpawnerClient::StopReplyThread() {
  if (!reply_thread_.joinable()) return;
  // The thread reads EOF, fails what is waiting and ends; Kill can still send.
  ::shutdown(request_fd_, SHUT_RD);
  reply_thread_.join();
}

void SpawnerClient::FailAllPending(const Status& why) {
  std::map<uint64_t, SpawnDone> failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failed.swap(pending_);
  }
  for (auto& [_, done] : failed) done(why);
}

StatusOr<Spawned> SpawnerClient::SpawnAndWait(const SpawnRequest& request) {
  std::optional<StatusOr<Spawned>> result;
  Spawn(request, [&result](StatusOr<Spawned> r) { result.emplace(std::move(r)); });
  while (!result.has_value()) {
    pollfd pfd{request_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return ErrnoStatus("poll", "spawner", errno);
    if (!OnReplies() && !result.has_value()) return Internal("spawner process is gone");
  }
  return std::move(*result);
}

}  // namespace thaw::sandbox

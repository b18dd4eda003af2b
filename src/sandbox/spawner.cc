#include "sandbox/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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

namespace thaw::sandbox {
namespace {

// Wire format: one SOCK_SEQPACKET datagram per message. A request is an op byte followed by
// NUL-separated fields; the reply is "ok <pid>" or "err <message>".
constexpr char kOpSpawn = 'S';
constexpr char kOpKill = 'K';
constexpr size_t kMaxMessage = 1 << 20;
constexpr size_t kReadyShells = 2;  // pre-created sandboxes kept for cold starts

void AppendField(std::string& out, const std::string& field) {
  out.append(field);
  out.push_back('\0');
}

std::vector<std::string> SplitFields(const char* data, size_t size) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0') {
      out.emplace_back(data + start, i - start);
      start = i + 1;
    }
  }
  return out;
}

ssize_t SendWithFds(int sock, const std::string& msg, const int* fds, int nfds) {
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t RecvWithFds(int sock, std::string& buf, std::vector<int>& fds) {
  buf.resize(kMaxMessage);
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  buf.resize(static_cast<size_t>(n));
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* p = reinterpret_cast<const int*>(CMSG_DATA(cm));
      fds.assign(p, p + count);
    }
  }
  return n;
}

// What the spawner knows about isolation; set before it forks, read-only after.
struct SpawnerSetup {
  bool isolated = false;
  std::string jail_root;
  std::string runtimes_dir;  // the same for every instance: shells mount it ahead of time
  int64_t tmp_bytes = 512LL << 20;
  Cgroups* cgroups = nullptr;
};

struct ChildSpec {
  std::string cwd;
  std::vector<std::string> argv, env;
  std::string bundle_dir, cgroup;
  CgroupLimits limits;
  uid_t uid = 65534;
};

// Runs in the forked (or cloned) child: becomes the runtime process or exits 127 after
// reporting why through `status_fd` (close-on-exec: a successful exec closes it unwritten).
// A jailed child has already joined its cgroup (see RunShell).
[[noreturn]] void ExecChild(const SpawnerSetup& setup, const ChildSpec& spec, int out_fd,
                            int err_fd, int status_fd, const SeccompProgram* seccomp) {
  auto fail = [&](const std::string& message) {
    (void)!::write(status_fd, message.data(), message.size());
    _exit(127);
  };
  auto fail_errno = [&](const char* op, const std::string& object) {
    fail(std::string("failed to ") + op + " on " + object + ": " + strerror(errno));
  };
  // SAFETY: a fresh session makes the runtime the leader of its own process group, so a kill
  // of the group reaches every process it forks (in a jail, the PID namespace does it fully).
  if (::setsid() < 0) fail_errno("setsid", "runtime");
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull < 0) fail_errno("open", "/dev/null");
  // SAFETY: fd hand-off: 0 is /dev/null, 1 and 2 are the log pipes thaw reads; everything else
  // (thaw's sockets, the database) is closed below before exec.
  if (::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
    fail_errno("dup2", "stdio");
  }
  if (status_fd != 3 && ::dup2(status_fd, 3) < 0) fail_errno("dup2", "status pipe");
  status_fd = 3;
  ::fcntl(status_fd, F_SETFD, FD_CLOEXEC);
  ::close_range(4, ~0U, 0);
  rlimit core{0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  if (setup.isolated) {
    JailSpec jail;
    jail.root = setup.jail_root;
    jail.bundle_dir = spec.bundle_dir;
    jail.uid = spec.uid;
    jail.gid = spec.uid;
    for (Status st : {EnterJail(jail), DropPrivileges(jail)}) {
      if (!st.ok()) fail(st.message());
    }
  } else if (::chdir(spec.cwd.c_str()) != 0) {
    fail_errno("chdir", spec.cwd);
  }
  // SAFETY: if the spawner dies, its instances must not outlive it. Set after the uid change,
  // which clears it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail_errno("prctl(PDEATHSIG)", "runtime");
  if (setup.isolated) {
    if (seccomp == nullptr) fail("no seccomp filter for a jailed instance");
    Status st = LoadSeccomp(*seccomp);
    if (!st.ok()) fail(st.message());
  }
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  ::execve(argv[0], argv.data(), envp.data());
  fail_errno("exec", spec.argv[0]);
  _exit(127);
}

StatusOr<ChildSpec> ParseSpawn(const std::vector<std::string>& fields) {
  // fields: [op, cwd, argc, envc, argv..., env..., bundle, cgroup, mem, pids, cpu, uid]
  if (fields.size() < 4) return InvalidArgument("malformed spawn request");
  size_t argc = std::stoul(fields[2]), envc = std::stoul(fields[3]);
  if (argc == 0 || fields.size() != 4 + argc + envc + 6) {
    return InvalidArgument("malformed spawn request");
  }
  ChildSpec spec;
  spec.cwd = fields[1];
  spec.argv.assign(fields.begin() + 4, fields.begin() + 4 + argc);
  spec.env.assign(fields.begin() + 4 + argc, fields.begin() + 4 + argc + envc);
  size_t i = 4 + argc + envc;
  spec.bundle_dir = fields[i];
  spec.cgroup = fields[i + 1];
  spec.limits.memory_bytes = std::stoll(fields[i + 2]);
  spec.limits.pids_max = std::stoll(fields[i + 3]);
  spec.limits.cpu_weight = std::stoll(fields[i + 4]);
  spec.uid = static_cast<uid_t>(std::stoul(fields[i + 5]));
  if (spec.uid == 0) return InvalidArgument("refusing to run an instance as root");
  return spec;
}

// A pre-created sandbox: a child already in fresh namespaces and in its own cgroup (joining a
// cgroup v1 hierarchy takes tens of milliseconds, so it happens before any request needs it),
// waiting on `control` for the spawn request it will turn into.
struct Shell {
  pid_t pid = 0;
  int control = -1;
  std::string cgroup;
};

// The shell's side: join the cgroup, wait for the request (with the log pipe fds), then go the
// way of every child. Errors travel back on the control socket, which exec closes.
[[noreturn]] void RunShell(const SpawnerSetup& setup, const std::string& cgroup, int control) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (setup.cgroups != nullptr) (void)setup.cgroups->AddProcess(cgroup, 0);
  JailSpec jail;
  jail.root = setup.jail_root;
  jail.runtimes_dir = setup.runtimes_dir;
  jail.tmp_bytes = setup.tmp_bytes;
  Status prepared = PrepareJail(jail);
  auto seccomp = CompileSeccomp();
  if (prepared.ok() && !seccomp.ok()) prepared = seccomp.status();
  std::string buf;
  std::vector<int> fds;
  if (RecvWithFds(control, buf, fds) <= 0 || fds.size() != 2) _exit(0);
  auto spec = ParseSpawn(SplitFields(buf.data(), buf.size()));
  if (!prepared.ok() || !spec.ok()) {
    const std::string& why = prepared.ok() ? spec.status().message() : prepared.message();
    (void)!::write(control, why.data(), why.size());
    _exit(127);
  }
  spec->cgroup = cgroup;
  ExecChild(setup, *spec, fds[0], fds[1], control, &*seccomp);
}

std::string NewShellName() {
  static uint64_t counter = 0;
  return "shell-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

StatusOr<Shell> StartShell(const SpawnerSetup& setup) {
  Shell shell;
  shell.cgroup = setup.cgroups != nullptr ? NewShellName() : "";
  if (!shell.cgroup.empty()) {
    Status st = setup.cgroups->Create(shell.cgroup, CgroupLimits{});
    if (!st.ok()) return st;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus("create socketpair", "sandbox shell", errno);
  }
  // SAFETY: clone without a new stack behaves like fork (the spawner is single-threaded);
  // the child starts as PID 1 of fresh mount, PID, IPC and UTS namespaces.
  pid_t pid = static_cast<pid_t>(
      ::syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
                nullptr, nullptr, nullptr, nullptr));
  if (pid < 0) {
    int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    if (!shell.cgroup.empty()) (void)setup.cgroups->Remove(shell.cgroup);
    return ErrnoStatus("clone", "sandbox shell", err);
  }
  if (pid == 0) {
    ::close(sv[0]);
    RunShell(setup, shell.cgroup, sv[1]);
  }
  ::close(sv[1]);
  shell.pid = pid;
  shell.control = sv[0];
  return shell;
}

// Waits for a child's exec: EOF on `status_fd` means it exec'd, bytes are its error.
std::string AwaitExec(int status_fd) {
  char buf[512];
  ssize_t n;
  do {
    n = ::read(status_fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string HandleSpawn(const SpawnerSetup& setup, const std::vector<std::string>& fields,
                        const std::vector<int>& fds, std::deque<Shell>& shells,
                        std::map<pid_t, std::string>& live) {
  auto spec = ParseSpawn(fields);
  if (!spec.ok() || fds.size() != 2) return "err malformed spawn request";
  if (setup.isolated) {
    if (shells.empty()) {
      auto fresh = StartShell(setup);
      if (!fresh.ok()) return "err " + fresh.status().message();
      shells.push_back(std::move(*fresh));
    }
    Shell shell = shells.front();
    shells.pop_front();
    if (!shell.cgroup.empty()) {
      Status st = setup.cgroups->SetLimits(shell.cgroup, spec->limits);
      if (!st.ok()) {
        ::close(shell.control);
        ::kill(shell.pid, SIGKILL);
        live[shell.pid] = shell.cgroup;  // reaped and removed like any child
        return "err " + st.message();
      }
    }
    std::string msg;
    for (const auto& f : fields) {
      msg.append(f);
      msg.push_back('\0');
    }
    int child_fds[2] = {fds[0], fds[1]};
    live[shell.pid] = shell.cgroup;
    if (SendWithFds(shell.control, msg, child_fds, 2) < 0) {
      int err = errno;
      ::close(shell.control);
      ::kill(shell.pid, SIGKILL);
      return std::string("err failed to start instance in sandbox shell: ") + strerror(err);
    }
    std::string error = AwaitExec(shell.control);
    ::close(shell.control);
    if (!error.empty()) return "err " + error;  // the shell exits; its reaping cleans up
    return "ok " + std::to_string(shell.pid) + " " + shell.cgroup;
  }
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return std::string("err failed to create pipe on spawner: ") + strerror(errno);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return std::string("err failed to fork on spawner: ") + strerror(err);
  }
  if (pid == 0) {
    ::close(status_pipe[0]);
    ExecChild(setup, *spec, fds[0], fds[1], status_pipe[1], nullptr);
  }
  ::close(status_pipe[1]);
  std::string error = AwaitExec(status_pipe[0]);
  ::close(status_pipe[0]);
  if (!error.empty()) {
    ::waitpid(pid, nullptr, 0);
    return "err " + error;
  }
  live[pid] = "";
  return "ok " + std::to_string(pid);
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
  std::deque<Shell> shells;            // ready sandboxes, when isolated
  std::vector<std::string> unremoved;  // cgroups still busy when their child was reaped
  std::string buf;
  for (;;) {
    // Keep sandboxes ready for the next cold starts (after any reply went out).
    while (setup.isolated && shells.size() < kReadyShells) {
      auto shell = StartShell(setup);
      if (!shell.ok()) break;  // the next spawn reports the error
      shells.push_back(std::move(*shell));
    }
    pollfd pfds[2] = {{request_fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    // Cgroups whose last processes were still exiting are retried shortly.
    if (::poll(pfds, 2, unremoved.empty() ? -1 : 100) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sfd, &info, sizeof(info)) == sizeof(info)) {
      }
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        ExitEvent ev{pid, status, 0, 0, 0};
        auto shell = std::find_if(shells.begin(), shells.end(),
                                  [pid](const Shell& s) { return s.pid == pid; });
        if (shell != shells.end()) {  // a ready shell died unused: drop it quietly
          ::close(shell->control);
          if (!shell->cgroup.empty()) unremoved.push_back(shell->cgroup);
          shells.erase(shell);
          continue;
        }
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
    for (auto it = unremoved.begin(); it != unremoved.end();) {
      it = setup.cgroups->Remove(*it).ok() ? unremoved.erase(it) : std::next(it);
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      std::vector<int> fds;
      ssize_t n = RecvWithFds(request_fd, buf, fds);
      if (n <= 0) break;  // thaw is gone
      auto fields = SplitFields(buf.data(), buf.size());
      std::string reply = "err unknown request";
      if (!fields.empty() && fields[0].size() == 1 && fields[0][0] == kOpSpawn) {
        reply = HandleSpawn(setup, fields, fds, shells, live);
      } else if (fields.size() == 2 && fields[0].size() == 1 && fields[0][0] == kOpKill) {
        pid_t pid = static_cast<pid_t>(std::stol(fields[1]));
        // Only a child not yet reaped: its pid cannot have been reused.
        if (auto it = live.find(pid); it != live.end()) {
          ::kill(-pid, SIGKILL);
          ::kill(pid, SIGKILL);
          if (setup.cgroups != nullptr && !it->second.empty())
            (void)setup.cgroups->Kill(it->second);
        }
        reply = "ok 0";
      }
      for (int fd : fds) ::close(fd);
      (void)!SendWithFds(request_fd, reply, nullptr, 0);
    }
  }
  for (const Shell& shell : shells) live[shell.pid] = shell.cgroup;
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

StatusOr<std::unique_ptr<SpawnerClient>> SpawnerClient::Start(const std::string& jail_root,
                                                              const std::string& runtimes_dir,
                                                              int64_t tmp_bytes, bool sandbox) {
  SpawnerSetup setup;
  setup.runtimes_dir = runtimes_dir;
  setup.tmp_bytes = tmp_bytes;
  std::unique_ptr<Cgroups> cgroups;
  std::string isolation;
  if (!sandbox) {
    isolation =
        "none: the sandbox is switched off (sandbox=false): instances are plain "
        "processes of uid " +
        std::to_string(::geteuid()) + " in their own process groups";
  } else if (::geteuid() == 0) {
    setup.isolated = true;
    setup.jail_root = jail_root;
    auto detected = Cgroups::Detect();
    isolation =
        "jail: mount, PID, IPC and UTS namespaces; private root (bundle read-only at "
        "/var/task, tmpfs /tmp); a uid of its own; no_new_privs; seccomp; Runtime API "
        "answers only its own instance's uid";
    if (detected.ok()) {
      cgroups = std::move(*detected);
      setup.cgroups = cgroups.get();
      isolation += "; " + cgroups->Describe() + " with memory, pids and CPU-weight limits";
    } else {
      isolation += "; no cgroups (" + detected.status().message() + "): memory_mb is not enforced";
    }
    isolation += "; no network namespace yet: instances share the host network (egress open)";
  } else {
    isolation = "none: thaw is not root, so instances are plain processes of uid " +
                std::to_string(::geteuid()) +
                " in their own process groups (user namespaces "
                "are not used yet); memory_mb is not enforced";
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
  client->isolated_ = setup.isolated;
  client->cgroups_ = std::move(cgroups);
  client->isolation_ = isolation;
  return client;
}

SpawnerClient::~SpawnerClient() {
  ::close(request_fd_);  // the spawner sees EOF, kills what is left and exits
  ::close(exit_fd_);
  ::waitpid(spawner_pid_, nullptr, 0);
}

StatusOr<std::string> SpawnerClient::Call(const std::string& message, const int* fds, int nfds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (SendWithFds(request_fd_, message, fds, nfds) < 0) {
    return ErrnoStatus("send request", "spawner", errno);
  }
  std::string reply;
  std::vector<int> unused;
  if (RecvWithFds(request_fd_, reply, unused) <= 0) {
    return Internal("spawner process is gone");
  }
  return reply;
}

StatusOr<pid_t> SpawnerClient::Spawn(const SpawnRequest& request, std::string* cgroup) {
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
  if (msg.size() > kMaxMessage) return InvalidArgument("spawn request too large");
  int fds[2] = {request.stdout_fd, request.stderr_fd};
  auto reply = Call(msg, fds, 2);
  if (!reply.ok()) return reply.status();
  if (reply->starts_with("ok ")) {
    // "ok PID [CGROUP]"
    size_t space = reply->find(' ', 3);
    if (cgroup != nullptr) *cgroup = space == std::string::npos ? "" : reply->substr(space + 1);
    return static_cast<pid_t>(std::stol(reply->substr(3)));
  }
  return Internal(reply->substr(4));
}

Status SpawnerClient::Kill(pid_t pid) {
  std::string msg;
  AppendField(msg, std::string(1, kOpKill));
  AppendField(msg, std::to_string(pid));
  auto reply = Call(msg, nullptr, 0);
  return reply.ok() ? Status::Ok() : reply.status();
}

}  // namespace thaw::sandbox

#include "sandbox/spawner.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>

namespace thaw::sandbox {
namespace {

// Wire format: one SOCK_SEQPACKET datagram per message. A request is an op byte followed by
// NUL-separated fields; the reply is "ok <pid>" or "err <message>".
constexpr char kOpSpawn = 'S';
constexpr char kOpKill = 'K';
constexpr size_t kMaxMessage = 1 << 20;

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

// Runs in the forked child: becomes the runtime process or exits 127 after reporting why
// through `status_fd` (close-on-exec, so a successful exec closes it with nothing written).
[[noreturn]] void ExecChild(const std::vector<std::string>& fields, size_t argc, size_t envc,
                            int out_fd, int err_fd, int status_fd) {
  auto fail = [&](const char* op, const std::string& object) {
    std::string msg = std::string("failed to ") + op + " on " + object + ": " + strerror(errno);
    (void)!::write(status_fd, msg.data(), msg.size());
    _exit(127);
  };
  // SAFETY: a fresh session makes the runtime the leader of its own process group, so a kill
  // of the group reaches every process it forks (unless one calls setsid itself: cgroups close
  // that gap where available).
  if (::setsid() < 0) fail("setsid", "runtime");
  // SAFETY: if the spawner dies, its instances must not outlive it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail("prctl(PDEATHSIG)", "runtime");
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull < 0) fail("open", "/dev/null");
  // SAFETY: fd hand-off: 0 is /dev/null, 1 and 2 are the log pipes thaw reads; everything else
  // (thaw's sockets, the database) is closed below before exec.
  if (::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
    fail("dup2", "stdio");
  }
  int keep = status_fd;
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != keep) ::close(fd);
  }
  rlimit core{0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  const std::string& cwd = fields[1];
  if (::chdir(cwd.c_str()) != 0) fail("chdir", cwd);
  std::vector<char*> argv, envp;
  for (size_t i = 0; i < argc; ++i) argv.push_back(const_cast<char*>(fields[2 + i].c_str()));
  argv.push_back(nullptr);
  for (size_t i = 0; i < envc; ++i) {
    envp.push_back(const_cast<char*>(fields[2 + argc + i].c_str()));
  }
  envp.push_back(nullptr);
  ::execve(argv[0], argv.data(), envp.data());
  fail("exec", argv[0]);
  _exit(127);
}

std::string HandleSpawn(const std::vector<std::string>& fields, const std::vector<int>& fds,
                        std::set<pid_t>& live) {
  // fields: [op, cwd, argc, envc, argv..., env...]
  if (fields.size() < 4 || fds.size() != 2) return "err malformed spawn request";
  size_t argc = std::stoul(fields[2]), envc = std::stoul(fields[3]);
  if (argc == 0 || fields.size() != 4 + argc + envc) return "err malformed spawn request";
  std::vector<std::string> body(fields.begin(), fields.end());
  body.erase(body.begin() + 2, body.begin() + 4);  // -> [op, cwd, argv..., env...]
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
    ExecChild(body, argc, envc, fds[0], fds[1], status_pipe[1]);
  }
  ::close(status_pipe[1]);
  char buf[512];
  ssize_t n;
  do {
    n = ::read(status_pipe[0], buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  if (n > 0) {
    ::waitpid(pid, nullptr, 0);
    return "err " + std::string(buf, static_cast<size_t>(n));
  }
  live.insert(pid);
  return "ok " + std::to_string(pid);
}

[[noreturn]] void SpawnerMain(int request_fd, int exit_fd) {
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
  std::set<pid_t> live;
  std::string buf;
  for (;;) {
    pollfd pfds[2] = {{request_fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) {
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
        live.erase(pid);
        ExitEvent ev{pid, status};
        (void)!::send(exit_fd, &ev, sizeof(ev), MSG_NOSIGNAL);
      }
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      std::vector<int> fds;
      ssize_t n = RecvWithFds(request_fd, buf, fds);
      if (n <= 0) break;  // thaw is gone
      auto fields = SplitFields(buf.data(), buf.size());
      std::string reply = "err unknown request";
      if (!fields.empty() && fields[0].size() == 1 && fields[0][0] == kOpSpawn) {
        reply = HandleSpawn(fields, fds, live);
      } else if (fields.size() == 2 && fields[0].size() == 1 && fields[0][0] == kOpKill) {
        pid_t pid = static_cast<pid_t>(std::stol(fields[1]));
        // Only a child not yet reaped: its pid cannot have been reused.
        if (live.count(pid)) {
          ::kill(-pid, SIGKILL);
          ::kill(pid, SIGKILL);
        }
        reply = "ok 0";
      }
      for (int fd : fds) ::close(fd);
      (void)!SendWithFds(request_fd, reply, nullptr, 0);
    }
  }
  for (pid_t pid : live) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  _exit(0);
}

}  // namespace

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit status " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    const char* name = sigabbrev_np(sig);
    std::string lower = name ? name : std::to_string(sig);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (sig == SIGKILL) lower = "killed";
    return "signal: " + lower;
  }
  return "unknown status " + std::to_string(wait_status);
}

StatusOr<std::unique_ptr<SpawnerClient>> SpawnerClient::Start() {
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
    SpawnerMain(req[1], ex[1]);
  }
  ::close(req[1]);
  ::close(ex[1]);
  return std::unique_ptr<SpawnerClient>(new SpawnerClient(req[0], ex[0], pid));
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

StatusOr<pid_t> SpawnerClient::Spawn(const SpawnRequest& request) {
  std::string msg;
  AppendField(msg, std::string(1, kOpSpawn));
  AppendField(msg, request.cwd);
  AppendField(msg, std::to_string(request.argv.size()));
  AppendField(msg, std::to_string(request.env.size()));
  for (const auto& a : request.argv) AppendField(msg, a);
  for (const auto& e : request.env) AppendField(msg, e);
  if (msg.size() > kMaxMessage) return InvalidArgument("spawn request too large");
  int fds[2] = {request.stdout_fd, request.stderr_fd};
  auto reply = Call(msg, fds, 2);
  if (!reply.ok()) return reply.status();
  if (reply->starts_with("ok ")) return static_cast<pid_t>(std::stol(reply->substr(3)));
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

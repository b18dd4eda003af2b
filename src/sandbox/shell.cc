#include "sandbox/shell.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "sandbox/tmp_disk.h"
#include "sandbox/wire.h"

namespace thaw::sandbox {
namespace {

// Clone flags of a shell. The network namespace is not among them: see EnterPrivateNetwork.
int ShellCloneFlags(const SpawnerSetup& setup) {
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (setup.mode == Isolation::kRootless) flags |= CLONE_NEWUSER;
  return flags;
}

// network: none: the shell moves itself into a network namespace of its own and listens there.
// The shell does it, not the spawner's clone, because making a network namespace can wait for
// the kernel to finish tearing down an old one (milliseconds, with every instance that exits),
// and the single-threaded spawner must not wait with it.
StatusOr<UniqueFd> EnterPrivateNetwork() {
  if (::unshare(CLONE_NEWNET) != 0) return ErrnoStatus("unshare", "network namespace", errno);
  return ListenOnPrivateLoopback();
}

Status ApplyRlimits(const SpawnerSetup& setup, const CgroupLimits& limits) {
  rlimit core{0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  if (setup.rlimit_memory) {
    rlimit data{static_cast<rlim_t>(limits.memory_bytes), static_cast<rlim_t>(limits.memory_bytes)};
    if (::setrlimit(RLIMIT_DATA, &data) != 0)
      return ErrnoStatus("set RLIMIT_DATA", "runtime", errno);
  }
  if (setup.rlimit_pids) {
    // SAFETY: set inside the instance's user namespace, after it was created: the kernel
    // counts RLIMIT_NPROC per (user namespace, uid), so the instances sharing thaw's uid each
    // get pids_max of their own (a limit set before the namespace existed would also cap
    // every process of thaw's uid on the host).
    rlimit nproc{static_cast<rlim_t>(limits.pids_max), static_cast<rlim_t>(limits.pids_max)};
    if (::setrlimit(RLIMIT_NPROC, &nproc) != 0) {
      return ErrnoStatus("set RLIMIT_NPROC", "runtime", errno);
    }
  }
  return Status::Ok();
}

}  // namespace

ExecArrays::ExecArrays(const ChildSpec& spec) {
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
}

[[noreturn]] void ExecChild(const SpawnerSetup& setup, const ChildSpec& spec, int out_fd,
                            int err_fd, int status_fd, const SeccompProgram* seccomp,
                            int template_fd, int channel_fd, const ExecArrays* exec) {
  auto fail = [&](const std::string& message) {
    (void)!::write(status_fd, message.data(), message.size());
    _exit(127);
  };
  auto fail_errno = [&](const char* op, const std::string& object) {
    fail(std::string("failed to ") + op + " on " + object + ": " + strerror(errno));
  };
  // SAFETY: a fresh session makes the runtime the leader of its own process group, so a kill
  // of the group reaches every process it forks (in a jail, the PID namespace does it fully).
  // thaw-shell made its session before it waited (a session leader cannot make another).
  if (::getsid(0) != ::getpid() && ::setsid() < 0) fail_errno("setsid", "runtime");
  // Dispositions first, then the mask: a signal let through before its handler was reset
  // would run the spawner's handler in a child that may share the spawner's memory (SpawnPlain).
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull < 0) fail_errno("open", "/dev/null");
  // SAFETY: fd hand-off: 0 is /dev/null, 1 and 2 are the log pipes thaw reads; everything else
  // (thaw's sockets, the database) is closed below before exec.
  if (::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) {
    fail_errno("dup2", "stdio");
  }
  // Out of the way of the numbers below before they are taken.
  if (template_fd >= 0) template_fd = ::fcntl(template_fd, F_DUPFD_CLOEXEC, 16);
  if (channel_fd >= 0) channel_fd = ::fcntl(channel_fd, F_DUPFD_CLOEXEC, 16);
  std::vector<int> trees = spec.trees;  // kept until the jail has them mounted
  for (int& tree : trees) {
    tree = ::fcntl(tree, F_DUPFD_CLOEXEC, 16);
    if (tree < 0) fail_errno("duplicate", "mount descriptor");
  }
  if (status_fd != 3 && ::dup2(status_fd, 3) < 0) fail_errno("dup2", "status pipe");
  status_fd = 3;
  ::fcntl(status_fd, F_SETFD, FD_CLOEXEC);
  // SAFETY: fd hand-off: a template keeps its channel to the spawner (and only that) across
  // exec; dup2 clears close-on-exec on the copy.
  if (template_fd >= 0 && ::dup2(template_fd, kTemplateFd) < 0) {
    fail_errno("dup2", "template channel");
  }
  // SAFETY: fd hand-off: an instance of thaw's own runtimes keeps its native channel to thaw,
  // its own socketpair (no other instance holds an end of it).
  if (channel_fd >= 0 && ::dup2(channel_fd, kChannelFd) < 0) fail_errno("dup2", "native channel");
  if (template_fd < 0) ::close(kTemplateFd);
  if (channel_fd < 0) ::close(kChannelFd);
  // Every other descriptor goes (the trees once the jail has mounted them).
  std::sort(trees.begin(), trees.end());
  unsigned next = kChannelFd + 1;
  for (int tree : trees) {
    if (static_cast<unsigned>(tree) > next) ::close_range(next, tree - 1, 0);
    next = static_cast<unsigned>(tree) + 1;
  }
  ::close_range(next, ~0U, 0);
  const bool isolated = setup.mode != Isolation::kPlain;
  if (isolated) {
    JailSpec jail;
    jail.root = setup.jail_root;
    jail.bundle_dir = spec.bundle_dir;
    jail.uid = spec.uid;
    jail.gid = spec.uid;
    jail.keep_ids = setup.mode == Isolation::kRootless;
    jail.devices = spec.gpu_bind;
    for (size_t i = 0; i < spec.mount_src.size(); ++i) {
      jail.mounts.emplace_back(spec.mount_src[i], spec.mount_dst[i]);
    }
    jail.trees = trees;
    for (Status st : {EnterJail(jail), DropPrivileges(jail)}) {
      if (!st.ok()) fail(st.message());
    }
    for (int tree : trees) ::close(tree);
  } else if (::chdir(spec.cwd.c_str()) != 0) {
    fail_errno("chdir", spec.cwd);
  }
  if (Status st = ApplyRlimits(setup, spec.limits); !st.ok()) fail(st.message());
  // SAFETY: if the spawner dies, its instances must not outlive it. Set after the uid change,
  // which clears it.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail_errno("prctl(PDEATHSIG)", "runtime");
  if (isolated) {
    if (seccomp == nullptr) fail("no seccomp filter for a jailed instance");
    Status st = LoadSeccomp(*seccomp);
    if (!st.ok()) fail(st.message());
  }
  std::optional<ExecArrays> made;
  if (exec == nullptr) exec = &made.emplace(spec);
  ::execve(exec->argv[0], exec->argv.data(), exec->envp.data());
  fail_errno("exec", spec.argv[0]);
  _exit(127);
}

std::string JoinSpawnList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += '\n';
    out += item;
  }
  return out;
}

std::vector<std::string> SplitSpawnList(const std::string& field) {
  std::vector<std::string> out;
  for (size_t start = 0; start < field.size();) {
    size_t nl = field.find('\n', start);
    if (nl == std::string::npos) nl = field.size();
    out.push_back(field.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

size_t SpawnUidField(const std::vector<std::string>& fields) {
  return 4 + std::stoul(fields[2]) + std::stoul(fields[3]) + 5;
}

StatusOr<ChildSpec> ParseSpawn(const std::vector<std::string>& fields) {
  if (fields.size() < 4) return InvalidArgument("malformed spawn request");
  size_t argc = std::stoul(fields[2]), envc = std::stoul(fields[3]);
  if (argc == 0 || fields.size() != 4 + argc + envc + 13) {
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
  spec.private_network = fields[i + 6] == "1";
  spec.gpu_bind = SplitSpawnList(fields[i + 7]);
  spec.gpu_deny = SplitSpawnList(fields[i + 8]);
  spec.mount_src = SplitSpawnList(fields[i + 9]);
  spec.mount_dst = SplitSpawnList(fields[i + 10]);
  if (spec.mount_src.size() != spec.mount_dst.size()) {
    return InvalidArgument("malformed spawn request: model mounts");
  }
  spec.template_channel = fields[i + 11] == "1";
  spec.tmp_bytes = std::stoll(fields[i + 12]);
  if (spec.tmp_bytes < 0) return InvalidArgument("malformed spawn request: /tmp size");
  if (spec.uid == 0) return InvalidArgument("refusing to run an instance as root");
  return spec;
}

size_t TreesFor(const SpawnerSetup& setup, const ChildSpec& spec) {
  return setup.cut_trees ? 1 + spec.mount_src.size() + spec.gpu_bind.size() : 0;
}

Status DenyOtherGpus(const SpawnerSetup& setup, const std::string& cgroup, const ChildSpec& spec) {
  if (spec.gpu_deny.empty()) return Status::Ok();
  if (setup.cgroups == nullptr || cgroup.empty()) {
    return FailedPrecondition(
        "failed to isolate GPUs on instance: device control needs cgroups (thaw as root)");
  }
  auto denied = DeviceNumbersOf(spec.gpu_deny);
  if (!denied.ok()) return denied.status();
  return setup.cgroups->DenyDevices(cgroup, *denied);
}

namespace {

// Everything a shell does before it waits: ids, cgroup, the new root, the private Runtime API
// listener, the seccomp program. The first failure is kept and reported at spawn time.
Status PrepareShell(const SpawnerSetup& setup, const Shell& shell, UniqueFd& api,
                    StatusOr<SeccompProgram>& seccomp) {
  if (setup.mode == Isolation::kRootless) {
    THAW_RETURN_IF_ERROR(MapOwnIds(setup.host_uid, setup.host_gid));
  }
  if (setup.cgroups != nullptr) (void)setup.cgroups->AddProcess(shell.cgroup, 0);
  JailSpec jail;
  jail.root = setup.jail_root;
  jail.runtimes_dir = setup.runtimes_dir;
  jail.tmp_bytes = shell.tmp_bytes;
  UniqueFd disk;
  if (!setup.tmp_disk_dir.empty()) {
    int fd = -1;
    auto device = MakeTmpDisk(setup.tmp_disk_dir, shell.tmp_bytes, shell.tmp_template, &fd);
    if (!device.ok()) return device.status();
    disk.reset(fd);
    jail.tmp_disk = *device;
  }
  THAW_RETURN_IF_ERROR(PrepareJail(jail));
  // SAFETY: the mount holds the loop device now; with this last descriptor closed, its
  // autoclear detaches it (and frees the unlinked image) when the mount namespace goes.
  disk.reset();
  if (shell.private_network) {
    auto listener = EnterPrivateNetwork();
    if (!listener.ok()) return listener.status();
    api = std::move(*listener);
  }
  // Off the start's path: the unmount of the host's root waits for an RCU grace period, and
  // mount operations take one host-wide lock, so 100 shells entering at once queued there.
  if (setup.cut_trees) THAW_RETURN_IF_ERROR(PivotIntoJail(setup.jail_root));
  seccomp = CompileSeccomp();
  return seccomp.status();
}

// A prepared jailed shell becomes thaw-shell (SpawnerSetup::shell_exe), which waits for the
// request instead; returns only when that exec failed (the shell then waits itself).
void ExecShellExe(const SpawnerSetup& setup, int control, const UniqueFd& api,
                  const SeccompProgram& seccomp) {
  UniqueFd filter(::memfd_create("seccomp", 0));
  if (!filter.valid()) return;
  const size_t bytes = seccomp.code.size() * sizeof(sock_filter);
  if (::write(filter.get(), seccomp.code.data(), bytes) != static_cast<ssize_t>(bytes)) return;
  // SAFETY: fd hand-off: thaw-shell keeps only its control socket, its listener and the
  // filter; every other descriptor of the spawner's is close-on-exec.
  ::fcntl(control, F_SETFD, 0);
  if (api.valid()) ::fcntl(api.get(), F_SETFD, 0);
  const std::string control_arg = std::to_string(control);
  const std::string api_arg = std::to_string(api.valid() ? api.get() : -1);
  const std::string filter_arg = std::to_string(filter.get());
  char* const argv[] = {const_cast<char*>("thaw-shell"), const_cast<char*>(control_arg.c_str()),
                        const_cast<char*>(api_arg.c_str()), const_cast<char*>(filter_arg.c_str()),
                        nullptr};
  char* const envp[] = {nullptr};
  ::execveat(setup.shell_exe, "", argv, envp, AT_EMPTY_PATH);
  ::fcntl(control, F_SETFD, FD_CLOEXEC);
  if (api.valid()) ::fcntl(api.get(), F_SETFD, FD_CLOEXEC);
}

// The shell's side: prepare, wait for the request (with the log pipe fds), hand the private
// Runtime API listener over, then go the way of every child. Errors travel back on the control
// socket, which exec closes.
[[noreturn]] void RunShell(const SpawnerSetup& setup, const Shell& shell, int control) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  UniqueFd api;
  StatusOr<SeccompProgram> seccomp;
  Status prepared = PrepareShell(setup, shell, api, seccomp);
  if (prepared.ok() && setup.cut_trees && setup.shell_exe >= 0) {
    ExecShellExe(setup, control, api, *seccomp);
  }
  if (!prepared.ok()) {
    std::string buf;
    std::vector<int> fds;
    if (RecvWithFds(control, buf, fds) <= 0) _exit(0);
    (void)!::write(control, prepared.message().data(), prepared.message().size());
    _exit(127);
  }
  // Without cut_trees the spawner has not denied the other GPUs: the shell, still root, does.
  AwaitSpawn(setup, shell.cgroup, control, std::move(api), *seccomp,
             setup.cut_trees ? nullptr : &DenyOtherGpus);
}

std::string NewShellName() {
  static uint64_t counter = 0;
  return "shell-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

}  // namespace

[[noreturn]] void AwaitSpawn(const SpawnerSetup& setup, const std::string& cgroup, int control,
                             UniqueFd api, const SeccompProgram& seccomp, SpawnCheck check) {
  std::string buf;
  std::vector<int> fds;
  if (RecvWithFds(control, buf, fds) <= 0 || fds.size() < 2) _exit(0);
  auto spec = ParseSpawn(SplitFields(buf.data(), buf.size()));
  // The log pipes, then the template's channel to the spawner or the instance's native one,
  // then the detached mounts (cut_trees).
  const size_t trees = spec.ok() ? TreesFor(setup, *spec) : 0;
  const size_t own = fds.size() >= trees ? fds.size() - trees : 0;
  if (spec.ok() && (own < 2 || own > 3 || (spec->template_channel && own != 3))) {
    spec = InvalidArgument("malformed spawn request: wrong descriptors");
  }
  if (!spec.ok()) {
    const std::string& why = spec.status().message();
    (void)!::write(control, why.data(), why.size());
    _exit(127);
  }
  if (Status st = check != nullptr ? check(setup, cgroup, *spec) : Status::Ok(); !st.ok()) {
    (void)!::write(control, st.message().data(), st.message().size());
    _exit(127);
  }
  if (api.valid()) {
    // SAFETY: fd hand-off: thaw serves the listener; the runtime must not hold it (it could
    // accept its own connections), so this copy is closed before exec.
    int fd = api.get();
    if (SendWithFds(control, "listener", &fd, 1) < 0) _exit(127);
    api.reset();
  }
  spec->cgroup = cgroup;
  spec->trees.assign(fds.begin() + static_cast<std::ptrdiff_t>(own), fds.end());
  const int third = own > 2 ? fds[2] : -1;
  ExecChild(setup, *spec, fds[0], fds[1], control, &seccomp, spec->template_channel ? third : -1,
            spec->template_channel ? -1 : third);
}

int ShellExeMain(int argc, char** argv) {
  ::prctl(PR_SET_NAME, "thaw-shell");
  // Kept across the exec (root, no set-user-ID), set again all the same: if the spawner dies,
  // its shells must not outlive it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (argc != 4) return 2;
  const int control = std::atoi(argv[1]), api = std::atoi(argv[2]);
  UniqueFd filter(std::atoi(argv[3]));
  ::fcntl(control, F_SETFD, FD_CLOEXEC);
  if (api >= 0) ::fcntl(api, F_SETFD, FD_CLOEXEC);
  SeccompProgram seccomp;
  struct stat st;
  if (::fstat(filter.get(), &st) != 0 || st.st_size <= 0) return 2;
  seccomp.code.resize(static_cast<size_t>(st.st_size) / sizeof(sock_filter));
  if (::pread(filter.get(), seccomp.code.data(), static_cast<size_t>(st.st_size), 0) !=
      st.st_size) {
    return 2;
  }
  filter.reset();
  // Ahead of the request: the instance's session (ExecChild makes none then).
  if (::setsid() < 0) return 2;
  // A prepared, pivoted jailed shell: the instance's mounts come with the request.
  SpawnerSetup setup;
  setup.mode = Isolation::kJail;
  setup.cut_trees = true;
  AwaitSpawn(setup, "", control, UniqueFd(api), seccomp, nullptr);
}

StatusOr<Shell> StartShell(const SpawnerSetup& setup, bool private_network, int64_t tmp_bytes,
                           int tmp_template, const CgroupLimits& limits) {
  Shell shell;
  shell.private_network = private_network;
  shell.tmp_bytes = tmp_bytes;
  shell.tmp_template = tmp_template;
  shell.cgroup = setup.cgroups != nullptr ? NewShellName() : "";
  if (!shell.cgroup.empty()) {
    shell.limits = limits;
    Status st = setup.cgroups->Create(shell.cgroup, limits);
    if (!st.ok()) return st;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus("create socketpair", "sandbox shell", errno);
  }
  // SAFETY: clone without a new stack behaves like fork (the spawner is single-threaded);
  // the child starts as PID 1 of fresh mount, PID, IPC and UTS namespaces (and a user one,
  // rootless).
  pid_t pid = static_cast<pid_t>(
      ::syscall(SYS_clone, ShellCloneFlags(setup) | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
  if (pid < 0) {
    int err = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    if (!shell.cgroup.empty()) (void)setup.cgroups->Remove(shell.cgroup);
    return ErrnoStatus("clone", "sandbox shell", err);
  }
  if (pid == 0) {
    ::close(sv[0]);
    RunShell(setup, shell, sv[1]);
  }
  ::close(sv[1]);
  shell.pid = pid;
  shell.control = sv[0];
  return shell;
}

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

std::string AwaitExec(int status_fd) {
  char buf[512];
  ssize_t n;
  do {
    n = ::read(status_fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

Status ProbeUserNamespaces(const SpawnerSetup& setup) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return ErrnoStatus("create pipe", "user namespace probe", errno);
  }
  // SAFETY: called before any thread exists; the child only sets itself up and exits.
  pid_t pid = static_cast<pid_t>(
      ::syscall(SYS_clone, ShellCloneFlags(setup) | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
  if (pid < 0) {
    int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return ErrnoStatus("clone into new namespaces", "user namespace probe", err);
  }
  if (pid == 0) {
    JailSpec jail;
    jail.root = setup.jail_root;
    jail.runtimes_dir = setup.runtimes_dir;
    jail.tmp_bytes = setup.tmp_bytes;
    Status st = MapOwnIds(setup.host_uid, setup.host_gid);
    if (st.ok()) st = PrepareJail(jail);
    if (st.ok()) st = EnterPrivateNetwork().status();
    if (!st.ok()) (void)!::write(status_pipe[1], st.message().data(), st.message().size());
    _exit(st.ok() ? 0 : 1);
  }
  ::close(status_pipe[1]);
  std::string error = AwaitExec(status_pipe[0]);  // the child's message, or EOF when it exits
  ::close(status_pipe[0]);
  int wait_status = 0;
  ::waitpid(pid, &wait_status, 0);
  if (!error.empty()) return FailedPrecondition(error);
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    return FailedPrecondition("user namespace probe ended with " + DescribeWaitStatus(wait_status));
  }
  return Status::Ok();
}

}  // namespace thaw::sandbox

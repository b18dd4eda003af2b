#include "sandbox/jail.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "common/files.h"
#include "sandbox/tmp_disk.h"

namespace thaw::sandbox {
namespace {

Status Fail(const std::string& op, const std::string& object) {
  return ErrnoStatus(op, object, errno);
}

Status Mkdir(const std::string& path, mode_t mode = 0755) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return Fail("create directory", path);
  return Status::Ok();
}

Status MkdirP(const std::string& path) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    THAW_RETURN_IF_ERROR(Mkdir(path.substr(0, pos)));
  }
  return Status::Ok();
}

Status WriteProcFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Fail("open", path);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return ErrnoStatus("write", path, err);
  return Status::Ok();
}

// Bind-mounts `src` at `dst` read-only (a bind mount ignores MS_RDONLY until remounted).
Status BindReadOnly(const std::string& src, const std::string& dst) {
  // SAFETY: both paths are inside the child's private mount namespace (propagation is off),
  // so nothing here is visible to the host or other instances.
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return Fail("bind-mount " + src, dst);
  }
  // In a user namespace the source's noexec is locked: a remount must keep it or fail.
  unsigned long keep = 0;
  struct statvfs sv;
  if (::statvfs(src.c_str(), &sv) == 0 && (sv.f_flag & ST_NOEXEC)) keep |= MS_NOEXEC;
  if (::mount(nullptr, dst.c_str(), nullptr,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | keep, nullptr) != 0) {
    return Fail("remount read-only", dst);
  }
  return Status::Ok();
}

// Debian's merged /usr makes /bin, /lib, ... symlinks: copy them as symlinks, else bind them.
Status MirrorTopLevel(const std::string& root, const char* name) {
  std::string host = std::string("/") + name;
  struct stat st;
  if (::lstat(host.c_str(), &st) != 0) return Status::Ok();  // absent on this host
  std::string dst = root + host;
  if (S_ISLNK(st.st_mode)) {
    char target[256];
    ssize_t n = ::readlink(host.c_str(), target, sizeof(target) - 1);
    if (n < 0) return Fail("read link", host);
    target[n] = '\0';
    if (::symlink(target, dst.c_str()) != 0) return Fail("create symlink", dst);
    return Status::Ok();
  }
  THAW_RETURN_IF_ERROR(Mkdir(dst));
  return BindReadOnly(host, dst);
}

Status MakeDev(const std::string& root) {
  const std::string dev = root + "/dev";
  THAW_RETURN_IF_ERROR(Mkdir(dev));
  if (::mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755") != 0) {
    return Fail("mount tmpfs", dev);
  }
  for (const char* node : {"null", "zero", "full", "random", "urandom"}) {
    std::string dst = dev + "/" + node, src = std::string("/dev/") + node;
    int fd = ::open(dst.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) return Fail("create", dst);
    ::close(fd);
    if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return Fail("bind-mount " + src, dst);
    }
  }
  for (auto [link, target] : {std::pair{"fd", "/proc/self/fd"},
                              {"stdin", "/proc/self/fd/0"},
                              {"stdout", "/proc/self/fd/1"},
                              {"stderr", "/proc/self/fd/2"}}) {
    std::string dst = dev + "/" + link;
    if (::symlink(target, dst.c_str()) != 0) return Fail("create symlink", dst);
  }
  return Mkdir(dev + "/shm", 01777);
}

// Covers the runtime's own /proc/<pid>/mountinfo (and its main thread's) with a copy that
// names no host path: bind mounts show their source folder there (the data dir, the bundle's
// digest, the runtimes folder). Only this process's view can be covered: its children's
// mountinfo files appear with them (see docs/sandbox.md).
Status HideMountSources() {
  auto text = ReadFile("/proc/self/mountinfo");
  if (!text.ok()) return text.status();
  const std::string copy = "/.mountinfo";
  int fd = ::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return Fail("create", copy);
  const std::string clean = HideHostPathsInMountInfo(*text);
  ssize_t n = ::write(fd, clean.data(), clean.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(clean.size())) return ErrnoStatus("write", copy, err);
  const std::string pid = std::to_string(::getpid());
  for (const std::string& target :
       {"/proc/" + pid + "/mountinfo", "/proc/" + pid + "/task/" + pid + "/mountinfo"}) {
    // SAFETY: inside the instance's private mount namespace, on its own fresh /proc.
    if (::mount(copy.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return Fail("bind-mount " + copy, target);
    }
  }
  return Status::Ok();
}

// Binds one host device node at <root>/dev/<its name>: nosuid and noexec, but not nodev.
Status BindDevice(const std::string& root, const std::string& src) {
  const std::string dst = root + "/dev/" + src.substr(src.rfind('/') + 1);
  int fd = ::open(dst.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return Fail("create", dst);
  ::close(fd);
  // SAFETY: inside the child's private mount namespace; only the nodes thaw chose for this
  // instance (its own GPUs and the shared control nodes) appear; its device cgroup refuses
  // the other GPUs' numbers even through a node made some other way.
  if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Fail("bind-mount " + src, dst);
  }
  if (::mount(nullptr, dst.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC,
              nullptr) != 0) {
    return Fail("remount nosuid,noexec", dst);
  }
  return Status::Ok();
}

}  // namespace

std::string HideHostPathsInMountInfo(std::string_view mountinfo) {
  // Each line: ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER-OPTIONS.
  // ROOT is the mounted folder's path inside its filesystem: a host path for a bind mount.
  // SUPER-OPTIONS can hold host paths too (overlayfs lowerdir=, upperdir=, workdir=).
  std::string out;
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, end - pos);
    pos = end + 1;
    std::vector<std::string_view> fields;
    for (size_t f = 0; f <= line.size();) {
      size_t sp = line.find(' ', f);
      if (sp == std::string_view::npos) sp = line.size();
      fields.push_back(line.substr(f, sp - f));
      f = sp + 1;
    }
    if (fields.size() < 10) continue;  // not a mount line: say nothing rather than leak
    std::string clean;
    for (size_t i = 0; i < fields.size(); ++i) {
      std::string field(fields[i]);
      if (i == 3) field = "/";
      if (i + 1 == fields.size() && i >= 9 && fields[i - 3] == "-") {
        std::string kept;
        for (size_t o = 0; o <= fields[i].size();) {
          size_t comma = fields[i].find(',', o);
          if (comma == std::string_view::npos) comma = fields[i].size();
          std::string_view opt = fields[i].substr(o, comma - o);
          if (opt.find('/') == std::string_view::npos) {
            kept += (kept.empty() ? "" : ",") + std::string(opt);
          }
          o = comma + 1;
        }
        field = kept.empty() ? "rw" : kept;
      }
      clean += (i ? " " : "") + field;
    }
    out += clean + "\n";
  }
  return out;
}

Status PrepareJail(const JailSpec& spec) {
  // SAFETY: make every mount private first, so what follows never propagates to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return Fail("make mounts private", "/");
  }
  const std::string& root = spec.root;
  if (::mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755") != 0) {
    return Fail("mount root tmpfs", root);
  }
  THAW_RETURN_IF_ERROR(Mkdir(root + "/usr"));
  THAW_RETURN_IF_ERROR(BindReadOnly("/usr", root + "/usr"));
  THAW_RETURN_IF_ERROR(Mkdir(root + "/etc"));
  THAW_RETURN_IF_ERROR(BindReadOnly("/etc", root + "/etc"));
  for (const char* name : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    THAW_RETURN_IF_ERROR(MirrorTopLevel(root, name));
  }
  THAW_RETURN_IF_ERROR(MkdirP(root + kTaskRoot));
  THAW_RETURN_IF_ERROR(MkdirP(root + kRuntimeDir));
  THAW_RETURN_IF_ERROR(BindReadOnly(spec.runtimes_dir, root + kRuntimeDir));
  const std::string tmp = root + "/tmp";
  THAW_RETURN_IF_ERROR(Mkdir(tmp));
  if (!spec.tmp_disk.empty()) {
    THAW_RETURN_IF_ERROR(MountTmpDisk(spec.tmp_disk, tmp));
  } else {
    const std::string tmp_opts = "size=" + std::to_string(spec.tmp_bytes) + ",mode=1777";
    if (::mount("tmpfs", tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts.c_str()) != 0) {
      return Fail("mount tmpfs", tmp);
    }
  }
  THAW_RETURN_IF_ERROR(MakeDev(root));
  const std::string proc = root + "/proc";
  THAW_RETURN_IF_ERROR(Mkdir(proc));
  // A fresh proc for the new PID namespace: it shows only this instance's processes.
  if (::mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return Fail("mount", proc);
  }
  if (::sethostname("thaw", 4) != 0) return Fail("set hostname", "thaw");
  return Mkdir(root + "/.old");
}

Status PivotIntoJail(const std::string& root) {
  // SAFETY: pivot_root then detach the old root: the host filesystem (thaw's data dir, the
  // admin key, other bundles) is no longer reachable from this mount namespace.
  const std::string old_root = root + "/.old";
  if (::syscall(SYS_pivot_root, root.c_str(), old_root.c_str()) != 0) {
    return Fail("pivot_root", root);
  }
  if (::chdir("/") != 0) return Fail("chdir", "/");
  if (::umount2("/.old", MNT_DETACH) != 0) return Fail("unmount", "old root");
  if (::rmdir("/.old") != 0) return Fail("remove", "/.old");
  return Status::Ok();
}

namespace {

// Moves a detached mount (the spawner's open_tree) onto `path` inside the pivoted root.
Status MoveTree(int tree, const std::string& path) {
  if (::move_mount(tree, "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return Fail("attach mount", path);
  }
  return Status::Ok();
}

// The start's own mounts into a root the caller pivoted into already (PivotIntoJail): the
// bundle, each model and each device as the spawner cut them from the host (read-only, or
// nosuid,noexec for devices, see spec.trees).
Status AttachTrees(const JailSpec& spec) {
  if (spec.trees.size() != 1 + spec.mounts.size() + spec.devices.size()) {
    return InvalidArgument("failed to enter jail: " + std::to_string(spec.trees.size()) +
                           " mounts came for " +
                           std::to_string(1 + spec.mounts.size() + spec.devices.size()));
  }
  size_t next = 0;
  THAW_RETURN_IF_ERROR(MoveTree(spec.trees[next++], kTaskRoot));
  for (const auto& [host, path] : spec.mounts) {
    THAW_RETURN_IF_ERROR(MkdirP(path));
    THAW_RETURN_IF_ERROR(MoveTree(spec.trees[next++], path));
  }
  for (const std::string& device : spec.devices) {
    const std::string dst = "/dev/" + device.substr(device.rfind('/') + 1);
    int fd = ::open(dst.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return Fail("create", dst);
    ::close(fd);
    THAW_RETURN_IF_ERROR(MoveTree(spec.trees[next++], dst));
  }
  return Status::Ok();
}

}  // namespace

Status EnterJail(const JailSpec& spec) {
  if (!spec.trees.empty()) {
    THAW_RETURN_IF_ERROR(AttachTrees(spec));
  } else {
    const std::string& root = spec.root;
    THAW_RETURN_IF_ERROR(BindReadOnly(spec.bundle_dir, root + kTaskRoot));
    for (const std::string& device : spec.devices) {
      THAW_RETURN_IF_ERROR(BindDevice(root, device));
    }
    for (const auto& [host, path] : spec.mounts) {
      // The new root is still a writable tmpfs of this shell's own (remounted read-only after
      // the pivot), so the mount point can be made here.
      THAW_RETURN_IF_ERROR(MkdirP(root + path));
      THAW_RETURN_IF_ERROR(BindReadOnly(host, root + path));
    }
    THAW_RETURN_IF_ERROR(PivotIntoJail(root));
  }
  THAW_RETURN_IF_ERROR(HideMountSources());
  // The root itself becomes read-only: only /tmp is writable.
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_BIND,
              nullptr) != 0) {
    return Fail("remount read-only", "/");
  }
  if (::chdir(kTaskRoot) != 0) return Fail("chdir", kTaskRoot);
  return Status::Ok();
}

StatusOr<UniqueFd> CutTree(const std::string& path, bool device) {
  // A copy of the host's mount at `path`, attached nowhere: only a process given the
  // descriptor can mount it, inside its own namespace (MoveTree).
  const unsigned recursive = device ? 0 : AT_RECURSIVE;
  UniqueFd tree(
      ::open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | recursive));
  if (!tree.valid()) return ErrnoStatus("bind-mount", path, errno);
  mount_attr attr{};
  attr.attr_set = device ? MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC
                         : MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | recursive, &attr, sizeof(attr)) != 0) {
    return ErrnoStatus(device ? "remount nosuid,noexec" : "remount read-only", path, errno);
  }
  return tree;
}

Status MapOwnIds(uid_t uid, gid_t gid) {
  // SAFETY: setgroups must be denied before an unprivileged gid_map write; it also keeps the
  // instance from dropping a group to get past a file's "deny group" permission bits.
  THAW_RETURN_IF_ERROR(WriteProcFile("/proc/self/setgroups", "deny"));
  THAW_RETURN_IF_ERROR(
      WriteProcFile("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1"));
  return WriteProcFile("/proc/self/gid_map",
                       std::to_string(gid) + " " + std::to_string(gid) + " 1");
}

StatusOr<UniqueFd> ListenOnPrivateLoopback() {
  UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail("create socket", "Runtime API");
  // A new network namespace holds only `lo`, down: up, it gets 127.0.0.1 and nothing else.
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) return Fail("read flags", "lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) return Fail("set flags (up)", "lo");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kPrivateRuntimeApiPort);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Fail("bind", kPrivateRuntimeApi);
  }
  if (::listen(sock.get(), 64) != 0) return Fail("listen", kPrivateRuntimeApi);
  return sock;
}

Status DropPrivileges(const JailSpec& spec) {
  if (spec.keep_ids) {
    // Rootless: the only mapped ids are thaw's own, which the instance already has; exec
    // drops the namespace's capabilities, since the uid is not 0 inside it.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Fail("set no_new_privs", "runtime");
    return Status::Ok();
  }
  // SAFETY: order matters: supplementary groups and gid while still root, uid last, so no
  // step can be undone by the function afterwards.
  if (::setgroups(0, nullptr) != 0) return Fail("drop supplementary groups", "runtime");
  if (::setresgid(spec.gid, spec.gid, spec.gid) != 0) {
    return Fail("set gid " + std::to_string(spec.gid), "runtime");
  }
  if (::setresuid(spec.uid, spec.uid, spec.uid) != 0) {
    return Fail("set uid " + std::to_string(spec.uid), "runtime");
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Fail("set no_new_privs", "runtime");
  return Status::Ok();
}

StatusOr<SeccompProgram> CompileSeccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return Internal("failed to create seccomp filter on runtime: out of memory");
  static const char* kDenied[] = {"mount",
                                  "umount2",
                                  "pivot_root",
                                  "chroot",
                                  "move_mount",
                                  "fsopen",
                                  "fsmount",
                                  "fspick",
                                  "open_tree",
                                  "mount_setattr",
                                  "kexec_load",
                                  "kexec_file_load",
                                  "bpf",
                                  "ptrace",
                                  "process_vm_readv",
                                  "process_vm_writev",
                                  "keyctl",
                                  "add_key",
                                  "request_key",
                                  "init_module",
                                  "finit_module",
                                  "delete_module",
                                  "reboot",
                                  "swapon",
                                  "swapoff",
                                  "setns",
                                  "unshare",
                                  "perf_event_open",
                                  "open_by_handle_at",
                                  "name_to_handle_at",
                                  "acct",
                                  "quotactl",
                                  "settimeofday",
                                  "clock_settime",
                                  "clock_adjtime",
                                  "adjtimex",
                                  "syslog",
                                  "userfaultfd",
                                  "iopl",
                                  "ioperm",
                                  "lookup_dcookie",
                                  "uselib",
                                  "vhangup",
                                  "sethostname",
                                  "setdomainname"};
  int rc = 0;
  for (const char* name : kDenied) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc != 0) break;
  }
  // New namespaces through clone are refused too (one rule per flag: rules are or-ed);
  // clone3 passes its flags in memory a filter cannot read, so it answers ENOSYS and libc
  // falls back to clone.
  for (uint64_t flag : {CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
                        CLONE_NEWUTS, CLONE_NEWCGROUP}) {
    if (rc != 0) break;
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
  }
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  // io_uring is a large, often-patched kernel surface that no runtime needs: ENOSYS, as a
  // kernel built without it answers, so libraries that try it (libuv) fall back to syscalls.
  for (const char* name : {"io_uring_setup", "io_uring_enter", "io_uring_register"}) {
    if (rc != 0) break;
    int nr = seccomp_syscall_resolve_name(name);
    if (nr != __NR_SCMP_ERROR) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
  }
  // Generating the BPF is the slow part: do it once, into memory, and load the bytes later.
  int fd = rc == 0 ? ::memfd_create("seccomp", MFD_CLOEXEC) : -1;
  if (rc == 0 && fd < 0) rc = -errno;
  if (rc == 0) rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  SeccompProgram program;
  if (rc == 0) {
    off_t size = ::lseek(fd, 0, SEEK_END);
    program.code.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    if (::pread(fd, program.code.data(), static_cast<size_t>(size), 0) != size) rc = -EIO;
  }
  if (fd >= 0) ::close(fd);
  if (rc != 0) {
    errno = -rc;
    return Fail("compile seccomp filter", "runtime");
  }
  return program;
}

Status LoadSeccomp(const SeccompProgram& program) {
  sock_fprog prog{static_cast<unsigned short>(program.code.size()),
                  const_cast<sock_filter*>(program.code.data())};
  // SAFETY: no_new_privs is set (DropPrivileges), so an unprivileged process may install it.
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    return Fail("load seccomp filter", "runtime");
  }
  return Status::Ok();
}

}  // namespace thaw::sandbox

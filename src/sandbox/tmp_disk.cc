#include "sandbox/tmp_disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"

namespace thaw::sandbox {
namespace {

constexpr char kImagePrefix[] = "thaw-tmp-";
constexpr char kAttachLock[] = "loop-attach.lock";

// Runs mkfs.ext4 on `image` and waits for it; its error output becomes the message.
Status Mkfs(const std::string& mkfs, const std::string& image) {
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoStatus("create pipe", "mkfs.ext4", errno);
  // No journal (the disk dies with the instance), no blocks reserved for root, inode tables
  // initialised lazily and no discard pass over the sparse image: about 10 ms at any size.
  std::vector<const char*> argv = {mkfs.c_str(),
                                   "-q",
                                   "-F",
                                   "-O",
                                   "^has_journal",
                                   "-E",
                                   "nodiscard,lazy_itable_init=1",
                                   "-m",
                                   "0",
                                   image.c_str(),
                                   nullptr};
  const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", nullptr};
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    return ErrnoStatus("fork", "mkfs.ext4", err);
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    // SAFETY: fd hand-off in the forked child: stdin/stdout are /dev/null, stderr the pipe the
    // shell reads; every other descriptor is close-on-exec or closed below.
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(devnull, 1) < 0 ||
        ::dup2(err_pipe[1], 2) < 0) {
      _exit(126);
    }
    ::close_range(3, ~0U, 0);
    ::execve(argv[0], const_cast<char* const*>(argv.data()), const_cast<char* const*>(envp));
    _exit(127);
  }
  ::close(err_pipe[1]);
  std::string output;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(err_pipe[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < 2048) output.append(buf, static_cast<size_t>(n));
  }
  ::close(err_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  return Internal("failed to run mkfs.ext4 on " + image + ": " +
                  (output.empty() ? "exit status " + std::to_string(WEXITSTATUS(status)) : output));
}

// Attaches `image_fd` to a free loop device; returns its path and an open descriptor on it.
StatusOr<std::string> Attach(const std::string& dir, int image_fd, const std::string& image,
                             int* loop_fd) {
  // The shells of a burst attach at once, and LOOP_CTL_GET_FREE gives them all the same free
  // device: all but one get EBUSY, and ask again, each retry waiting on the device's lock in
  // the kernel behind the one configuring it (a hundred shells took seconds, and some ran out
  // of retries). One at a time they each get a device at the first try. The lock is a file
  // beside the images, opened by each shell (flock excludes open files, not processes), and
  // released when `lock` closes, whatever happens.
  UniqueFd lock(::open((dir + "/" + kAttachLock).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid()) return ErrnoStatus("open", dir + "/" + kAttachLock, errno);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoStatus("lock", dir + "/" + kAttachLock, errno);
  }
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) return ErrnoStatus("open", "/dev/loop-control", errno);
  // Another process (another thaw server's shell) may take the free device between the two
  // calls: then ask again.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return ErrnoStatus("find a free loop device", "/dev/loop-control", errno);
    const std::string device = "/dev/loop" + std::to_string(n);
    UniqueFd dev(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!dev.valid()) {
      if (errno == ENOENT) continue;  // devtmpfs has not made the node yet
      return ErrnoStatus("open", device, errno);
    }
    loop_config config{};
    config.fd = static_cast<uint32_t>(image_fd);
    config.block_size = 4096;
    // Autoclear: the device detaches itself when its last user (the instance's mount) goes.
    // Direct I/O keeps the image's pages out of the page cache a second time.
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), "thaw-tmp", LO_NAME_SIZE - 1);
    // SAFETY: the device was free and is configured only over thaw's own fresh image.
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &config) == 0) {
      *loop_fd = dev.release();
      return device;
    }
    if (errno == EBUSY) continue;
    if (errno == EINVAL) {
      // An older kernel or a disk refusing direct I/O: plain buffered I/O then.
      config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
      config.block_size = 0;
      if (::ioctl(dev.get(), LOOP_CONFIGURE, &config) == 0) {
        *loop_fd = dev.release();
        return device;
      }
      if (errno == EBUSY) continue;
    }
    return ErrnoStatus("attach " + image, device, errno);
  }
  return Unavailable("failed to attach " + image + " on a loop device: every free one was taken");
}

}  // namespace

std::string FindMkfsExt4() {
  for (const char* path : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

Status ProbeTmpDisks(const std::string& dir) {
  if (::geteuid() != 0) return FailedPrecondition("loop devices need root");
  if (FindMkfsExt4().empty()) return FailedPrecondition("mkfs.ext4 not found (install e2fsprogs)");
  if (::access("/dev/loop-control", R_OK | W_OK) != 0) {
    return ErrnoStatus("open", "/dev/loop-control", errno);
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("create directory", dir, errno);
  }
  if (::access(dir.c_str(), W_OK) != 0) return ErrnoStatus("write", dir, errno);
  // Images are unlinked once attached: one still here was left by a shell killed while it
  // made it (this data dir's previous server).
  if (DIR* d = ::opendir(dir.c_str()); d != nullptr) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.starts_with(kImagePrefix) && name.ends_with(".img")) {
        ::unlinkat(::dirfd(d), name.c_str(), 0);
      }
    }
    ::closedir(d);
  }
  return Status::Ok();
}

namespace {

// A fresh sparse image file of `bytes` under `dir`, still linked (the caller unlinks it).
StatusOr<UniqueFd> NewImage(const std::string& dir, int64_t bytes, std::string* path) {
  // Shells are PID 1 of their namespaces, forked from one spawner: a random name, not a pid.
  uint64_t nonce = 0;
  if (::getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) {
    return ErrnoStatus("read random bytes", "tmp disk name", errno);
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(nonce));
  *path = dir + "/" + kImagePrefix + hex + ".img";
  UniqueFd file(::open(path->c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file.valid()) return ErrnoStatus("create", *path, errno);
  // Sparse: blocks are taken only as the function writes.
  if (::ftruncate(file.get(), bytes) != 0) {
    const int err = errno;
    ::unlink(path->c_str());
    return ErrnoStatus("size", *path, err);
  }
  return file;
}

// Whatever happens next, the name goes: the loop device holds the file open, and the image's
// blocks are freed when it lets go.
struct UnlinkAtEnd {
  const std::string& path;
  ~UnlinkAtEnd() { ::unlink(path.c_str()); }
};

// Copies the written extents of `from` into `to` at the same offsets; the holes stay holes.
Status CopyWritten(int from, int to, int64_t bytes, const std::string& image) {
  off_t at = 0;
  while (at < bytes) {
    off_t data = ::lseek(from, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only holes from here
      return ErrnoStatus("find data in", "tmp disk template", errno);
    }
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) return ErrnoStatus("find a hole in", "tmp disk template", errno);
    loff_t in = data, out = data;
    while (in < hole) {
      ssize_t n = ::copy_file_range(from, &in, to, &out, static_cast<size_t>(hole - in), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("copy the tmp disk template to", image, errno);
      if (n == 0) return Internal("failed to copy the tmp disk template to " + image + ": short");
    }
    at = hole;
  }
  return Status::Ok();
}

}  // namespace

StatusOr<UniqueFd> MakeTmpDiskTemplate(const std::string& dir, int64_t bytes) {
  std::string image;
  auto file = NewImage(dir, bytes, &image);
  if (!file.ok()) return file.status();
  UnlinkAtEnd unlink_at_end{image};
  static const std::string mkfs = FindMkfsExt4();
  if (mkfs.empty()) return FailedPrecondition("mkfs.ext4 not found (install e2fsprogs)");
  THAW_RETURN_IF_ERROR(Mkfs(mkfs, image));
  return std::move(*file);
}

StatusOr<std::string> MakeTmpDisk(const std::string& dir, int64_t bytes, int template_fd, int* fd) {
  std::string image;
  auto file = NewImage(dir, bytes, &image);
  if (!file.ok()) return file.status();
  UnlinkAtEnd unlink_at_end{image};
  if (template_fd >= 0) {
    THAW_RETURN_IF_ERROR(CopyWritten(template_fd, file->get(), bytes, image));
  } else {
    static const std::string mkfs = FindMkfsExt4();
    if (mkfs.empty()) return FailedPrecondition("mkfs.ext4 not found (install e2fsprogs)");
    THAW_RETURN_IF_ERROR(Mkfs(mkfs, image));
  }
  return Attach(dir, file->get(), image, fd);
}

Status MountTmpDisk(const std::string& device, const std::string& target) {
  // SAFETY: in the shell's private mount namespace (propagation off): nothing here reaches the
  // host; nosuid and nodev keep setuid files and device nodes the function makes inert.
  if (::mount(device.c_str(), target.c_str(), "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME,
              "noinit_itable") != 0) {
    return ErrnoStatus("mount " + device, target, errno);
  }
  const std::string lost = target + "/lost+found";
  if (::rmdir(lost.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove", lost, errno);
  if (::chmod(target.c_str(), 01777) != 0) return ErrnoStatus("chmod", target, errno);
  return Status::Ok();
}

}  // namespace thaw::sandbox

#include "common/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <vector>

namespace thaw {

StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound("no such file: " + path);
    return ErrnoStatus("open", path, errno);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus("create", tmp, errno);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus("write", tmp, err);
    }
    off += static_cast<size_t>(n);
  }
  // The mode passed to open is filtered by the umask; secrets need it exact.
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus("sync", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("rename", tmp, err);
  }
  return Status::Ok();
}

Status MakeDirs(const std::string& path, int mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus("create directory", path, ec.value());
  (void)mode;
  return Status::Ok();
}

namespace {

// Owns one DIR stream (and so its fd).
struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// Opens folder `name` under `dir_fd` as a stream, never through a symlink.
DirPtr OpenDirAt(int dir_fd, const char* name) {
  int fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return nullptr;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) ::close(fd);
  return DirPtr(d);
}

bool IsDotOrDotDot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? Status::Ok() : ErrnoStatus("stat", path, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove", path, errno);
    return Status::Ok();
  }
  // Depth-first with one open folder: empty the current folder of files, step into the first
  // subfolder that is not empty, and when a folder is empty step back up through ".." (safe:
  // every step down refused symlinks) and start its listing again. Entries already removed are
  // gone from the listing, so the restarts cost little; no position or path is kept per level.
  DirPtr dir = OpenDirAt(AT_FDCWD, path.c_str());
  if (dir == nullptr) return ErrnoStatus("open", path, errno);
  int64_t depth = 0;
  for (;;) {
    const int fd = ::dirfd(dir.get());
    // A read-only folder cannot be emptied; we own it, so give ourselves the bits back.
    if (::fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700) ::fchmod(fd, st.st_mode | 0700);
    ::rewinddir(dir.get());
    DirPtr child;
    bool removed = false;  // a listing changed under readdir may skip entries: list again
    while (dirent* e = ::readdir(dir.get())) {
      if (IsDotOrDotDot(e->d_name)) continue;
      if (::unlinkat(fd, e->d_name, 0) == 0 || errno == ENOENT) {
        removed = true;
        continue;
      }
      if (errno != EISDIR && errno != EPERM) return ErrnoStatus("remove", e->d_name, errno);
      if (::unlinkat(fd, e->d_name, AT_REMOVEDIR) == 0) {
        removed = true;
        continue;
      }
      if (errno != ENOTEMPTY && errno != EEXIST && errno != EACCES) {
        return ErrnoStatus("remove", e->d_name, errno);
      }
      child = OpenDirAt(fd, e->d_name);
      if (child == nullptr) return ErrnoStatus("open", e->d_name, errno);
      break;
    }
    if (child != nullptr) {
      dir = std::move(child);
      ++depth;
      continue;
    }
    if (removed) continue;
    if (depth == 0) break;
    DirPtr parent = OpenDirAt(fd, "..");
    if (parent == nullptr) return ErrnoStatus("open", "parent folder in " + path, errno);
    dir = std::move(parent);
    --depth;
  }
  dir.reset();
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove", path, errno);
  return Status::Ok();
}

Status WalkTree(
    const std::string& root, int max_depth,
    const std::function<Status(int dir_fd, const char* name, const struct stat& st)>& visit) {
  std::vector<DirPtr> stack;
  stack.push_back(OpenDirAt(AT_FDCWD, root.c_str()));
  if (stack.back() == nullptr) return ErrnoStatus("open", root, errno);
  while (!stack.empty()) {
    DIR* d = stack.back().get();
    errno = 0;
    dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) return ErrnoStatus("read directory", root, errno);
      stack.pop_back();
      continue;
    }
    if (IsDotOrDotDot(e->d_name)) continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus("stat", e->d_name, errno);
    }
    THAW_RETURN_IF_ERROR(visit(::dirfd(d), e->d_name, st));
    if (!S_ISDIR(st.st_mode)) continue;
    if (static_cast<int>(stack.size()) > max_depth) {
      return FailedPrecondition(root + " is deeper than " + std::to_string(max_depth) + " levels");
    }
    DirPtr child = OpenDirAt(::dirfd(d), e->d_name);
    if (child == nullptr) return ErrnoStatus("open", e->d_name, errno);
    stack.push_back(std::move(child));
  }
  return Status::Ok();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace thaw

#include "registry/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "common/files.h"

namespace thaw::registry {
namespace {

struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

// Owns one open fd.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// libarchive may report a failure without a message (found by fuzz/archive_fuzz.cc).
std::string ErrorText(archive* a) {
  const char* text = archive_error_string(a);
  return text != nullptr ? text : "unreadable data";
}

Status Refuse(const std::string& entry, const std::string& why) {
  return InvalidArgument("archive entry '" + entry + "' refused: " + why);
}

// Splits an entry path into components, refusing anything that could leave the root.
StatusOr<std::vector<std::string>> SafeComponents(const std::string& path) {
  if (path.empty()) return Refuse(path, "empty path");
  if (path[0] == '/') return Refuse(path, "absolute path");
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "..") return Refuse(path, "'..' in path");
    if (!part.empty() && part != ".") parts.push_back(part);
    start = end + 1;
  }
  return parts;
}

// Opens (creating as needed) the directory holding the last component, never following a
// symlink on the way: O_NOFOLLOW on every step.
StatusOr<Fd> OpenParent(int root_fd, const std::vector<std::string>& parts, size_t depth,
                        const std::string& entry) {
  Fd dir(::dup(root_fd));
  if (dir.get() < 0) return ErrnoStatus("dup", "bundle root", errno);
  for (size_t i = 0; i < depth; ++i) {
    if (::mkdirat(dir.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus("create directory", entry, errno);
    }
    // SAFETY: O_NOFOLLOW|O_DIRECTORY refuses a symlink planted as a path component.
    Fd next(::openat(dir.get(), parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) return Refuse(entry, "path passes through a non-directory");
    dir = std::move(next);
  }
  return dir;
}

struct PendingLink {
  std::string entry;
  std::vector<std::string> parts;
  std::string target;
};

Status UnpackInto(archive* a, const std::string& dest, const UnpackLimits& limits) {
  Fd root(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) return ErrnoStatus("open", dest, errno);
  int64_t total_bytes = 0, entries = 0;
  std::vector<PendingLink> links;
  archive_entry* entry = nullptr;
  for (;;) {
    int rc = archive_read_next_header(a, &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      return InvalidArgument(std::string("not a valid zip or tar.gz archive: ") + ErrorText(a));
    }
    if (++entries > limits.max_entries) {
      return InvalidArgument("archive has more than " + std::to_string(limits.max_entries) +
                             " entries");
    }
    const char* raw_path = archive_entry_pathname(entry);
    std::string path = raw_path ? raw_path : "";
    auto parts = SafeComponents(path);
    if (!parts.ok()) return parts.status();
    if (archive_entry_hardlink(entry) != nullptr) return Refuse(path, "hard links are not allowed");
    mode_t type = archive_entry_filetype(entry);
    if (parts->empty()) {
      if (type == AE_IFDIR) continue;  // "./" itself
      return Refuse(path, "empty path");
    }
    if (type == AE_IFDIR) {
      auto dir = OpenParent(root.get(), *parts, parts->size(), path);
      if (!dir.ok()) return dir.status();
      continue;
    }
    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || target[0] == '\0') return Refuse(path, "symlink without target");
      if (target[0] == '/') return Refuse(path, "symlink to an absolute path");
      links.push_back({path, *parts, target});
      continue;
    }
    if (type != AE_IFREG) return Refuse(path, "only files, folders and symlinks are allowed");
    // Sparse entries could claim huge holes that cost no data bytes: refuse them outright.
    if (archive_entry_sparse_count(entry) > 0) return Refuse(path, "sparse files are not allowed");
    if (archive_entry_size_is_set(entry) &&
        total_bytes + archive_entry_size(entry) > limits.max_bytes) {
      return InvalidArgument("archive unpacks to more than " + std::to_string(limits.max_bytes) +
                             " bytes");
    }

    auto dir = OpenParent(root.get(), *parts, parts->size() - 1, path);
    if (!dir.ok()) return dir.status();
    mode_t mode = (archive_entry_perm(entry) & 0111) ? 0755 : 0644;
    Fd out(::openat(dir->get(), parts->back().c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (out.get() < 0) {
      if (errno == EEXIST) return Refuse(path, "duplicate entry");
      return ErrnoStatus("create", path, errno);
    }
    const void* block;
    size_t size;
    la_int64_t offset;
    for (;;) {
      rc = archive_read_data_block(a, &block, &size, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
        return InvalidArgument("corrupt data in entry '" + path + "': " + ErrorText(a));
      }
      total_bytes += static_cast<int64_t>(size);
      if (total_bytes > limits.max_bytes ||
          offset + static_cast<int64_t>(size) > limits.max_bytes) {
        return InvalidArgument("archive unpacks to more than " + std::to_string(limits.max_bytes) +
                               " bytes");
      }
      if (::lseek(out.get(), offset, SEEK_SET) < 0) return ErrnoStatus("seek", path, errno);
      const char* p = static_cast<const char*>(block);
      while (size > 0) {
        ssize_t n = ::write(out.get(), p, size);
        if (n < 0) {
          if (errno == EINTR) continue;
          return ErrnoStatus("write", path, errno);
        }
        p += n;
        size -= static_cast<size_t>(n);
      }
    }
  }

  // Symlinks go last, so no file above was written through one; each must resolve inside.
  char root_real[PATH_MAX];
  if (::realpath(dest.c_str(), root_real) == nullptr) return ErrnoStatus("resolve", dest, errno);
  std::string root_prefix = std::string(root_real) + "/";
  for (const PendingLink& link : links) {
    auto dir = OpenParent(root.get(), link.parts, link.parts.size() - 1, link.entry);
    if (!dir.ok()) return dir.status();
    if (::symlinkat(link.target.c_str(), dir->get(), link.parts.back().c_str()) != 0) {
      if (errno == EEXIST) return Refuse(link.entry, "duplicate entry");
      return ErrnoStatus("create symlink", link.entry, errno);
    }
  }
  for (const PendingLink& link : links) {
    char resolved[PATH_MAX];
    std::string full = dest + "/" + link.entry;
    if (::realpath(full.c_str(), resolved) == nullptr) {
      return Refuse(link.entry,
                    "symlink target '" + link.target + "' does not exist in the bundle");
    }
    std::string r = resolved;
    if (r != root_real && !r.starts_with(root_prefix)) {
      return Refuse(link.entry, "symlink points outside the bundle");
    }
  }
  return Status::Ok();
}

}  // namespace

Status Unpack(const std::string& data, const std::string& dest, const UnpackLimits& limits) {
  std::unique_ptr<archive, ArchiveReadDeleter> a(archive_read_new());
  archive_read_support_format_zip(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_gzip(a.get());
  if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK) {
    return InvalidArgument(std::string("not a valid zip or tar.gz archive: ") + ErrorText(a.get()));
  }
  if (::mkdir(dest.c_str(), 0755) != 0) return ErrnoStatus("create directory", dest, errno);
  Status st = UnpackInto(a.get(), dest, limits);
  if (!st.ok()) (void)RemoveTree(dest);
  return st;
}

StatusOr<std::string> PackDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return InvalidArgument(dir + " is not a directory");
  std::unique_ptr<archive, ArchiveWriteDeleter> a(archive_write_new());
  archive_write_add_filter_gzip(a.get());
  archive_write_set_format_pax_restricted(a.get());
  std::string out;
  auto writer = [](archive*, void* ctx, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  if (archive_write_open(a.get(), &out, nullptr, writer, nullptr) != ARCHIVE_OK) {
    return Internal(std::string("failed to start archive: ") + ErrorText(a.get()));
  }
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(),
                                                                 archive_entry_free);
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) return ErrnoStatus("read directory", dir, ec.value());
  for (; it != end; it.increment(ec)) {
    if (ec) return ErrnoStatus("read directory", dir, ec.value());
    const fs::path& p = it->path();
    // lexically: fs::relative would resolve a symlink to its target's name.
    std::string rel = p.lexically_relative(dir).generic_string();
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return ErrnoStatus("stat", p.string(), errno);
    archive_entry_clear(entry.get());
    archive_entry_set_pathname(entry.get(), rel.c_str());
    archive_entry_copy_stat(entry.get(), &st);
    std::string content;
    if (S_ISLNK(st.st_mode)) {
      auto target = fs::read_symlink(p, ec);
      if (ec) return ErrnoStatus("read symlink", p.string(), ec.value());
      archive_entry_set_symlink(entry.get(), target.c_str());
    } else if (S_ISREG(st.st_mode)) {
      auto data = ReadFile(p.string());
      if (!data.ok()) return data.status();
      content = std::move(*data);
    } else if (!S_ISDIR(st.st_mode)) {
      return InvalidArgument(p.string() + ": only files, folders and symlinks can be deployed");
    }
    if (archive_write_header(a.get(), entry.get()) != ARCHIVE_OK ||
        (!content.empty() && archive_write_data(a.get(), content.data(), content.size()) < 0)) {
      return Internal("failed to pack " + rel + ": " + ErrorText(a.get()));
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return Internal(std::string("failed to finish archive: ") + ErrorText(a.get()));
  }
  return out;
}

}  // namespace thaw::registry

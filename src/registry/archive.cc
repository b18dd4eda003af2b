#include "registry/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
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

// An OS failure on an entry: the archive's fault when a name is too long for the filesystem,
// else the environment's (a full disk is InsufficientStorage, see ErrnoStatus).
Status EntryErrno(const std::string& op, const std::string& entry, int err) {
  if (err == ENAMETOOLONG)
    return Refuse(entry, std::string("failed to ") + op + ": " + strerror(err));
  return ErrnoStatus(op, entry, err);
}

// Splits an entry path into components, refusing anything that could leave the root and
// paths past the limits.
StatusOr<std::vector<std::string>> SafeComponents(const std::string& path,
                                                  const UnpackLimits& limits) {
  if (path.empty()) return Refuse(path, "empty path");
  if (static_cast<int64_t>(path.size()) > limits.max_path_bytes) {
    return Refuse(path.substr(0, 64) + "...",
                  "path longer than " + std::to_string(limits.max_path_bytes) + " bytes");
  }
  if (path[0] == '/') return Refuse(path, "absolute path");
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "..") return Refuse(path, "'..' in path");
    if (static_cast<int64_t>(part.size()) > limits.max_name_bytes) {
      return Refuse(path.substr(0, 64) + "...",
                    "a name longer than " + std::to_string(limits.max_name_bytes) + " bytes");
    }
    if (!part.empty() && part != ".") parts.push_back(part);
    if (static_cast<int64_t>(parts.size()) > limits.max_depth) {
      return Refuse(path.substr(0, 64) + "...",
                    "path deeper than " + std::to_string(limits.max_depth) + " levels");
    }
    start = end + 1;
  }
  return parts;
}

Status TooBig(const UnpackLimits& limits) {
  return InvalidArgument("archive unpacks to more than " + std::to_string(limits.max_bytes) +
                         " bytes");
}

// One archive entry as both passes see it, after every check that needs no disk.
struct EntryInfo {
  std::string path;
  std::vector<std::string> parts;  // empty: the root folder itself, nothing to do
  mode_t type = 0;
};

StatusOr<EntryInfo> Inspect(archive_entry* entry, const UnpackLimits& limits) {
  EntryInfo info;
  const char* raw_path = archive_entry_pathname(entry);
  info.path = raw_path ? raw_path : "";
  auto parts = SafeComponents(info.path, limits);
  if (!parts.ok()) return parts.status();
  info.parts = std::move(*parts);
  const std::string& path = info.path;
  if (archive_entry_hardlink(entry) != nullptr) return Refuse(path, "hard links are not allowed");
  info.type = archive_entry_filetype(entry);
  if (info.parts.empty()) {
    if (info.type == AE_IFDIR) return info;  // "./" itself
    return Refuse(path, "empty path");
  }
  if (info.type == AE_IFDIR) return info;
  if (info.type == AE_IFLNK) {
    const char* target = archive_entry_symlink(entry);
    if (target == nullptr || target[0] == '\0') return Refuse(path, "symlink without target");
    if (target[0] == '/') return Refuse(path, "symlink to an absolute path");
    if (static_cast<int64_t>(std::strlen(target)) > limits.max_path_bytes) {
      return Refuse(
          path, "symlink target longer than " + std::to_string(limits.max_path_bytes) + " bytes");
    }
    return info;
  }
  if (info.type != AE_IFREG) return Refuse(path, "only files, folders and symlinks are allowed");
  // Sparse entries could claim huge holes that cost no data bytes: refuse them outright.
  if (archive_entry_sparse_count(entry) > 0) return Refuse(path, "sparse files are not allowed");
  return info;
}

// Reads the next entry's header and counts it against max_entries: false at the end.
StatusOr<bool> NextHeader(archive* a, const UnpackLimits& limits, int64_t& entries,
                          archive_entry*& entry) {
  int rc = archive_read_next_header(a, &entry);
  if (rc == ARCHIVE_EOF) return false;
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
    return InvalidArgument(std::string("not a valid zip or tar.gz archive: ") + ErrorText(a));
  }
  if (++entries > limits.max_entries) {
    return InvalidArgument("archive has more than " + std::to_string(limits.max_entries) +
                           " entries");
  }
  return true;
}

// The first pass: every header, nothing written. A bomb spread over many entries is refused
// here by the sum of the sizes they declare (a zip's from its central directory), before a byte
// reaches the disk; the second pass still counts what it really gets, in case they lie.
Status Survey(archive* a, const UnpackLimits& limits) {
  int64_t declared = 0, entries = 0;
  archive_entry* entry = nullptr;
  for (;;) {
    auto more = NextHeader(a, limits, entries, entry);
    if (!more.ok()) return more.status();
    if (!*more) return Status::Ok();
    auto info = Inspect(entry, limits);
    if (!info.ok()) return info.status();
    if (info->type == AE_IFREG && archive_entry_size_is_set(entry)) {
      const int64_t size = archive_entry_size(entry);
      if (size < 0 || size > limits.max_bytes - declared) return TooBig(limits);
      declared += size;
    }
  }
}

// Opens (creating as needed) the directory holding the last component, never following a
// symlink on the way: O_NOFOLLOW on every step.
StatusOr<Fd> OpenParent(int root_fd, const std::vector<std::string>& parts, size_t depth,
                        const std::string& entry) {
  Fd dir(::dup(root_fd));
  if (dir.get() < 0) return ErrnoStatus("dup", "bundle root", errno);
  for (size_t i = 0; i < depth; ++i) {
    if (::mkdirat(dir.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
      return EntryErrno("create directory", entry, errno);
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
    auto more = NextHeader(a, limits, entries, entry);
    if (!more.ok()) return more.status();
    if (!*more) break;
    auto info = Inspect(entry, limits);
    if (!info.ok()) return info.status();
    const std::string& path = info->path;
    const std::vector<std::string>& parts = info->parts;
    if (parts.empty()) continue;  // "./" itself
    if (info->type == AE_IFDIR) {
      auto dir = OpenParent(root.get(), parts, parts.size(), path);
      if (!dir.ok()) return dir.status();
      continue;
    }
    if (info->type == AE_IFLNK) {
      links.push_back({path, parts, archive_entry_symlink(entry)});
      continue;
    }
    if (archive_entry_size_is_set(entry) &&
        total_bytes + archive_entry_size(entry) > limits.max_bytes) {
      return TooBig(limits);
    }

    auto dir = OpenParent(root.get(), parts, parts.size() - 1, path);
    if (!dir.ok()) return dir.status();
    mode_t mode = (archive_entry_perm(entry) & 0111) ? 0755 : 0644;
    Fd out(::openat(dir->get(), parts.back().c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (out.get() < 0) {
      if (errno == EEXIST) return Refuse(path, "duplicate entry");
      return EntryErrno("create", path, errno);
    }
    const void* block;
    size_t size;
    la_int64_t offset;
    for (;;) {
      int rc = archive_read_data_block(a, &block, &size, &offset);
      if (rc == ARCHIVE_EOF) break;
      if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
        return InvalidArgument("corrupt data in entry '" + path + "': " + ErrorText(a));
      }
      total_bytes += static_cast<int64_t>(size);
      if (total_bytes > limits.max_bytes ||
          offset + static_cast<int64_t>(size) > limits.max_bytes) {
        return TooBig(limits);
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
      return EntryErrno("create symlink", link.entry, errno);
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
  using ArchivePtr = std::unique_ptr<archive, ArchiveReadDeleter>;
  auto open = [&data](ArchivePtr& a) -> Status {
    a.reset(archive_read_new());
    archive_read_support_format_zip(a.get());
    archive_read_support_format_tar(a.get());
    archive_read_support_filter_gzip(a.get());
    if (archive_read_open_memory(a.get(), data.data(), data.size()) != ARCHIVE_OK) {
      return InvalidArgument(std::string("not a valid zip or tar.gz archive: ") +
                             ErrorText(a.get()));
    }
    return Status::Ok();
  };
  ArchivePtr a;
  THAW_RETURN_IF_ERROR(open(a));
  THAW_RETURN_IF_ERROR(Survey(a.get(), limits));
  THAW_RETURN_IF_ERROR(open(a));
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

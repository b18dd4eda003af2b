#include "sandbox/uid_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace thaw::sandbox {

std::string UidLease::Describe() const {
  std::string out;
  for (size_t i = 0; i < uids.size();) {
    size_t j = i;
    while (j + 1 < uids.size() && uids[j + 1] == uids[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(uids[i]) + "-" + std::to_string(uids[j]);
    i = j + 1;
  }
  return out;
}

StatusOr<UidLease> LeaseInstanceUids(const std::string& lock_dir, int64_t count) {
  if (count <= 0) return InvalidArgument("instance_uids must be at least 1");
  if (::mkdir(lock_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("create directory", lock_dir, errno);
  }
  UidLease lease;
  for (uid_t block = 0; block < kUidBlocks && static_cast<int64_t>(lease.uids.size()) < count;
       ++block) {
    const std::string path = lock_dir + "/uids-" + std::to_string(block) + ".lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) return ErrnoStatus("open", path, errno);
    // SAFETY: the lock lives as long as the open file description: the spawner inherits it,
    // and the kernel drops it when the last holder dies, so a killed server frees its uids.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) continue;  // another thaw server holds this block
      return ErrnoStatus("lock", path, errno);
    }
    const uid_t first = kInstanceUidBase + block * kUidBlockSize;
    for (uid_t u = first;
         u < first + kUidBlockSize && static_cast<int64_t>(lease.uids.size()) < count; ++u) {
      lease.uids.push_back(u);
    }
    lease.locks.push_back(std::move(fd));
  }
  if (static_cast<int64_t>(lease.uids.size()) < count) {
    return Status(StatusCode::kResourceExhausted,
                  "failed to lease " + std::to_string(count) +
                      " instance uids: other thaw servers on this host hold the rest of " +
                      std::to_string(kInstanceUidBase) + "-" +
                      std::to_string(kInstanceUidBase + kUidBlocks * kUidBlockSize - 1) +
                      " (lock files in " + lock_dir + ")");
  }
  return lease;
}

std::optional<uid_t> UidPool::Take() {
  if (free_.empty()) return std::nullopt;
  uid_t uid = free_.front();
  free_.pop_front();
  taken_.insert(uid);
  return uid;
}

void UidPool::Give(uid_t uid) {
  if (taken_.erase(uid) != 1) {
    std::fprintf(stderr, "thaw-spawner: uid %u given back but not taken\n", uid);
    std::abort();
  }
  free_.push_back(uid);
}

}  // namespace thaw::sandbox

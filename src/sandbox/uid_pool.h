// Instance uids for jailed instances (Isolation::kJail). A live instance runs as a uid no other
// live instance on the host has: its files, signals and, through the peer check on its Runtime
// API listener, its events are out of every other instance's reach, this server's or another
// thaw server's on the same host. A server leases whole blocks of uids host-wide (one flock per
// block, held for the server's life and dropped by the kernel when it dies); its spawner hands
// uids out from a free list and takes one back only once the instance's last process is reaped.
//
// Thread-safety: none; UidPool is owned by the single-threaded spawner.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace thaw::sandbox {

inline constexpr uid_t kInstanceUidBase = 200000;
inline constexpr uid_t kUidBlockSize = 1000;
inline constexpr uid_t kUidBlocks = 1000;  // uids 200000 to 1199999

struct UidLease {
  std::vector<UniqueFd> locks;  // one held flock per leased block
  std::vector<uid_t> uids;      // `count` of them, in order
  // "200000-200999", or several such ranges joined by commas.
  std::string Describe() const;
};

// Leases blocks of kUidBlockSize uids under `lock_dir` (made 0700 if missing) until `count` are
// covered. Fails when the host's blocks are all leased by other servers.
StatusOr<UidLease> LeaseInstanceUids(const std::string& lock_dir, int64_t count);

class UidPool {
 public:
  explicit UidPool(std::vector<uid_t> uids) : free_(uids.begin(), uids.end()) {}

  // The uid free longest (so a uid is reused as late as possible), or none when all are taken.
  std::optional<uid_t> Take();
  // Returns a uid Take gave out. A uid that was not taken is a broken invariant: abort.
  void Give(uid_t uid);
  size_t free() const { return free_.size(); }
  size_t taken() const { return taken_.size(); }

 private:
  std::deque<uid_t> free_;
  std::set<uid_t> taken_;
};

}  // namespace thaw::sandbox

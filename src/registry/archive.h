// Bundle archives: safe unpacking of zip and tar.gz uploads, and packing a folder (for the CLI).
// Unpacking never follows or creates a path out of the destination: absolute paths, `..`,
// device files, hard links and symlinks that resolve outside are refused, and size and
// entry-count limits stop decompression bombs. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace thaw::registry {

struct UnpackLimits {
  int64_t max_bytes = 1LL << 30;  // total uncompressed size
  int64_t max_entries = 20000;
};

// Unpacks `archive` (zip, tar, tar.gz) into `dest`, which must not exist yet. On error the
// partially written `dest` is removed and the status says which entry was refused and why.
Status Unpack(const std::string& archive, const std::string& dest, const UnpackLimits& limits);

// Packs the folder at `dir` (regular files, folders, symlinks) into a tar.gz held in memory.
StatusOr<std::string> PackDirectory(const std::string& dir);

}  // namespace thaw::registry

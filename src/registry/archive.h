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
  // Per entry: the path's bytes and folder levels (a file at depth N has N components), and
  // each component's bytes (NAME_MAX, what every Linux filesystem allows). Deeper or longer
  // paths only cost memory and time in every tool that walks the tree.
  int64_t max_path_bytes = 4096;
  int64_t max_depth = 64;
  int64_t max_name_bytes = 255;
};

// Unpacks `archive` (zip, tar, tar.gz) into `dest`, which must not exist yet. Every entry's
// path, type and declared size is checked in a first pass, before `dest` is created; the second
// pass writes, counting the bytes it actually gets. On error the partially written `dest` is
// removed and the status says which entry was refused and why (InvalidArgument), or, when the
// disk fills, InsufficientStorage.
Status Unpack(const std::string& archive, const std::string& dest, const UnpackLimits& limits);

// Packs the folder at `dir` (regular files, folders, symlinks) into a tar.gz held in memory.
StatusOr<std::string> PackDirectory(const std::string& dir);

}  // namespace thaw::registry

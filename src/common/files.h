// Small filesystem helpers over POSIX calls; every failure is an ErrnoStatus.
// Stateless and thread-safe.
#pragma once

#include <string>

#include "common/status.h"

namespace thaw {

StatusOr<std::string> ReadFile(const std::string& path);
// Writes to a temporary sibling, fsyncs and renames, so readers never see a partial file.
Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644);
Status MakeDirs(const std::string& path, int mode = 0755);
// Removes a tree without following symlinks. Missing path is not an error.
Status RemoveTree(const std::string& path);
bool PathExists(const std::string& path);

}  // namespace thaw

// Small filesystem helpers over POSIX calls; every failure is an ErrnoStatus.
// Stateless and thread-safe.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>

#include "common/status.h"

namespace thaw {

StatusOr<std::string> ReadFile(const std::string& path);
// Writes to a temporary sibling, fsyncs and renames, so readers never see a partial file.
Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644);
Status MakeDirs(const std::string& path, int mode = 0755);
// Removes a tree without following symlinks, restoring the owner's write bit on folders it must
// empty (deployed bundles are read-only). Works from one directory fd at a time, so memory and
// open fds stay constant however deep the tree is. Missing path is not an error.
Status RemoveTree(const std::string& path);
// Calls `visit(dir_fd, name, st)` for everything under `root` (not `root` itself), parents
// before children, never following a symlink (`st` is the entry's lstat). Names are relative to
// `dir_fd`: no path is built per level. One fd per level: trees deeper than `max_depth` are an
// error (archive unpacking caps bundles at 64 levels).
Status WalkTree(
    const std::string& root, int max_depth,
    const std::function<Status(int dir_fd, const char* name, const struct stat& st)>& visit);
bool PathExists(const std::string& path);

}  // namespace thaw

// TmpDisk: a jailed instance's /tmp as Lambda has it: an ext4 filesystem of its own size on a
// loop device over a sparse, already unlinked image file on the data dir's disk. What the
// function writes there is page cache the kernel writes back and reclaims under the instance's
// memory limit (not tmpfs pages that must stay in memory), so it does not use up memory_mb; it
// ends in ENOSPC at its size; and it is gone with the instance: the mount lives only in the
// instance's mount namespace, the loop device detaches itself (autoclear) when that mount goes,
// and the unlinked image's blocks are freed with it. A shell makes its disk ahead of the request
// (shell.h), so none of this is on the cold path. MakeTmpDisk and MountTmpDisk run in a shell
// (single-threaded, root); ProbeTmpDisks in thaw at start, before the spawner is forked.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace thaw::sandbox {

// Where mkfs.ext4 is found, or empty.
std::string FindMkfsExt4();

// Checks once, at start, that disks can be made here: root, a writable `dir` (created),
// /dev/loop-control and mkfs.ext4. OK, or why not (then /tmp stays a tmpfs).
Status ProbeTmpDisks(const std::string& dir);

// Makes a fresh ext4 filesystem of `bytes` in a sparse image file under `dir` (mkfs.ext4: no
// journal, no reserved blocks, lazy inode tables, no discard), attaches it to a free loop
// device (autoclear, direct I/O when the disk allows it) and unlinks the image. Returns the
// loop device's path and an open descriptor on it in `*fd` (close it once mounted, or the
// device stays attached).
StatusOr<std::string> MakeTmpDisk(const std::string& dir, int64_t bytes, int* fd);

// Mounts the disk at `target` (nosuid, nodev), empty and world-writable with the sticky bit,
// as a /tmp is.
Status MountTmpDisk(const std::string& device, const std::string& target);

}  // namespace thaw::sandbox

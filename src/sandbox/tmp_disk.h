// TmpDisk: a jailed instance's /tmp as Lambda has it: an ext4 filesystem of its own size on a
// loop device over a sparse, already unlinked image file on the data dir's disk. What the
// function writes there is page cache the kernel writes back and reclaims under the instance's
// memory limit (not tmpfs pages that must stay in memory), so it does not use up memory_mb; it
// ends in ENOSPC at its size; and it is gone with the instance: the mount lives only in the
// instance's mount namespace, the loop device detaches itself (autoclear) when that mount goes,
// and the unlinked image's blocks are freed with it. A shell makes its disk ahead of the request
// (shell.h), so none of this is on the cold path. mkfs.ext4 runs once per size, in the spawner
// (MakeTmpDiskTemplate); each shell copies that template's few written blocks into its own
// sparse image, which costs no fork, exec or fsync. MakeTmpDisk and MountTmpDisk run in a
// shell (single-threaded, root); ProbeTmpDisks in thaw at start, before the spawner is forked.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace thaw::sandbox {

// Where mkfs.ext4 is found, or empty.
std::string FindMkfsExt4();

// Checks once, at start, that disks can be made here: root, a writable `dir` (created),
// /dev/loop-control and mkfs.ext4. OK, or why not (then /tmp stays a tmpfs).
Status ProbeTmpDisks(const std::string& dir);

// A fresh, empty ext4 filesystem of `bytes` in a sparse image file under `dir` (mkfs.ext4: no
// journal, no reserved blocks, inode tables left unwritten, no discard), already unlinked: the
// template every disk of that size is copied from. Every copy has its UUID and directory hash
// seed; each lives in one instance's mount namespace, where neither is seen by another.
StatusOr<UniqueFd> MakeTmpDiskTemplate(const std::string& dir, int64_t bytes);

// Makes a fresh ext4 filesystem of `bytes` in a sparse image file under `dir`: a copy of the
// written blocks of `template_fd` (from MakeTmpDiskTemplate, of the same size), or, when it is
// -1, mkfs.ext4 as there. Attaches it to a free loop device (autoclear, direct I/O when the
// disk allows it) and unlinks the image. Returns the loop device's path and an open descriptor
// on it in `*fd` (close it once mounted, or the device stays attached).
StatusOr<std::string> MakeTmpDisk(const std::string& dir, int64_t bytes, int template_fd, int* fd);

// Mounts the disk at `target` (nosuid, nodev), empty and world-writable with the sticky bit,
// as a /tmp is. Its inode tables are holes of a fresh sparse image, so already zero: the
// kernel is told not to zero them again in the background (noinit_itable), which would write
// megabytes into every instance's image.
Status MountTmpDisk(const std::string& device, const std::string& target);

}  // namespace thaw::sandbox

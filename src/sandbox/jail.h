// Jail: what the spawner's child does to itself before exec when it isolates — a private root
// with the bundle read-only at /var/task and the runtimes at /opt/thaw, a size-limited /tmp (its
// own disk, or a tmpfs), a
// fresh /proc and minimal /dev; then an unprivileged uid/gid (as root) or thaw's own uid mapped
// into a user namespace (rootless), no new privileges and a seccomp filter; for `network: none`
// a loopback-only network namespace with the Runtime API listener made inside it. Runs in a
// single-threaded child just after clone() put it in new namespaces. Every failure reads
// "failed to OP on OBJECT: why".
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace thaw::sandbox {

struct JailSpec {
  std::string root;          // an empty directory to build the new root on (host path)
  std::string bundle_dir;    // host path, mounted read-only at /var/task
  std::string runtimes_dir;  // host path, mounted read-only at /opt/thaw
  int64_t tmp_bytes = 512LL << 20;
  // A loop device holding a fresh ext4 of tmp_bytes (tmp_disk.h), mounted at /tmp; empty: /tmp
  // is a tmpfs of tmp_bytes instead.
  std::string tmp_disk;
  uid_t uid = 65534;
  gid_t gid = 65534;
  // Rootless: the instance keeps the ids it has (thaw's, mapped into its user namespace).
  bool keep_ids = false;
  // Host device nodes (a GPU instance's /dev/nvidiaN, nvidiactl, nvidia-uvm) bound into the
  // jail's /dev under their own names by EnterJail.
  std::vector<std::string> devices;
  // Models: {host folder, absolute path in the jail}, bound read-only by EnterJail. The paths
  // were checked by models::MountPathProblem (never over what the jail itself provides).
  std::vector<std::pair<std::string, std::string>> mounts;
  // Isolation::kJail: the bundle, then each model, then each device, as detached mounts the
  // spawner cut from the host (CutTree); the caller pivoted into the root before it waited
  // (PivotIntoJail), so EnterJail only moves them in. Borrowed. Empty: EnterJail binds the host
  // paths and pivots itself (rootless: an unprivileged spawner cannot cut mounts).
  std::vector<int> trees;
};

inline constexpr char kTaskRoot[] = "/var/task";
inline constexpr char kRuntimeDir[] = "/opt/thaw";
// Where a `network: none` instance finds its Runtime API: its own loopback, so every such
// instance uses the same address (Lambda's own), and no other can reach it.
inline constexpr char kPrivateRuntimeApi[] = "127.0.0.1:9001";
inline constexpr uint16_t kPrivateRuntimeApiPort = 9001;

// A /proc/<pid>/mountinfo text with every mount's root reset to "/" and every super option
// holding a '/' dropped: what an instance may see of its mounts without learning host paths.
// EnterJail covers the runtime process's own mountinfo with it.
std::string HideHostPathsInMountInfo(std::string_view mountinfo);

// Rootless: maps thaw's own uid and gid onto themselves in the caller's fresh user namespace
// (the one mapping an unprivileged process may write) and denies setgroups. Must come first:
// until then the caller's ids are unmapped and it cannot create files.
Status MapOwnIds(uid_t uid, gid_t gid);
// In the caller's fresh network namespace: brings loopback up and listens on
// kPrivateRuntimeApi. The socket stays in this namespace wherever its descriptor goes.
StatusOr<UniqueFd> ListenOnPrivateLoopback();

// Builds the new root on spec.root: everything but the bundle. Done by a pre-created shell
// before any request arrives (bundle_dir is not needed yet).
Status PrepareJail(const JailSpec& spec);
// Pivots into the prepared root and detaches the host's: from then on only what is mounted
// into the root is reachable. A jailed shell does it before it waits (the unmount waits for
// an RCU grace period, and mounts are serialized host-wide: a burst of starts queued there).
Status PivotIntoJail(const std::string& root);
// Mounts the bundle at /var/task (and each model at its mount path): binds the host paths and
// pivots into the prepared root, or moves spec.trees into the root the caller pivoted into;
// then hides the mounts' host paths from the caller's own mountinfo and makes the root
// read-only. The caller is then in /var/task with the host filesystem out of reach.
Status EnterJail(const JailSpec& spec);
// The spawner's half of spec.trees: a detached copy of the host mount at `path` (recursive),
// read-only, nosuid and nodev; a device node's is nosuid and noexec instead.
StatusOr<UniqueFd> CutTree(const std::string& path, bool device);
// setgroups/setresgid/setresuid to the spec's ids (unless keep_ids), then PR_SET_NO_NEW_PRIVS.
Status DropPrivileges(const JailSpec& spec);
// The default seccomp filter, compiled to BPF: refuses what a function never needs (mount,
// kexec, bpf, ptrace, keyctl, module loading, reboot, namespace changes, ...) with EPERM, and
// io_uring (and clone3) with ENOSYS.
struct SeccompProgram {
  std::vector<sock_filter> code;
};
StatusOr<SeccompProgram> CompileSeccomp();
// Installs it on the calling thread (after DropPrivileges, which sets no_new_privs).
Status LoadSeccomp(const SeccompProgram& program);

}  // namespace thaw::sandbox

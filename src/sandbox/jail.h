// Jail: what the spawner's child does to itself before exec when thaw runs as root — a
// private root with the bundle read-only at /var/task and the runtimes at /opt/thaw, a
// size-limited /tmp, a fresh /proc and minimal /dev; then an unprivileged uid/gid, no new
// privileges and a seccomp filter. Runs in a single-threaded child just after clone() put it
// in new mount, PID, IPC and UTS namespaces. Every failure reads "failed to OP on OBJECT: why".
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace thaw::sandbox {

struct JailSpec {
  std::string root;          // an empty directory to build the new root on (host path)
  std::string bundle_dir;    // host path, mounted read-only at /var/task
  std::string runtimes_dir;  // host path, mounted read-only at /opt/thaw
  int64_t tmp_bytes = 512LL << 20;
  uid_t uid = 65534;
  gid_t gid = 65534;
};

inline constexpr char kTaskRoot[] = "/var/task";
inline constexpr char kRuntimeDir[] = "/opt/thaw";

// Builds the new root on spec.root: everything but the bundle. Done by a pre-created shell
// before any request arrives (bundle_dir is not needed yet).
Status PrepareJail(const JailSpec& spec);
// Mounts the bundle at /var/task and pivots into the prepared root; the caller is then in
// /var/task with the host filesystem out of reach.
Status EnterJail(const JailSpec& spec);
// setgroups/setresgid/setresuid to the spec's ids, then PR_SET_NO_NEW_PRIVS.
Status DropPrivileges(const JailSpec& spec);
// The default seccomp filter, compiled to BPF: refuses what a function never needs (mount,
// kexec, bpf, ptrace, keyctl, module loading, reboot, namespace changes, ...) with EPERM.
struct SeccompProgram {
  std::vector<sock_filter> code;
};
StatusOr<SeccompProgram> CompileSeccomp();
// Installs it on the calling thread (after DropPrivileges, which sets no_new_privs).
Status LoadSeccomp(const SeccompProgram& program);

}  // namespace thaw::sandbox

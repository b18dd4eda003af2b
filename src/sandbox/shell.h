// Shell: the spawner's children. A shell is a sandbox made ahead of a cold start: cloned into
// fresh namespaces, its cgroup joined and its root prepared, it waits for the spawn request it
// will turn into. ExecChild is the last stretch of every child, shell or plain fork: stdio, the
// jail, privileges, rlimits, seccomp, exec. Internal to src/sandbox: called by the
// single-threaded spawner, or in the child it just made.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/cgroup.h"
#include "sandbox/jail.h"
#include "sandbox/spawner.h"

namespace thaw::sandbox {

// What the spawner knows about isolation; set before it forks, read-only after.
struct SpawnerSetup {
  Isolation mode = Isolation::kPlain;
  std::string jail_root;
  std::string runtimes_dir;         // the same for every instance: shells mount it ahead of time
  int64_t tmp_bytes = 512LL << 20;  // of spawns that name no size
  size_t ready_shells = 2;          // kept ready per kind (SpawnerOptions::ready_shells)
  // Where shells make their /tmp disks (tmp_disk.h); empty: /tmp is a tmpfs (no loop devices
  // here, or rootless).
  std::string tmp_disk_dir;
  Cgroups* cgroups = nullptr;
  uid_t host_uid = 0;  // rootless: thaw's ids, the only ones its user namespaces can map
  gid_t host_gid = 0;
  // Without cgroups, rlimits stand in: RLIMIT_DATA (private writable memory) for memory_mb,
  // and, rootless, RLIMIT_NPROC for pids_max (counted per user namespace, so per instance).
  bool rlimit_memory = false;
  bool rlimit_pids = false;
  // Isolation::kJail where the kernel has open_tree and mount_setattr: shells pivot into their
  // root before they wait, and each start's bundle, models and devices come with its request
  // as detached mounts the spawner cut (JailSpec::trees); the spawner also denies the other
  // GPUs, as the pivoted shell no longer sees the cgroup tree.
  bool cut_trees = false;
  // cut_trees: thaw-shell (SpawnerOptions::shell_exe), opened O_PATH; -1: none. A prepared
  // shell execs it before it waits, so that the exec at the start tears down a small static
  // program's address space instead of the shell's copy of the spawner's (some 250 mappings of
  // thaw's libraries: most of a jailed start's CPU).
  int shell_exe = -1;
};

struct ChildSpec {
  std::string cwd;
  std::vector<std::string> argv, env;
  std::string bundle_dir, cgroup;
  CgroupLimits limits;
  uid_t uid = 65534;
  bool private_network = false;
  // GPU instances: host device nodes bound into the jail's /dev, and those its device cgroup
  // denies (see sandbox/gpu.h).
  std::vector<std::string> gpu_bind, gpu_deny;
  // Models: host folders bound read-only into the jail, each at the path of the same index.
  std::vector<std::string> mount_src, mount_dst;
  // A template (instance/template.h): the runtime gets the spawner's channel to it as fd
  // kTemplateFd, over which it says it is ready and is asked to fork.
  bool template_channel = false;
  int64_t tmp_bytes = 0;  // the size of its /tmp; 0: SpawnerSetup::tmp_bytes
  // SpawnerSetup::cut_trees: the detached mounts that came with the request (JailSpec::trees).
  std::vector<int> trees;
};

// How many detached mounts come with a request for `spec` (SpawnerSetup::cut_trees): the
// bundle, each model, each device; 0 without cut_trees.
size_t TreesFor(const SpawnerSetup& setup, const ChildSpec& spec);
// A GPU instance's device cgroup refuses the other GPUs' nodes before anything of the
// function runs (in the shell, still root; or, SpawnerSetup::cut_trees, by the spawner).
Status DenyOtherGpus(const SpawnerSetup& setup, const std::string& cgroup, const ChildSpec& spec);

// A spawn request as the spawner receives it: [op, cwd, argc, envc, argv..., env..., bundle,
// cgroup, mem, pids, cpu, uid, net, gpu_bind, gpu_deny, mount_src, mount_dst, template, tmp bytes]
// (the lists '\n'-joined); SpawnerClient::Spawn writes it.
StatusOr<ChildSpec> ParseSpawn(const std::vector<std::string>& fields);
// Where the uid is among those fields (the spawner fills it in); fields must have parsed.
size_t SpawnUidField(const std::vector<std::string>& fields);
// The '\n'-joined form of a list of paths in a spawn request, and back.
std::string JoinSpawnList(const std::vector<std::string>& items);
std::vector<std::string> SplitSpawnList(const std::string& field);

// Runs in the forked (or cloned) child: becomes the runtime process or exits 127 after
// reporting why through `status_fd` (close-on-exec: a successful exec closes it unwritten).
// A jailed child has already joined its cgroup (see RunShell). `template_fd` (-1: none) becomes
// the runtime's kTemplateFd, `channel_fd` (-1: none) its kChannelFd.
// `exec`: argv and envp made before a vfork-style clone (SpawnPlain), whose child shares the
// spawner's memory until it execs and so must not allocate on its way to the exec (what it
// allocated would stay in the spawner's heap); null: ExecChild makes them.
struct ExecArrays {
  explicit ExecArrays(const ChildSpec& spec);
  std::vector<char*> argv, envp;  // point into spec's strings, null-terminated
};
[[noreturn]] void ExecChild(const SpawnerSetup& setup, const ChildSpec& spec, int out_fd,
                            int err_fd, int status_fd, const SeccompProgram* seccomp,
                            int template_fd = -1, int channel_fd = -1,
                            const ExecArrays* exec = nullptr);

// A pre-created sandbox: a child already in fresh namespaces and in its own cgroup (joining a
// cgroup v1 hierarchy takes tens of milliseconds, and a network namespace about two, so both
// happen before any request needs them), waiting on `control` for the spawn request it will
// turn into.
struct Shell {
  pid_t pid = 0;
  int control = -1;
  std::string cgroup;
  // What its cgroup was made with: the limits the last start of its kind asked for, so a start
  // asking the same (a burst of one function) writes none of them (SetLimits) on its way.
  CgroupLimits limits;
  bool private_network = false;
  int64_t tmp_bytes = 0;  // the size of the /tmp it prepares
  // The spawner's template of a disk of that size (MakeTmpDiskTemplate), which the shell
  // copies; -1: the shell runs mkfs.ext4 itself. Borrowed: the spawner keeps it open.
  int tmp_template = -1;
};

// Clones a shell with the namespaces `setup` and `private_network` ask for, and a /tmp of
// `tmp_bytes` (its own disk when setup.tmp_disk_dir is set, a copy of `tmp_template`), in a
// cgroup with `limits`.
StatusOr<Shell> StartShell(const SpawnerSetup& setup, bool private_network, int64_t tmp_bytes,
                           int tmp_template = -1, const CgroupLimits& limits = {});

// The rest of a prepared shell's life: waits on `control` for the spawn request, hands the
// private Runtime API listener (`api`, may be invalid) over, then ExecChild. Runs in the shell
// itself, or in thaw-shell (SpawnerSetup::shell_exe), which a prepared shell became.
// `check` (may be null) refuses the request before anything of it runs (DenyOtherGpus).
using SpawnCheck = Status (*)(const SpawnerSetup&, const std::string& cgroup, const ChildSpec&);
[[noreturn]] void AwaitSpawn(const SpawnerSetup& setup, const std::string& cgroup, int control,
                             UniqueFd api, const SeccompProgram& seccomp, SpawnCheck check);

// thaw-shell's main: argv is [name, control fd, listener fd or -1, seccomp fd] as a prepared
// jailed shell passes them (the seccomp fd a memfd holding the compiled filter).
int ShellExeMain(int argc, char** argv);

// Waits for a child's exec: EOF on `status_fd` means it exec'd, bytes are its error.
std::string AwaitExec(int status_fd);

// Tries, once, what every rootless shell will do: user, mount, PID, IPC, UTS and network
// namespaces, the id maps, the new root and loopback. OK, or why the kernel refuses.
Status ProbeUserNamespaces(const SpawnerSetup& setup);

}  // namespace thaw::sandbox

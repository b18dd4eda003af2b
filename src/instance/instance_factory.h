// InstanceFactory: how the pool makes a new instance. `exec` starts a fresh runtime in a
// ready-made sandbox shell (a full cold start); `fork` asks a version's template, a runtime
// that already ran the function's init, for a child (template.h); `restore` execs node from a
// heap snapshot taken after the function's init (nodejs: a runtime with threads cannot fork).
// The pool builds one request and does not care which factory serves it. Stateless beyond the
// spawner they borrow; Start may be called from any thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>

#include "sandbox/spawner.h"

namespace thaw::instance {

// How the instance that serves a call came to be: it was there (warm), or it was started for
// it, forked from a template, restored from a snapshot, or from nothing (full).
// X-Thaw-Start-Kind, the REPORT line, meter records, usage and /metrics.
enum class StartKind { kWarm, kFork, kRestore, kFull };

std::string_view StartKindName(StartKind kind);  // "warm" | "fork" | "restore" | "full"

class InstanceFactory {
 public:
  virtual ~InstanceFactory() = default;
  virtual StartKind kind() const = 0;
  // Starts an instance for `request` and returns at once; `done` runs as SpawnerClient::Spawn
  // describes. A fork uses the request's environment, log pipes and limits; the template
  // already is in its sandbox.
  virtual void Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) = 0;
};

class ExecFactory final : public InstanceFactory {
 public:
  explicit ExecFactory(sandbox::SpawnerClient* spawner) : spawner_(spawner) {}
  StartKind kind() const override { return StartKind::kFull; }
  void Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) override;

 private:
  sandbox::SpawnerClient* const spawner_;
};

class ForkFactory final : public InstanceFactory {
 public:
  ForkFactory(sandbox::SpawnerClient* spawner, pid_t template_pid)
      : spawner_(spawner), template_pid_(template_pid) {}
  StartKind kind() const override { return StartKind::kFork; }
  void Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) override;

 private:
  sandbox::SpawnerClient* const spawner_;
  const pid_t template_pid_;
};

// Where a jailed instance sees its version's snapshot folder (bound read-only).
inline constexpr char kSnapshotMount[] = "/var/snapshot";
inline constexpr char kSnapshotBlob[] = "snapshot.blob";

// Starts the request's runtime (argv[0], node) from the blob in `host_dir` instead of its
// script: `node --snapshot-blob BLOB`. Otherwise a full start: its own uid, cgroup, identity.
class RestoreFactory final : public InstanceFactory {
 public:
  RestoreFactory(sandbox::SpawnerClient* spawner, std::string host_dir)
      : spawner_(spawner), host_dir_(std::move(host_dir)) {}
  StartKind kind() const override { return StartKind::kRestore; }
  void Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) override;

 private:
  sandbox::SpawnerClient* const spawner_;
  const std::string host_dir_;
};

}  // namespace thaw::instance

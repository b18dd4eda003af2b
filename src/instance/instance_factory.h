// InstanceFactory: how the pool makes a new instance. `exec` starts a fresh runtime in a
// ready-made sandbox shell (a full cold start); `fork` asks a version's template, a runtime
// that already ran the function's init, for a child (template.h). `restore` (a snapshot) comes
// later. The pool builds one request and does not care which factory serves it. Stateless
// beyond the spawner they borrow; Start may be called from any thread.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "sandbox/spawner.h"

namespace thaw::instance {

// How the instance that serves a call came to be: it was there (warm), or it was started for
// it, forked from a template or from nothing (full). X-Thaw-Start-Kind, meter records, usage.
enum class StartKind { kWarm, kFork, kFull };

std::string_view StartKindName(StartKind kind);  // "warm" | "fork" | "full"

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

}  // namespace thaw::instance

// Launcher: the pool's narrow seam to the processes behind its instances. A pool asks it to
// start an instance and to kill a process, and hears back through calls on itself: the start
// through FunctionPool::OnStarted (the spawner path answers inside the pool, launch.cc), the
// exit through PoolManager::OnExit. SpawnerLauncher is the real one (today's path: templates,
// instance factories, the spawner); unit tests use one that records the asks and answers them
// when the test says, to order a pool's races by hand (tests/pool_race_test.cc).
// Owned by the server beside the PoolContext. Thread-safe: called without the pool's lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

namespace thaw::sandbox {
class SpawnerClient;
}

namespace thaw::pool {

class FunctionPool;

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts instance `instance_id` of `pool`; the pool hears how it went (see above).
  virtual void Launch(const std::shared_ptr<FunctionPool>& pool, uint64_t instance_id) = 0;
  // Kills the process tree of an instance; its exit event follows.
  virtual void Kill(pid_t pid) = 0;
};

class SpawnerLauncher final : public Launcher {
 public:
  explicit SpawnerLauncher(sandbox::SpawnerClient* spawner) : spawner_(spawner) {}
  void Launch(const std::shared_ptr<FunctionPool>& pool, uint64_t instance_id) override;
  void Kill(pid_t pid) override;

 private:
  sandbox::SpawnerClient* const spawner_;
};

}  // namespace thaw::pool

#include "pool/launcher.h"

#include "pool/pool.h"
#include "sandbox/spawner.h"

namespace thaw::pool {

void SpawnerLauncher::Launch(const std::shared_ptr<FunctionPool>& pool, uint64_t instance_id) {
  pool->Spawn(instance_id);
}

void SpawnerLauncher::Kill(pid_t pid) { spawner_->Kill(pid); }

}  // namespace thaw::pool

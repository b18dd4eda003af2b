#include "instance/instance_factory.h"

namespace thaw::instance {

std::string_view StartKindName(StartKind kind) {
  switch (kind) {
    case StartKind::kWarm:
      return "warm";
    case StartKind::kFork:
      return "fork";
    case StartKind::kRestore:
      return "restore";
    case StartKind::kFull:
      break;
  }
  return "full";
}

void ExecFactory::Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) {
  spawner_->Spawn(request, std::move(done));
}

void ForkFactory::Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) {
  sandbox::ForkRequest fork;
  fork.template_pid = template_pid_;
  fork.env = request.env;
  fork.stdout_fd = request.stdout_fd;
  fork.stderr_fd = request.stderr_fd;
  fork.channel_fd = request.channel_fd;
  fork.limits = request.limits;
  spawner_->Fork(fork, std::move(done));
}

void RestoreFactory::Start(const sandbox::SpawnRequest& request, sandbox::SpawnDone done) {
  sandbox::SpawnRequest restore = request;
  std::string blob = host_dir_ + "/" + kSnapshotBlob;
  // Isolated instances see the folder through a bind of their own; plain ones at its host path.
  if (spawner_->isolated()) {
    restore.mounts.emplace_back(host_dir_, kSnapshotMount);
    blob = std::string(kSnapshotMount) + "/" + kSnapshotBlob;
  }
  restore.argv = {request.argv.at(0), "--snapshot-blob", std::move(blob)};
  spawner_->Spawn(restore, std::move(done));
}

}  // namespace thaw::instance

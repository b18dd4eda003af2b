#include "instance/instance_factory.h"

namespace thaw::instance {

std::string_view StartKindName(StartKind kind) {
  switch (kind) {
    case StartKind::kWarm:
      return "warm";
    case StartKind::kFork:
      return "fork";
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

}  // namespace thaw::instance

// FunctionPool, the nodejs `restore` start kind (instance_factory.h): a nodejs version's
// template is a V8 heap snapshot taken after the function's init, built by
// `node --build-snapshot runtime.cjs` jailed with the function's limits (StartTemplate in
// launch.cc starts it), kept in the version's own folder under the data dir, never shared; an
// instance then execs `node --snapshot-blob BLOB`. Runs on the spawner client's reply thread
// and the exit-event thread, as launch.cc does.
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>

#include "instance/instance_factory.h"
#include "instance/template.h"
#include "logs/log_store.h"
#include "meter/meter.h"
#include "pool/pool.h"
#include "pool/pool_internal.h"
#include "sandbox/spawner.h"

namespace thaw::pool {
namespace {

// Node writes the snapshot to a path when its entry has finished, so the build runs under a
// shell: node writes to a file in the sandbox's own /tmp (the jail's root is read-only) and
// its output goes to stderr (the log); then cat copies the blob to stdout, the file thaw
// opened. $1 is node, $2 runtime.cjs. Exit status 3 is runtime.cjs's "cannot be in a snapshot".
constexpr char kBuildScript[] =
    "t=$(mktemp /tmp/thaw-snapshot.XXXXXX) || exit 1\n"
    "\"$1\" --snapshot-blob \"$t\" --build-snapshot \"$2\" >&2\n"
    "s=$?\n"
    "if [ $s -eq 0 ]; then cat \"$t\"; s=$?; fi\n"
    "rm -f \"$t\"\n"
    "exit $s\n";
constexpr int kUnsupportedStatus = 3;

// A function name as one path component: bytes outside [A-Za-z0-9._-] as %XX, so that two
// names never share a folder.
std::string PathComponent(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '-' || c == '_' || (c == '.' && !out.empty())) {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace

std::string SnapshotDirOf(const std::string& root, const std::string& function, int64_t version) {
  return root + "/" + PathComponent(function) + "/" + std::to_string(version);
}

std::string FunctionPool::SnapshotDir() const {
  return SnapshotDirOf(ctx_->snapshots_dir, version_->function, version_->version);
}

StatusOr<std::vector<std::string>> FunctionPool::SnapshotBuildArgv() const {
  return std::vector<std::string>{"/bin/sh",    "-c",
                                  kBuildScript, "thaw-snapshot",
                                  ctx_->node,   RuntimeDir() + "/nodejs/runtime.cjs"};
}

void FunctionPool::OnSnapshotSpawned(StatusOr<sandbox::Spawned> spawned,
                                     std::shared_ptr<SnapshotBuild> build) {
  if (!spawned.ok()) {
    ::unlink(build->tmp.c_str());
    if (template_->InitFailed(spawned.status().message())) {
      ctx_->logs->Append(version_->function, "", "platform",
                         "TEMPLATE_REPORT Status: error\t" + spawned.status().message() +
                             " (instances start fresh)");
    }
    return;
  }
  const pid_t pid = spawned->pid;
  build->pid.store(pid);
  ctx_->manager->RegisterExitHook(
      pid, [self = shared_from_this(), build](const sandbox::ExitEvent& exit) {
        self->OnSnapshotBuilt(*build, exit);
      });
  // Its init timed out before the spawn was answered.
  if (template_->state() != instance::Template::State::kStarting) ctx_->spawner->Kill(pid);
}

void FunctionPool::OnSnapshotBuilt(const SnapshotBuild& build, const sandbox::ExitEvent& exit) {
  const std::string& function = version_->function;
  const int64_t init_us = ctx_->clock->MonoMicros() - build.started_us;
  const std::string blob = SnapshotDir() + "/" + instance::kSnapshotBlob;
  struct stat st {};
  const bool built = WIFEXITED(exit.wait_status) && WEXITSTATUS(exit.wait_status) == 0 &&
                     ::stat(build.tmp.c_str(), &st) == 0 && st.st_size > 0;
  std::string why;
  if (!built) {
    why = WIFEXITED(exit.wait_status) && WEXITSTATUS(exit.wait_status) == kUnsupportedStatus
              ? "no snapshot: the function's init cannot be in one (the line above says why)"
              : "snapshot build failed: " + sandbox::DescribeWaitStatus(exit.wait_status);
  } else if (::rename(build.tmp.c_str(), blob.c_str()) != 0) {
    why = ErrnoStatus("rename", blob, errno).message();
  }
  if (!why.empty()) {
    ::unlink(build.tmp.c_str());
    if (template_->InitFailed(why)) {
      spdlog::warn("{} version {}: no snapshot, instances start fresh: {}", function,
                   version_->version, why);
      ctx_->logs->Append(function, "", "platform",
                         "TEMPLATE_REPORT Status: error\t" + why + " (instances start fresh)");
    }
    return;
  }
  // Its init timed out meanwhile (the blob stays: the next build replaces it).
  if (!template_->Ready(exit.pid, init_us)) return;
  meter::Record rec = InitRecord(init_us, meter::kTemplateInitStatus);
  if (ctx_->meter != nullptr) ctx_->meter->Add(std::move(rec));
  ctx_->logs->Append(function, "", "platform",
                     "TEMPLATE_REPORT Init Duration: " + FormatMs(init_us) +
                         " ms\tMemory Size: " + std::to_string(version_->manifest.memory_mb) +
                         " MB\tSnapshot: " + std::to_string(st.st_size) + " bytes");
}

void FunctionPool::LaunchFromSnapshot(const InstancePtr& inst, pid_t template_pid) {
  const std::string dir = SnapshotDir();
  struct stat st {};
  if (::stat((dir + "/" + instance::kSnapshotBlob).c_str(), &st) != 0 || st.st_size == 0) {
    // Gone (removed by hand, a disk cleanup): this start is a full one, and the snapshot is
    // built again for the cold starts that follow, as when a python template ends.
    bool unusable = false;
    const std::string why = "its snapshot blob is gone";
    if (template_->Ended(template_pid, why, &unusable)) {
      ctx_->logs->Append(version_->function, "", "platform",
                         "TEMPLATE_REPORT Status: ended\t" + why +
                             (unusable ? " (too often: instances start fresh)"
                                       : " (the next cold start makes a new one)"));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      inst->fork_failed = true;
      inst->start_kind = instance::StartKind::kFull;
    }
    if (!unusable) StartTemplate();  // in the background; this start does not wait for it
    return LaunchInstance(inst);
  }
  inst->start_kind = instance::StartKind::kRestore;
  instance::RestoreFactory factory(ctx_->spawner, dir);
  StartWith(inst, factory);
}

}  // namespace thaw::pool

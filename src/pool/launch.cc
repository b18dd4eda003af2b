// Starting an instance (argv, the Lambda environment, the Runtime API listener, the spawn) and
// reading what it prints into the log store.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <tuple>

#include "common/files.h"
#include "common/ids.h"
#include "common/tenant.h"
#include "common/unique_fd.h"
#include "instance/instance_factory.h"
#include "instance/template.h"
#include "logs/log_store.h"
#include "meter/meter.h"
#include "models/names.h"
#include "pool/lambda_env.h"
#include "pool/launcher.h"
#include "pool/pool.h"
#include "pool/pool_internal.h"
#include "sandbox/jail.h"
#include "sandbox/spawner.h"

namespace thaw::pool {
namespace {

constexpr size_t kInitLogTail = 4096;
constexpr size_t kMaxLogLine = 64 * 1024;

// Who may connect to an instance's Runtime API listener on the host's loopback: jailed
// instances each have a uid of their own (the spawner's choice, sandbox/uid_pool.h); rootless
// ones all share thaw's, so the check there is by process.
PeerCheck PeerCheckFor(sandbox::Isolation mode) {
  switch (mode) {
    case sandbox::Isolation::kJail:
      return {PeerCheck::Kind::kUid};
    case sandbox::Isolation::kRootless:
      return {PeerCheck::Kind::kProcessTree};
    case sandbox::Isolation::kPlain:
      break;
  }
  return {};
}

// Once an instance is spawned: serves the listener a network: none instance made inside its
// namespace, or names the process and uid a host listener admits. Returns the endpoint's key
// for RuntimeEndpoints::Close.
StatusOr<std::string> AttachRuntimeApi(RuntimeEndpoints& endpoints,
                                       std::shared_ptr<FunctionPool> pool, uint64_t instance_id,
                                       bool private_network, const std::string& address,
                                       PeerCheck check, sandbox::Spawned& spawned, int shard) {
  if (private_network) {
    return endpoints.Adopt(std::move(pool), instance_id, std::move(spawned.runtime_api), shard);
  }
  if (check.kind != PeerCheck::Kind::kAnyone) endpoints.SetPeer(address, spawned.pid, spawned.uid);
  return address;
}

// Reads what a template prints (its init's output) into the function's log. Owns the pipe's
// read end; ends at EOF, when the template is gone.
class TemplateLog : public std::enable_shared_from_this<TemplateLog> {
 public:
  TemplateLog(asio::any_io_executor ex, UniqueFd fd, logs::LogStore* logs, std::string function)
      : desc_(ex, fd.release()), logs_(logs), function_(std::move(function)) {}

  // Waits for output, then reads it into a buffer on the stack: an idle template (one per
  // deployed version) holds no read buffer.
  void Read() {
    desc_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       char buf[4096];
                       ssize_t n = -1;
                       if (!ec) {
                         do {
                           n = ::read(self->desc_.native_handle(), buf, sizeof(buf));
                         } while (n < 0 && errno == EINTR);
                         if (n < 0 && errno == EAGAIN) return self->Read();
                       }
                       if (n <= 0) {  // EOF: the template is gone (or the read failed)
                         if (!self->partial_.empty()) self->Emit(std::move(self->partial_));
                         return;
                       }
                       self->partial_.append(buf, static_cast<size_t>(n));
                       size_t start = 0, nl;
                       while ((nl = self->partial_.find('\n', start)) != std::string::npos) {
                         self->Emit(self->partial_.substr(start, nl - start));
                         start = nl + 1;
                       }
                       self->partial_.erase(0, start);
                       if (self->partial_.size() > kMaxLogLine) {
                         self->Emit(std::move(self->partial_));
                       }
                       self->Read();
                     });
  }

 private:
  void Emit(std::string line) {
    partial_.clear();
    logs_->Append(function_, "", "stdout", std::move(line));
  }

  asio::posix::stream_descriptor desc_;
  logs::LogStore* const logs_;
  const std::string function_;
  std::string partial_;
};

// Whether a cpp bundle's bootstrap serves as a template: the C++ SDK does since it names
// THAW_TEMPLATE_FD (runtimes/cpp/thaw_runtime.cc); one built with an older SDK would only
// fail its template's init. Reads the file once per version, when its template is first made.
bool BootstrapServesTemplates(const std::string& bundle_dir) {
  static constexpr char kNeedle[] = "THAW_TEMPLATE_FD";  // with its NUL, as the SDK stores it
  const std::string path = bundle_dir + "/bootstrap";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size < 1) return false;
  const size_t size = static_cast<size_t>(st.st_size);
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (data == MAP_FAILED) return false;
  const bool found = ::memmem(data, size, kNeedle, sizeof(kNeedle)) != nullptr;
  ::munmap(data, size);
  return found;
}

}  // namespace

std::shared_ptr<instance::Template> FunctionPool::TemplateFor(PoolContext* ctx,
                                                              const registry::Version& v) {
  const registry::Manifest& m = v.manifest;
  if (!ctx->templates || ctx->manager == nullptr || m.template_off ||
      (m.runtime != registry::Runtime::kPython3 && m.runtime != registry::Runtime::kNodejs &&
       m.runtime != registry::Runtime::kCpp) ||
      m.network == registry::Network::kNone || m.gpu.count > 0) {
    return nullptr;
  }
  return ctx->manager->TemplateOf(v.function, v.version);
}

// The version's models (models/store.h), each bound read-only at its mount path.
void FunctionPool::AddModelMounts(sandbox::SpawnRequest& req) const {
  for (const registry::ModelRef& model : version_->manifest.models) {
    req.mounts.emplace_back(ctx_->models_dir + "/" + model.digest, model.mount);
  }
}

bool FunctionPool::TemplateAllowed() const { return template_ != nullptr; }

void FunctionPool::Prewarm() {
  if (template_ == nullptr) return;
  // Nobody waits for this template yet: it takes one of the node's slots for such starts
  // (instance::TemplateStarts), or waits for one.
  instance::TemplateStarts& starts = ctx_->manager->template_starts();
  if (starts.Enter([self = shared_from_this()] {
        asio::post(self->ctx_->executor, [self] { self->StartTemplateInSlot(); });
      })) {
    StartTemplateInSlot();
  }
}

void FunctionPool::StartTemplateInSlot() {
  instance::TemplateStarts* starts = &ctx_->manager->template_starts();
  bool gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    gone = shut_down_ || draining_;  // deleted or replaced while it waited for its slot
  }
  if (!gone) StartTemplate();
  // The slot is held while the version's template inits: this start's, or one a call began.
  if (gone || !template_->WhenSettled([starts] { starts->Leave(); })) starts->Leave();
}

// The template: the runtime as an instance would start, told by THAW_TEMPLATE_FD to init and
// then wait to be forked; for nodejs, `node --build-snapshot`, which inits and writes the heap
// to its stdout (restore.cc). No Runtime API: its init errors reach callers through the full
// cold start that follows (reported as today).
void FunctionPool::StartTemplate() {
  // Without its bundle and models there is nothing to start yet; a fetch that fails leaves the
  // template unstarted, and the instances that need them fail their start saying why.
  if (!ArtifactsHere([self = shared_from_this()](const Status& st) {
        if (st.ok()) self->StartTemplate();
      })) {
    return;
  }
  if (!template_->BeginStart()) return;
  if (version_->manifest.runtime == registry::Runtime::kCpp &&
      !BootstrapServesTemplates(version_->bundle_dir)) {
    // Not the function's failure: nothing to report in its log, and it never changes.
    (void)template_->InitFailed(
        "its bootstrap was built without template support (a thaw C++ SDK from before "
        "templates): instances start fresh; rebuild it to fork them");
    return;
  }
  auto fail = [this](const std::string& why) {
    if (template_->InitFailed(why)) {
      ctx_->logs->Append(version_->function, "", "platform",
                         "TEMPLATE_REPORT Status: error\t" + why + " (instances start fresh)");
    }
  };
  const bool snapshot = version_->manifest.runtime == registry::Runtime::kNodejs;
  auto argv = snapshot ? SnapshotBuildArgv() : BuildArgv();
  if (!argv.ok()) return fail(argv.status().message());
  std::shared_ptr<SnapshotBuild> build;
  UniqueFd blob;
  if (snapshot) {
    const std::string dir = SnapshotDir();
    // 0755/0644: each jailed instance has a uid of its own, and reads the blob through a
    // read-only bind of this folder; on the host it lies in the data dir (0700).
    if (Status st = MakeDirs(dir, 0755); !st.ok()) return fail(st.message());
    build = std::make_shared<SnapshotBuild>();
    build->tmp = dir + "/" + instance::kSnapshotBlob + ".tmp-" + RandomHex(4);
    blob = UniqueFd(::open(build->tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!blob.valid()) return fail(ErrnoStatus("create", build->tmp, errno).message());
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    return fail(ErrnoStatus("create pipe", "template", errno).message());
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  sandbox::SpawnRequest req;
  req.argv = std::move(*argv);
  req.env = BuildEnv("");
  if (!snapshot) req.env.push_back("THAW_TEMPLATE_FD=" + std::to_string(sandbox::kTemplateFd));
  req.cwd = version_->bundle_dir;
  req.bundle_dir = version_->bundle_dir;
  const int64_t memory_mb = version_->manifest.memory_mb;
  req.limits.memory_bytes = memory_mb << 20;
  req.limits.pids_max = ctx_->pids_max;
  req.limits.cpu_weight = sandbox::CpuWeightForMemory(memory_mb);
  req.cgroup =
      version_->function + "-" + std::to_string(version_->version) + "-template-" + RandomHex(4);
  req.template_channel = !snapshot;
  // Its forks share its /tmp (docs/sandbox.md, "Forked siblings").
  req.tmp_bytes = version_->manifest.ephemeral_storage_mb << 20;
  AddModelMounts(req);  // its forks inherit its mounts
  req.stdout_fd = snapshot ? blob.get() : out[1];
  req.stderr_fd = out[1];
  std::make_shared<TemplateLog>(ctx_->executor, UniqueFd(out[0]), ctx_->logs, version_->function)
      ->Read();
  const int64_t started_us = ctx_->clock->MonoMicros();
  if (snapshot) {
    build->started_us = started_us;
    ctx_->spawner->Spawn(req, [self = shared_from_this(), build](StatusOr<sandbox::Spawned> s) {
      self->OnSnapshotSpawned(std::move(s), build);
    });
  } else {
    ctx_->spawner->Spawn(
        req, [self = shared_from_this(), started_us](StatusOr<sandbox::Spawned> spawned) {
          self->OnTemplateSpawned(std::move(spawned), started_us);
        });
  }
  ::close(out[1]);
  blob.reset();  // the spawner has its own copy now
  // An init that never ends must not keep instances waiting for it.
  auto timer = std::make_shared<asio::steady_timer>(
      ctx_->executor, std::chrono::microseconds(ctx_->init_timeout_us));
  timer->async_wait([self = shared_from_this(), timer, build](boost::system::error_code ec) {
    if (ec) return;
    const std::string why = "template init did not finish within " +
                            std::to_string(self->ctx_->init_timeout_us / 1000) + " ms";
    const bool first = self->template_->InitFailed(why);
    if (build != nullptr && build->pid.load() > 0) self->ctx_->spawner->Kill(build->pid.load());
    if (first) {
      self->ctx_->logs->Append(
          self->version_->function, "", "platform",
          "TEMPLATE_REPORT Status: error\t" + why + " (instances start fresh)");
    }
  });
}

void FunctionPool::OnTemplateSpawned(StatusOr<sandbox::Spawned> spawned, int64_t started_us) {
  const std::string& function = version_->function;
  if (!spawned.ok()) {
    if (template_->InitFailed(spawned.status().message())) {
      spdlog::warn("{} version {}: no template, instances start fresh: {}", function,
                   version_->version, spawned.status().message());
      ctx_->logs->Append(function, "", "platform",
                         "TEMPLATE_REPORT Status: error\t" + spawned.status().message() +
                             " (instances start fresh)");
    }
    return;
  }
  const pid_t pid = spawned->pid;
  const int64_t init_us = ctx_->clock->MonoMicros() - started_us;
  ctx_->manager->RegisterExitHook(
      pid, [tpl = template_, logs = ctx_->logs, function, pid](const sandbox::ExitEvent& exit) {
        bool unusable = false;
        const std::string how = sandbox::DescribeWaitStatus(exit.wait_status);
        if (!tpl->Ended(pid, how, &unusable)) return;  // ended on purpose, or replaced
        logs->Append(function, "", "platform",
                     "TEMPLATE_REPORT Status: ended\t" + how +
                         (unusable ? " (too often: instances start fresh)"
                                   : " (the next cold start makes a new one)"));
      });
  if (!template_->Ready(pid, init_us)) {  // its init timed out meanwhile
    ctx_->spawner->Kill(pid);
    return;
  }
  // Template init is billed as Lambda bills the INIT phase: its own usage line (init_gb_s).
  meter::Record rec = InitRecord(init_us, meter::kTemplateInitStatus);
  if (ctx_->meter != nullptr) ctx_->meter->Add(std::move(rec));
  ctx_->logs->Append(function, "", "platform",
                     "TEMPLATE_REPORT Init Duration: " + FormatMs(init_us) + " ms\tMemory Size: " +
                         std::to_string(version_->manifest.memory_mb) + " MB");
}

void FunctionPool::LaunchFromTemplate(const InstancePtr& inst) {
  // Dropped by the keep-alive plan: made again, and this instance forks from it (the init it
  // waits for is the one it would have run itself, and the template stays for the next ones).
  if (template_->dropped()) StartTemplate();
  // No template (not made since the server started, or it ended): one is made for the cold
  // starts that follow, and this one starts fresh rather than wait for it.
  if (template_->state() == instance::Template::State::kNone) {
    StartTemplate();
    inst->fork_failed = true;
    return LaunchInstance(inst);
  }
  // While the template inits (made at deploy or at server start), the instance waits for it
  // rather than doing the same init.
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->awaits_template = true;
  }
  const bool waits = template_->WhenSettled([self = shared_from_this(), inst] {
    bool stopped;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      inst->awaits_template = false;
      stopped = inst->lifecycle != Lifecycle::kSpawning;
      // No template after all: a full start, whose init is timed from now.
      if (self->template_->ready_pid() <= 0) inst->spawned_us = self->ctx_->clock->MonoMicros();
    }
    if (stopped) return self->LaunchFailed(inst, Internal("stopped before it started"));
    self->LaunchInstance(inst);
  });
  if (waits) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->awaits_template = false;
  }
  const pid_t template_pid = template_->TakeFork();
  if (template_pid <= 0) {
    inst->fork_failed = true;
    return LaunchInstance(inst);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->holds_fork = true;
  }
  if (version_->manifest.runtime == registry::Runtime::kNodejs) {
    return LaunchFromSnapshot(inst, template_pid);
  }
  inst->start_kind = instance::StartKind::kFork;
  instance::ForkFactory factory(ctx_->spawner, template_pid);
  StartWith(inst, factory);
}

void FunctionPool::ForkFailed(const InstancePtr& inst, const Status& why) {
  const std::string& message = why.message();
  // A refusal (threads) holds for every fork of this version; a template that is gone is
  // replaced at the next cold start (its exit event says so).
  if (message.starts_with("template refused to fork") && template_->Refused(message)) {
    spdlog::warn("{} version {}: not forking instances: {}", version_->function, version_->version,
                 message);
    ctx_->logs->Append(version_->function, "", "platform",
                       "TEMPLATE_REPORT Status: refused\t" + message + " (instances start fresh)");
  }
  std::string endpoint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    endpoint.swap(inst->endpoint);
    if (inst->holds_fork) template_->ForkGone();
    inst->holds_fork = false;
    inst->fork_failed = true;
    inst->start_kind = instance::StartKind::kFull;
  }
  if (!endpoint.empty()) ctx_->endpoints->Close(endpoint);
  LaunchInstance(inst);
}

std::string FunctionPool::TaskRoot() const {
  return ctx_->spawner->isolated() ? sandbox::kTaskRoot : version_->bundle_dir;
}

std::string FunctionPool::RuntimeDir() const {
  return ctx_->spawner->isolated() ? sandbox::kRuntimeDir : ctx_->runtimes_dir;
}

StatusOr<std::vector<std::string>> FunctionPool::BuildArgv() const {
  switch (version_->manifest.runtime) {
    case registry::Runtime::kPython3:
      // -S -E -s: no site import, no PYTHON* variables, no user site (see bootstrap.py).
      return std::vector<std::string>{ctx_->python, "-S", "-E", "-s",
                                      RuntimeDir() + "/python3/bootstrap.py"};
    case registry::Runtime::kCpp:
    case registry::Runtime::kProvided:
      return std::vector<std::string>{TaskRoot() + "/bootstrap"};
    case registry::Runtime::kNodejs:
      return std::vector<std::string>{ctx_->node, RuntimeDir() + "/nodejs/bootstrap.mjs"};
  }
  return Internal("runtime not available");
}

std::vector<std::string> FunctionPool::BuildEnv(const std::string& runtime_api) const {
  const registry::Manifest& m = version_->manifest;
  std::string exec_env = "AWS_Lambda_provided";
  if (m.runtime == registry::Runtime::kPython3) exec_env = "AWS_Lambda_python3";
  if (m.runtime == registry::Runtime::kNodejs) exec_env = "AWS_Lambda_nodejs20.x";
  std::vector<std::string> env = {
      "AWS_LAMBDA_RUNTIME_API=" + runtime_api,
      "_HANDLER=" + m.handler,
      "LAMBDA_TASK_ROOT=" + TaskRoot(),
      "LAMBDA_RUNTIME_DIR=" + RuntimeDir(),
      "AWS_LAMBDA_FUNCTION_NAME=" + std::string(BareFunctionName(version_->function)),
      "AWS_LAMBDA_FUNCTION_VERSION=" + ShownVersion(version_->version, latest_),
      "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + std::to_string(m.memory_mb),
      "AWS_LAMBDA_FUNCTION_TIMEOUT=" + std::to_string((m.timeout_ms + 999) / 1000),
      "AWS_REGION=" + ctx_->region,
      "AWS_DEFAULT_REGION=" + ctx_->region,
      "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + std::string(BareFunctionName(version_->function)),
      "AWS_LAMBDA_LOG_STREAM_NAME=" + LogStreamName(ctx_->clock->WallMicros(),
                                                    ShownVersion(version_->version, latest_),
                                                    RandomHex(16)),
      "AWS_EXECUTION_ENV=" + exec_env,
      std::string("AWS_LAMBDA_INITIALIZATION_TYPE=") +
          (m.min_instances > 0 ? "provisioned-concurrency" : "on-demand"),
      "PATH=/usr/local/bin:/usr/bin:/bin",
      "LANG=C.UTF-8",
      "TZ=:UTC",
      "HOME=/tmp",
  };
  for (const auto& [k, v] : m.environment) env.push_back(k + "=" + v);
  // Each model's folder: its mount path in a jail, the store's read-only tree otherwise.
  for (const registry::ModelRef& model : m.models) {
    env.push_back(
        models::ModelEnvName(model.name) + "=" +
        (ctx_->spawner->isolated() ? model.mount : ctx_->models_dir + "/" + model.digest));
  }
  return env;
}

void FunctionPool::LaunchFailed(const InstancePtr& inst, const Status& why) {
  Effects fx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->init_error_type = "Runtime.InitError";
    inst->init_error_message = why.message();
    if (!inst->endpoint.empty()) fx.closes.push_back(inst->endpoint);
    if (instances_.count(inst->id)) {
      InitFailedLocked(*inst, fx);
      EraseInstanceLocked(inst->id, fx);
    }
  }
  Apply(fx);
}

bool FunctionPool::ArtifactsHere(std::function<void(Status)> then) {
  if (!ctx_->fetch_artifacts || artifacts_here_.load(std::memory_order_relaxed)) return true;
  bool here = PathExists(version_->bundle_dir);
  for (const registry::ModelRef& model : version_->manifest.models) {
    here = here && PathExists(ctx_->models_dir + "/" + model.digest);
  }
  if (here) {
    artifacts_here_.store(true, std::memory_order_relaxed);
    return true;
  }
  ctx_->fetch_artifacts(version_, [executor = ctx_->executor, then = std::move(then)](Status st) {
    asio::post(executor, [then, st = std::move(st)] { then(st); });
  });
  return false;
}

void FunctionPool::LaunchInstance(const InstancePtr& inst) {
  if (!ArtifactsHere([self = shared_from_this(), inst](const Status& st) {
        if (st.ok()) return self->LaunchInstance(inst);
        self->LaunchFailed(inst, st);
      })) {
    return;
  }
  if (template_ != nullptr && !inst->fork_failed) return LaunchFromTemplate(inst);
  instance::ExecFactory factory(ctx_->spawner);
  StartWith(inst, factory);
}

// Asks the factory for the instance and returns: OnSpawned finishes the start on the spawner
// client's reply thread. Nothing here waits for a child.
void FunctionPool::StartWith(const InstancePtr& inst, instance::InstanceFactory& factory) {
  auto argv = BuildArgv();
  if (!argv.ok()) return LaunchFailed(inst, argv.status());
  const bool fork = factory.kind() == instance::StartKind::kFork;
  // Forked siblings share their template's uid: only the process tree tells them apart.
  PeerCheck check = PeerCheckFor(ctx_->spawner->mode());
  if (fork && check.kind == PeerCheck::Kind::kUid) check.kind = PeerCheck::Kind::kProcessTree;
  // network: none: the listener is made inside the instance's own network namespace and
  // adopted once it is spawned; the address is the same for every such instance.
  const bool private_network = version_->manifest.network == registry::Network::kNone;
  std::string address = sandbox::kPrivateRuntimeApi;
  if (!private_network) {
    auto opened = ctx_->endpoints->Open(shared_from_this(), inst->id, check, inst->shard);
    if (!opened.ok()) return LaunchFailed(inst, opened.status());
    address = *opened;
    std::lock_guard<std::mutex> lock(mu_);
    inst->endpoint = address;
  }
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return LaunchFailed(inst, ErrnoStatus("create pipe", "stdout", errno));
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return LaunchFailed(inst, ErrnoStatus("create pipe", "stderr", errno));
  }
  // Only thaw's read ends are non-blocking; the runtime keeps ordinary blocking stdio.
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  ::fcntl(err[0], F_SETFL, O_NONBLOCK);
  sandbox::SpawnRequest req;
  req.argv = std::move(*argv);
  req.env = BuildEnv(address);
  req.cwd = version_->bundle_dir;
  req.bundle_dir = version_->bundle_dir;
  req.private_network = private_network;
  req.tmp_bytes = version_->manifest.ephemeral_storage_mb << 20;
  AddModelMounts(req);
  const int64_t memory_mb = version_->manifest.memory_mb;
  req.limits.memory_bytes = memory_mb << 20;
  req.limits.pids_max = ctx_->pids_max;
  req.limits.cpu_weight = sandbox::CpuWeightForMemory(memory_mb);
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->cgroup = version_->function + "-" + std::to_string(version_->version) + "-" +
                   std::to_string(inst->id) + "-" + RandomHex(4);
    req.cgroup = inst->cgroup;
    AddGpusLocked(*inst, req);
  }
  req.stdout_fd = out[1];
  req.stderr_fd = err[1];
  // The native channel: a socketpair of the instance's own, so no other instance can reach
  // its events through it. thaw's own runtimes use it instead of the HTTP Runtime API.
  UniqueFd ours, theirs;
  if (ctx_->runtime_channel) {
    int sv[2];
    // SAFETY: both ends close-on-exec; the runtime's reaches it only through the spawner,
    // which places it at kChannelFd (or hands it to a template's child).
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      const int e = errno;
      for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
      return LaunchFailed(inst, ErrnoStatus("create socketpair", "native channel", e));
    }
    ours.reset(sv[0]);
    theirs.reset(sv[1]);
    ::fcntl(ours.get(), F_SETFL, O_NONBLOCK);
    req.channel_fd = theirs.get();
    req.env.push_back("THAW_CHANNEL_FD=" + std::to_string(sandbox::kChannelFd));
  }
  // The callback owns thaw's ends until it hands them to the instance. std::function needs a
  // copyable callable, so they travel shared.
  auto reads = std::make_shared<std::tuple<UniqueFd, UniqueFd, UniqueFd>>(
      UniqueFd(out[0]), UniqueFd(err[0]), std::move(ours));
  factory.Start(req, [self = shared_from_this(), inst, address, check,
                      reads](StatusOr<sandbox::Spawned> spawned) {
    self->OnSpawned(inst, std::move(spawned), address, check, std::move(std::get<0>(*reads)),
                    std::move(std::get<1>(*reads)), std::move(std::get<2>(*reads)));
  });
  // The spawner has its own copies of the write ends now (sent with the request).
  ::close(out[1]);
  ::close(err[1]);
}

void FunctionPool::OnSpawned(const InstancePtr& inst, StatusOr<sandbox::Spawned> spawned,
                             const std::string& address, PeerCheck check, UniqueFd out,
                             UniqueFd err, UniqueFd channel) {
  if (!spawned.ok() && (inst->start_kind == instance::StartKind::kFork ||
                        inst->start_kind == instance::StartKind::kRestore)) {
    return ForkFailed(inst, spawned.status());
  }
  if (!spawned.ok()) return LaunchFailed(inst, spawned.status());
  const pid_t pid = spawned->pid;
  // Its CPU counter and log pipes first: once its Runtime API or channel is attached, a fork
  // (ready at once) may take a call or report an init error on another thread, which reads
  // them (a call's CPU from the counter, an init error's log tail from the pipes).
  {
    std::lock_guard<std::mutex> lock(mu_);
    inst->cgroup = spawned->cgroup;
    const sandbox::Cgroups* cg = ctx_->spawner->cgroups();
    inst->cpu = cg != nullptr && !inst->cgroup.empty()
                    ? sandbox::CpuCounter::ForCgroupFile(cg->CpuFile(inst->cgroup))
                    : sandbox::CpuCounter::ForProcess(pid);
    inst->out = std::make_unique<asio::posix::stream_descriptor>(ctx_->executor, out.release());
    inst->err = std::make_unique<asio::posix::stream_descriptor>(ctx_->executor, err.release());
  }
  const bool private_network = version_->manifest.network == registry::Network::kNone;
  auto endpoint = AttachRuntimeApi(*ctx_->endpoints, shared_from_this(), inst->id, private_network,
                                   address, check, *spawned, inst->shard);
  // A channel that cannot be attached (the instance is stopping) closes here: its runtime sees
  // EOF and exits.
  if (endpoint.ok() && channel.valid()) {
    (void)ctx_->endpoints->AttachChannel(*endpoint, shared_from_this(), inst->id,
                                         std::move(channel));
  }
  bool stopped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (endpoint.ok()) {
      inst->endpoint = *endpoint;
    } else {  // killed below; its exit event reports this as the init error
      inst->init_error_type = "Runtime.InitError";
      inst->init_error_message = endpoint.status().message();
    }
    stopped = StartedLocked(*inst, pid, endpoint.ok());
  }
  Register(inst, pid, stopped);
  if (!stopped) PinToShard(pid, inst->shard);
  WatchLog(inst, false);
  WatchLog(inst, true);
}

bool FunctionPool::StartedLocked(Instance& inst, pid_t pid, bool attached) {
  inst.pid = pid;
  // The first GET /next may have come first (kReady); else it is initialising now.
  if (inst.lifecycle == Lifecycle::kSpawning) inst.Transition(Lifecycle::kInitializing);
  return inst.lifecycle == Lifecycle::kStopping || !attached;
}

void FunctionPool::Register(const InstancePtr& inst, pid_t pid, bool stopped) {
  // Its exit event may already have come (it travels apart from the spawn reply): then
  // RegisterPid hands it to OnExit now.
  ctx_->manager->RegisterPid(pid, weak_from_this(), inst->id);
  if (stopped) ctx_->launcher->Kill(pid);
}

void FunctionPool::Spawn(uint64_t instance_id) {
  InstancePtr inst;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    inst = it->second;
  }
  LaunchInstance(inst);
}

void FunctionPool::OnStarted(uint64_t instance_id, StatusOr<pid_t> pid) {
  InstancePtr inst;
  bool stopped = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = instances_.find(instance_id);
    if (it == instances_.end()) return;
    inst = it->second;
    if (pid.ok()) stopped = StartedLocked(*inst, *pid, true);
  }
  if (!pid.ok()) return LaunchFailed(inst, pid.status());
  Register(inst, *pid, stopped);
}

void FunctionPool::WatchLog(InstancePtr inst, bool stderr_stream) {
  auto& desc = stderr_stream ? *inst->err : *inst->out;
  desc.async_wait(
      asio::posix::descriptor_base::wait_read,
      [self = shared_from_this(), inst, stderr_stream](boost::system::error_code ec) {
        if (ec) return;
        const int64_t again_us = self->OnLogReadable(inst->id, stderr_stream);
        if (again_us == 0) {
          self->WatchLog(inst, stderr_stream);
        } else if (again_us > 0) {  // over its log rate: leave the pipe full for a moment
          auto timer = std::make_shared<asio::steady_timer>(self->ctx_->executor,
                                                            std::chrono::microseconds(again_us));
          timer->async_wait([self, inst, stderr_stream, timer](boost::system::error_code ec) {
            if (!ec) self->WatchLog(inst, stderr_stream);
          });
        }
      });
}

int64_t FunctionPool::OnLogReadable(uint64_t instance_id, bool stderr_stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return -1;
  Instance& inst = *it->second;
  std::lock_guard<std::mutex> log_lock(inst.log_mu);
  DrainLogsHeld(inst, false);
  if (stderr_stream ? inst.err_eof : inst.out_eof) return -1;
  if (inst.log_tokens > 0) return 0;
  // Empty bucket: look again once a read's worth has refilled.
  return std::max<int64_t>(1000, 16384LL * 1'000'000 / ctx_->log_rate_bytes);
}

void FunctionPool::DrainLogsLocked(Instance& inst, bool all) {
  std::lock_guard<std::mutex> lock(inst.log_mu);
  DrainLogsHeld(inst, all);
}

void FunctionPool::DrainLogsHeld(Instance& inst, bool all) {
  const int64_t now = ctx_->clock->MonoMicros();
  const int64_t burst = ctx_->log_rate_bytes;
  if (inst.log_tokens < 0) {
    inst.log_tokens = burst;
  } else {
    inst.log_tokens = std::min(
        burst, inst.log_tokens + (now - inst.log_tokens_at_us) * ctx_->log_rate_bytes / 1'000'000);
  }
  inst.log_tokens_at_us = now;
  struct Stream {
    asio::posix::stream_descriptor* desc;
    bool* eof;
    std::string* partial;
    const char* name;
  };
  Stream streams[] = {{inst.out.get(), &inst.out_eof, &inst.out_partial, "stdout"},
                      {inst.err.get(), &inst.err_eof, &inst.err_partial, "stderr"}};
  char buf[16384];
  for (Stream& s : streams) {
    if (s.desc == nullptr || *s.eof) continue;
    for (;;) {
      const size_t want = all ? sizeof(buf)
                              : static_cast<size_t>(std::min<int64_t>(
                                    static_cast<int64_t>(sizeof(buf)), inst.log_tokens));
      if (want == 0) break;  // over its rate: the rest waits in the pipe
      ssize_t n = ::read(s.desc->native_handle(), buf, want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // EAGAIN: all read
      if (n == 0) {
        *s.eof = true;
        if (!s.partial->empty()) EmitLineLocked(inst, s.name, std::move(*s.partial));
        s.partial->clear();
        break;
      }
      if (!all) inst.log_tokens -= n;
      s.partial->append(buf, static_cast<size_t>(n));
      size_t start = 0, nl;
      while ((nl = s.partial->find('\n', start)) != std::string::npos) {
        EmitLineLocked(inst, s.name, s.partial->substr(start, nl - start));
        start = nl + 1;
      }
      s.partial->erase(0, start);
      if (s.partial->size() > kMaxLogLine) {
        EmitLineLocked(inst, s.name, std::move(*s.partial));
        s.partial->clear();
      }
    }
  }
}

void FunctionPool::EmitLineLocked(Instance& inst, const char* stream, std::string text) {
  if (!text.empty() && text.back() == '\r') text.pop_back();
  if (!inst.initialized) {
    inst.init_log += text;
    inst.init_log += '\n';
    if (inst.init_log.size() > kInitLogTail) {
      inst.init_log.erase(0, inst.init_log.size() - kInitLogTail);
    }
  }
  // A call a lane gave it, once the runtime may have it and until its answer has read these
  // lines (`delivered`, written under log_mu), is the one printing.
  const Lent* lent = inst.lent.get();
  const bool lane_call = lent != nullptr && lent->delivered.load(std::memory_order_acquire);
  ctx_->logs->Append(version_->function, lane_call ? lent->inv->id : inst.current_request_id,
                     stream, std::move(text));
}

}  // namespace thaw::pool

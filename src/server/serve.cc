#include "server/serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#include "auth/keys.h"
#include "cluster/artifact_fetcher.h"
#include "cluster/drain_mover.h"
#include "cluster/membership.h"
#include "cluster/share_keeper.h"
#include "common/clock.h"
#include "common/cpu_affinity.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/shard.h"
#include "common/tenant.h"
#include "common/timers.h"
#include "dispatch/dispatcher.h"
#include "dispatch/gpu_assign.h"
#include "dispatch/warm_capacity.h"
#include "gateway/api.h"
#include "gateway/webhook.h"
#include "logs/log_store.h"
#include "meter/meter.h"
#include "metrics/metrics.h"
#include "metrics/stats_ring.h"
#include "models/store.h"
#include "pool/gpu_table.h"
#include "pool/idle_times_store.h"
#include "pool/launcher.h"
#include "pool/pool.h"
#include "queue/event_queue.h"
#include "queue/job_store.h"
#include "registry/registry.h"
#include "runtime_api/runtime_server.h"
#include "sandbox/spawner.h"
#include "store/change_listener.h"
#include "store/db.h"

namespace thaw::server {
namespace {

namespace asio = boost::asio;

constexpr auto kTickInterval = std::chrono::milliseconds(100);

// A secret kept in a 0600 file of the data dir, created on first use: "admin.key" (the
// bootstrap admin's Bearer key) and "master.key" (API key secrets are derived from it).
// `path` set: the secret is that file, which must exist (master_key_file: a cluster's nodes
// share one master key, so none may make its own).
StatusOr<std::string> LoadOrCreateKeyFile(const std::string& data_dir, const char* name,
                                          const std::string& prefix, std::string path = "") {
  const bool given = !path.empty();
  if (!given) path = data_dir + "/" + name;
  auto existing = ReadFile(path);
  if (given && !existing.ok()) {
    return InvalidArgument("master_key_file: cannot read " + path + " (" +
                           existing.status().message() +
                           "): copy the first node's <data-dir>/master.key there (mode 0600)");
  }
  if (existing.ok()) {
    std::string key = *existing;
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (key.empty()) return InvalidArgument(path + " is empty; delete it to get a new key");
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      spdlog::warn("{} is readable by others (mode {:o}); setting it to 0600", path,
                   st.st_mode & 0777);
      if (::chmod(path.c_str(), 0600) != 0) {
        spdlog::warn("cannot set {} to mode 0600: {}", path, std::strerror(errno));
      }
    }
    return key;
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  std::string key = prefix + RandomHex(32);
  THAW_RETURN_IF_ERROR(WriteFileAtomic(path, key + "\n", 0600));
  spdlog::info("wrote a new {} to {} (mode 0600)", name, path);
  return key;
}

// Connections and instances' Runtime API listeners each take a descriptor: lift the soft limit
// to the hard one (the spawner was forked before, and keeps the limit it had).
void RaiseFdLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  const rlim_t was = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  // SAFETY: raising our own soft limit up to the hard limit needs no privilege.
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    spdlog::warn("failed to raise RLIMIT_NOFILE from {}: {}", was, std::strerror(errno));
  }
}

StatusOr<asio::ip::tcp::endpoint> ParseListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return InvalidArgument("listen: '" + host + "' is not an IP address");
  char* end = nullptr;
  long port = std::strtol(listen.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    return InvalidArgument("listen: bad port in '" + listen + "'");
  }
  return asio::ip::tcp::endpoint(address, static_cast<uint16_t>(port));
}

// The node's GPUs: the static `gpus` list, or NVML's (dlopen'd now, after the spawner was
// forked: NVML may start threads). No NVML is no GPUs, said once in the log.
std::unique_ptr<pool::GpuTable> OpenGpus(const Config& config) {
  if (config.gpus == "none") {
    return std::make_unique<pool::GpuTable>(std::vector<sandbox::GpuDevice>{},
                                            config.gpu_device_dir, nullptr, "none: gpus is none");
  }
  if (!config.gpus.empty()) {
    auto list = sandbox::ParseStaticGpus(config.gpus);  // validated with the config
    spdlog::info("GPUs: {} from the static list (gpus)", list.ok() ? list->size() : 0);
    return std::make_unique<pool::GpuTable>(
        list.ok() ? std::move(*list) : std::vector<sandbox::GpuDevice>{}, config.gpu_device_dir,
        nullptr, "static");
  }
  auto nvml = sandbox::Nvml::Open();
  if (!nvml.ok()) {
    spdlog::info("GPUs: none ({})", nvml.status().message());
    return std::make_unique<pool::GpuTable>(std::vector<sandbox::GpuDevice>{},
                                            config.gpu_device_dir, nullptr,
                                            "none: " + nvml.status().message());
  }
  auto devices = (*nvml)->Devices();
  if (!devices.ok()) {
    spdlog::warn("GPUs: none ({})", devices.status().message());
    return std::make_unique<pool::GpuTable>(std::vector<sandbox::GpuDevice>{},
                                            config.gpu_device_dir, nullptr,
                                            "none: " + devices.status().message());
  }
  for (const auto& d : *devices) {
    spdlog::info("GPU {}: {} ({} MB, {}, /dev/nvidia{})", d.index, d.name, d.memory_bytes >> 20,
                 d.uuid, d.minor);
  }
  return std::make_unique<pool::GpuTable>(std::move(*devices), config.gpu_device_dir,
                                          std::move(*nvml), "nvml");
}

// A GPU function this node could never start is refused at deploy, naming the field: one
// instance's `gpu`, or the `min_instances` kept warm, each holding its own GPUs.
Status CheckGpus(const pool::GpuTable* gpus, const registry::Manifest& m) {
  if (m.gpu.count == 0) return Status::Ok();
  std::vector<dispatch::GpuSlot> slots;
  if (gpus != nullptr) {
    for (const auto& d : gpus->devices()) slots.push_back({d.index, d.name, d.memory_bytes});
  }
  dispatch::GpuAsk ask{m.gpu.count, m.gpu.memory_gb, m.gpu.kind};
  THAW_RETURN_IF_ERROR(dispatch::CheckGpusFit(slots, ask));
  if (m.min_instances > 1) {
    ask.count *= m.min_instances;
    if (!dispatch::CheckGpusFit(slots, ask).ok()) {
      return InvalidArgument(
          "thaw.yaml: field 'min_instances': " + std::to_string(m.min_instances) +
          " warm instances of " + std::to_string(m.gpu.count) + " GPU(s) each need " +
          std::to_string(ask.count) + " GPUs; this node has " + std::to_string(slots.size()));
    }
  }
  return Status::Ok();
}

// Sets each tenant's spend this month from the ledger's totals (one SQL aggregate by tenant):
// in a cluster the ledger holds every node's records, so this is the cluster's spend.
Status LoadMonthSpend(meter::Meter& meter, const meter::PriceSheet& prices,
                      dispatch::Dispatcher& dispatcher, int64_t now_us) {
  const int64_t month = dispatch::MonthIndex(now_us);
  auto totals =
      meter.Totals(meter::GroupBy::kTenant, "", "", dispatch::MonthStartMicros(month), now_us + 1);
  if (!totals.ok()) return totals.status();
  for (const auto& g : *totals) {
    dispatcher.SetClusterSpend(g.key, month, meter::LambdaCostMicro(g.sums, prices) * 1'000'000);
  }
  return Status::Ok();
}

// Loads each tenant's spend this month from the meter's ledger into `dispatcher`, and keeps
// it current as records arrive.
Status TrackSpend(meter::Meter& meter, const meter::PriceSheet& prices,
                  dispatch::Dispatcher& dispatcher) {
  THAW_RETURN_IF_ERROR(LoadMonthSpend(meter, prices, dispatcher, WallNowMicros()));
  meter.SetObserver([&dispatcher, prices](const meter::Record& r) {
    meter::Sample s;
    s.status = r.status;
    s.billed_ms = r.billed_ms;
    s.memory_mb = r.memory_mb;
    s.gpu_us = r.gpu_us;
    s.prompt_tokens = r.prompt_tokens;  // set on usage records
    s.completion_tokens = r.completion_tokens;
    dispatcher.AccrueSpend(r.tenant, r.start_us, meter::LambdaCostPico(s, prices));
  });
  return Status::Ok();
}

asio::awaitable<void> WatchExits(int fd, pool::PoolManager& pools) {
  asio::posix::stream_descriptor exits(co_await asio::this_coro::executor, ::dup(fd));
  for (;;) {
    sandbox::ExitEvent ev;
    boost::system::error_code ec;
    size_t n = co_await exits.async_read_some(asio::buffer(&ev, sizeof(ev)),
                                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec != asio::error::operation_aborted)
        spdlog::error("spawner exit channel: {}", ec.message());
      co_return;
    }
    if (n == sizeof(ev)) pools.OnExit(ev);
  }
}

// What each function's pools hold now, summed over versions, for the console's live charts.
void SampleLive(pool::PoolManager& pools, metrics::StatsRing& live) {
  std::map<std::string, metrics::LiveSample> now;
  for (const auto& s : pools.Stats("")) {
    metrics::LiveSample& f = now[s.function];
    for (const auto& [state, n] : s.instances_by_state) {
      if (state == "ready") f.ready += n;
      if (state == "starting") f.starting += n;
      if (state == "stopping") f.stopping += n;
    }
    f.busy += s.busy;
    f.inflight += s.inflight;
    f.queued += s.queued;
  }
  live.Record(WallNowMicros(), now);
}

asio::awaitable<void> TickLoop(pool::PoolManager& pools, metrics::StatsRing& live, bool& stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  constexpr int kTicksPerSample = 10;  // about once a second
  for (int tick = 0; !stopping; ++tick) {
    timer.expires_after(kTickInterval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    pools.Tick();
    if (tick % kTicksPerSample == 0) SampleLive(pools, live);
  }
}

// What this node publishes about itself to the cluster: capacity, load, what it holds warm
// (from the pools) and the models on its disk (the model store's trees), on the membership's
// loop.
cluster::NodeRecord DescribeNode(pool::PoolManager& pools, const models::ModelStore& models,
                                 const pool::GpuTable* gpus, int64_t node_memory_mb) {
  cluster::NodeRecord r;
  r.cores = std::max(1u, std::thread::hardware_concurrency());
  r.memory_mb = node_memory_mb;
  r.free_memory_mb = node_memory_mb - pools.reserved_memory_mb();
  r.gpus = gpus != nullptr ? static_cast<int64_t>(gpus->devices().size()) : 0;
  for (const auto& s : pools.Stats("")) {
    r.inflight += s.inflight + s.queued;
    auto ready = s.instances_by_state.find("ready");
    if (ready != s.instances_by_state.end() && ready->second > 0) {
      r.warm.insert(s.function + ":" + std::to_string(s.version));
    }
  }
  for (const auto& [function, version] : pools.ReadyTemplates()) {
    r.templates.insert(function + ":" + std::to_string(version));
  }
  for (std::string& digest : models.HeldTrees()) r.models.insert(std::move(digest));
  return r;
}

// The owner this node writes into the event queue: its node_name; on a shared store without
// one, the host name (two nodes must not share a name there); alone on SQLite, "local".
std::string QueueNode(const Config& config) {
  if (!config.node_name.empty()) return config.node_name;
  char host[256] = {};
  if (store::Db::IsPostgresUrl(config.store) && ::gethostname(host, sizeof(host) - 1) == 0 &&
      host[0] != '\0') {
    return host;
  }
  return "local";
}

StatusOr<std::unique_ptr<cluster::Membership>> JoinCluster(
    const Config& config, const asio::ip::tcp::endpoint& bound, pool::PoolManager& pools,
    const models::ModelStore& models, const pool::GpuTable* gpus, int64_t node_memory_mb) {
  auto etcd = cluster::EtcdClient::Create(config.etcd);
  if (!etcd.ok()) return etcd.status();
  cluster::MembershipOptions options;
  options.node_name = config.node_name;
  if (options.node_name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
      return InvalidArgument("node_name: the host has no name: set --node-name");
    }
    options.node_name = host;
  }
  options.advertise = config.advertise;
  if (options.advertise.empty()) {
    const std::string address = bound.address().to_string();
    options.advertise = (bound.address().is_v6() ? "[" + address + "]" : address) + ":" +
                        std::to_string(bound.port());
  }
  options.lease_s = config.node_lease_s;
  options.poll_ms = std::min<int64_t>(500, config.node_lease_s * 1000 / 4);
  return std::make_unique<cluster::Membership>(
      std::move(*etcd), std::move(options),
      [&pools, &models, gpus, node_memory_mb] {
        return DescribeNode(pools, models, gpus, node_memory_mb);
      },
      [&pools](bool draining) { pools.SetDraining(draining); });
}

// The other nodes' records: whom to ask for a bundle or a model this node lacks.
std::vector<cluster::NodeRecord> OtherMembers(const cluster::Membership* membership) {
  std::vector<cluster::NodeRecord> out;
  if (membership == nullptr) return out;
  for (auto& m : membership->Snapshot()) {
    if (!m.self) out.push_back(std::move(m.record));
  }
  return out;
}

// What another node changed in the shared store (store/change_listener.h): the caches read it
// again, and pools of a version no longer newest drain as after a local deploy.
Status ApplyChanges(const std::vector<store::Change>& batch, registry::Registry& registry,
                    auth::KeyStore& keys, pool::PoolManager& pools) {
  bool functions = false, access = false;
  for (const auto& c : batch) {
    functions |= c.kind == "*" || c.kind == "registry";
    access |= c.kind == "*" || c.kind == "keys" || c.kind == "tenants";
  }
  if (access) {
    if (Status st = keys.Reload(); !st.ok()) return Unavailable("keys: reload: " + st.message());
  }
  if (!functions) return Status::Ok();
  auto changed = registry.Reload();
  if (!changed.ok()) return Unavailable("registry: reload: " + changed.status().message());
  for (const auto& c : *changed) {
    spdlog::info("registry: {} changed on another node: newest version {}", c.function,
                 c.latest ? std::to_string(c.latest->version) : "none (deleted)");
    pools.OnDeployed(c.function, c.latest);
  }
  return Status::Ok();
}

}  // namespace

int RunServe(Config config, const std::string& exe_dir) {
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  ::signal(SIGPIPE, SIG_IGN);
  // The spawner must be forked while this process has a single thread.
  const std::string jail_root = std::filesystem::absolute(config.data_dir + "/jail").string();
  if (Status st = MakeDirs(jail_root); !st.ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }
  if (config.runtimes_dir.empty()) config.runtimes_dir = exe_dir + "/runtimes";
  sandbox::SpawnerOptions spawner_options;
  spawner_options.jail_root = jail_root;
  spawner_options.runtimes_dir = config.runtimes_dir;
  spawner_options.tmp_bytes = registry::kDefaultEphemeralStorageMb << 20;
  spawner_options.tmp_disk_dir = std::filesystem::absolute(config.ephemeral_storage_dir.empty()
                                                               ? config.data_dir + "/ephemeral"
                                                               : config.ephemeral_storage_dir)
                                     .string();
  spawner_options.sandbox = config.sandbox;
  spawner_options.instance_uids = config.instance_uids;
  spawner_options.ready_shells = config.ready_shells;
  spawner_options.shell_exe = exe_dir + "/thaw-shell";
  auto spawner = sandbox::SpawnerClient::Start(spawner_options);
  if (!spawner.ok()) {
    spdlog::critical("{}", spawner.status().message());
    return 1;
  }
  // Every jailed instance, of any runtime, has this folder bound at /opt/thaw: without it each
  // start would fail, call after call.
  if ((*spawner)->mode() == sandbox::Isolation::kJail &&
      !std::filesystem::is_directory(config.runtimes_dir)) {
    spdlog::critical(
        "runtimes folder {} is not there: jailed instances mount it at /opt/thaw (pass "
        "--runtimes-dir, or keep runtimes/ beside the thaw binary)",
        config.runtimes_dir);
    return 1;
  }
  auto listen = ParseListen(config.listen);
  if (!listen.ok()) {
    spdlog::critical("{}", listen.status().message());
    return 2;
  }
  if (!config.auth && !listen->address().is_loopback()) {
    spdlog::critical("refusing to listen on {} with auth off: use a loopback address",
                     config.listen);
    return 2;
  }
  if (Status st = MakeDirs(config.data_dir); !st.ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }
  ::chmod(config.data_dir.c_str(), 0700);
  auto key = LoadOrCreateKeyFile(config.data_dir, "admin.key", "thaw_");
  auto master = LoadOrCreateKeyFile(config.data_dir, "master.key", "", config.master_key_file);
  if (!key.ok() || !master.ok()) {
    spdlog::critical("{}", (key.ok() ? master.status() : key.status()).message());
    return 1;
  }
  // Every owner of durable state opens its own connection to the one store.
  const std::string store_at = config.store.empty() ? config.data_dir + "/thaw.db" : config.store;
  auto registry = registry::Registry::Open(
      config.data_dir, registry::UnpackLimits{config.max_unpacked_bytes, 20000}, store_at);
  if (!registry.ok()) {
    spdlog::critical("{}", registry.status().message());
    return 1;
  }
  auto models =
      models::ModelStore::Open(models::StoreOptions{.data_dir = config.data_dir,
                                                    .store = store_at,
                                                    .quota_bytes = config.models_quota_bytes,
                                                    .max_file_bytes = config.max_model_file_bytes});
  if (!models.ok()) {
    spdlog::critical("{}", models.status().message());
    return 1;
  }
  // The versions that use models keep their files (and their tags from removal).
  (*models)->SetInUse([reg = registry->get()] {
    models::ModelStore::Versions out{reg->BlockWrites(), {}};
    for (const auto& f : reg->List()) {
      for (const auto& v : f.versions) {
        for (const auto& m : v->manifest.models) {
          out.uses.push_back(
              {std::string(TenantOfFunction(f.name)), f.name, v->version, m.name, m.tag, m.digest});
        }
      }
    }
    return out;
  });
  if (Status st = (*models)->Collect(); !st.ok()) spdlog::warn("model store: {}", st.message());
  // A tag is resolved to its digest when a version is recorded, so the version keeps the files
  // it was deployed with when the tag moves (a config change keeps the digests it has).
  (*registry)->SetManifestResolver([store = models->get()](const std::string& name,
                                                           registry::Manifest& manifest) {
    for (size_t i = 0; i < manifest.models.size(); ++i) {
      registry::ModelRef& ref = manifest.models[i];
      if (!ref.digest.empty()) continue;
      auto digest = store->Resolve(std::string(TenantOfFunction(name)), ref.name, ref.tag);
      if (!digest.ok()) {
        return InvalidArgument("thaw.yaml: field 'models[" + std::to_string(i) + "]': no model " +
                               ref.name + ":" + ref.tag +
                               " in this tenant's model store (push it first: thaw models push " +
                               ref.name + ":" + ref.tag + " PATH)");
      }
      ref.digest = *digest;
    }
    return Status::Ok();
  });
  // The journal stays in the data dir whatever the store: it is this node's own.
  auto meter = meter::Meter::Open(store_at, meter::Meter::JournalDir(config.data_dir + "/thaw.db"));
  if (!meter.ok()) {
    spdlog::critical("{}", meter.status().message());
    return 1;
  }
  auto keys = auth::KeyStore::Open(store_at, *master, *key);
  if (!keys.ok()) {
    spdlog::critical("{}", keys.status().message());
    return 1;
  }
  std::unique_ptr<pool::GpuTable> gpus = OpenGpus(config);
  const int64_t node_memory_mb = config.node_memory_mb > 0
                                     ? config.node_memory_mb
                                     : dispatch::DefaultNodeMemoryMb(dispatch::ReadMemTotalMb());
  // Warm instances hold memory whether or not anyone calls: a version whose min_instances
  // cannot fit beside the others (node memory, the tenant's concurrency) is refused at deploy.
  (*registry)->SetVersionCheck(
      [keys = keys->get(), node_memory_mb, gpus = gpus.get()](
          const std::string& name, const registry::Manifest& manifest,
          const std::vector<std::shared_ptr<const registry::Version>>& latest) {
        if (Status st = CheckGpus(gpus, manifest); !st.ok()) return st;
        std::vector<dispatch::WarmFunction> deployed;
        for (const auto& v : latest) {
          deployed.push_back({v->function, std::string(TenantOfFunction(v->function)),
                              v->manifest.min_instances, v->manifest.memory_mb});
        }
        dispatch::WarmFunction candidate{name, std::string(TenantOfFunction(name)),
                                         manifest.min_instances, manifest.memory_mb};
        dispatch::WarmLimits limits;
        limits.node_memory_mb = node_memory_mb;
        if (auto tenant = keys->GetTenant(candidate.tenant); tenant.ok()) {
          limits.tenant_concurrency = tenant->limits.concurrency;
        }
        return dispatch::CheckWarmCapacity(candidate, deployed, limits);
      });
  // Tenant limits live in the key store alone; the dispatcher reads them at each admission.
  dispatch::Dispatcher dispatcher(
      [keys = keys->get()](std::string_view tenant) { return keys->Limits(tenant); });
  // With metering off nothing is recorded: no usage, no spend, so budgets are not enforced.
  meter::Meter* active_meter = config.metering ? meter->get() : nullptr;
  if (active_meter == nullptr) {
    spdlog::warn("metering is off: invocations are not recorded and budgets not enforced");
  } else if (Status st = TrackSpend(*active_meter, PriceSheetFrom(config), dispatcher); !st.ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }
  (void)MakeDirs(config.data_dir + "/logs");
  logs::LogStore logs(
      config.data_dir + "/logs",
      logs::LogOptions{.max_lines = static_cast<size_t>(config.log_lines),
                       .max_ring_bytes = static_cast<size_t>(config.log_ring_bytes),
                       .max_queue_bytes = static_cast<size_t>(config.log_queue_bytes),
                       .max_file_bytes = config.log_file_bytes,
                       .files_kept = static_cast<int>(config.log_files_kept)});

  const int threads = config.threads > 0 ? static_cast<int>(config.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
  // Thread-per-core shards: an io_context per thread, each with its own acceptor on the API port
  // (SO_REUSEPORT: the kernel spreads connections), so a connection's requests, and the
  // instances its shard started, are served by one thread. Shard 0 also runs everything that
  // is not per connection (ticks, exits, the event queue, jobs, membership, signals).
  std::vector<std::unique_ptr<asio::io_context>> shards;
  std::vector<asio::io_context*> shard_contexts;
  std::vector<asio::any_io_executor> shard_executors;
  for (int i = 0; i < threads; ++i) {
    shards.push_back(std::make_unique<asio::io_context>(1));
    shard_contexts.push_back(shards.back().get());
    shard_executors.push_back(shards.back()->get_executor());
  }
  asio::io_context& ioc = *shards[0];
  RealClock clock;
  runtime_api::RuntimeServer endpoints(shard_contexts, config.max_payload_bytes,
                                       config.max_stream_bytes);
  metrics::Registry metrics;
  pool::PoolContext ctx;
  ctx.metrics = &metrics;
  ctx.executor = ioc.get_executor();
  ctx.spawner = spawner->get();
  // Spawn replies are read on a thread of their own: a Runtime API connection that arrives
  // before its instance's reply waits for it on an io thread, so the reply must not need one.
  (*spawner)->StartReplyThread();
  ctx.logs = &logs;
  ctx.meter = active_meter;
  ctx.endpoints = &endpoints;
  ctx.clock = &clock;
  // Call deadlines: a timer wheel per shard (2 ms ticks), not a steady timer per call.
  WheelTimers timers(shard_executors, /*tick_us=*/2000);
  ctx.timers = &timers;
  pool::SpawnerLauncher launcher(spawner->get());
  ctx.launcher = &launcher;
  ctx.runtimes_dir = config.runtimes_dir;
  ctx.python = config.python;
  ctx.node = config.node;
  ctx.region = config.region;
  ctx.max_queue = config.max_queue;
  ctx.queue_timeout_us = config.queue_timeout_ms * 1000;
  ctx.init_timeout_us = config.init_timeout_ms * 1000;
  ctx.pids_max = config.pids_max;
  ctx.node_memory_mb = node_memory_mb;
  ctx.log_rate_bytes = config.log_rate_bytes;
  ctx.gpus = gpus.get();
  ctx.models_dir = models::ModelStore::TreesRoot(config.data_dir);
  ctx.snapshots_dir = std::filesystem::absolute(config.data_dir + "/snapshots").string();
  ctx.templates = config.templates;
  auto idle_store = pool::IdleTimesStore::Open(store_at);
  if (!idle_store.ok()) {
    spdlog::critical("{}", idle_store.status().message());
    return 1;
  }
  ctx.idle_store = idle_store->get();
  ctx.runtime_channel = config.runtime_channel;
  ctx.shards = threads;
  // The CPUs shard i maps to (ShardCpu): thaw's own mask, read before any shard is pinned.
  const std::vector<int> cpus = AllowedCpus();
  if (config.pin_instances) ctx.shard_cpus = cpus;
  // A cluster: its members (set once the API listens), bundles and models fetched from them, and
  // the changes other nodes make to the shared store, heard within a second.
  std::unique_ptr<cluster::Membership> membership;
  std::unique_ptr<cluster::ArtifactFetcher> fetcher;
  if (store::Db::IsPostgresUrl(store_at)) {
    fetcher = std::make_unique<cluster::ArtifactFetcher>(
        registry->get(), models->get(), cluster::ClusterToken(*master),
        [&membership] { return OtherMembers(membership.get()); });
    ctx.fetch_artifacts = [f = fetcher.get()](std::shared_ptr<const registry::Version> v,
                                              std::function<void(Status)> done) {
      f->Fetch(std::move(v), std::move(done));
    };
  }
  pool::PoolManager pools(&ctx);
  ctx.manager = &pools;
  std::unique_ptr<store::ChangeListener> changes;
  if (store::Db::IsPostgresUrl(store_at)) {
    auto started =
        store::ChangeListener::Start(store_at, [reg = registry->get(), keys = keys->get(),
                                                &pools](const std::vector<store::Change>& batch) {
          return ApplyChanges(batch, *reg, *keys, pools);
        });
    if (!started.ok()) {
      spdlog::critical("{}", started.status().message());
      return 1;
    }
    changes = std::move(*started);
  }

  if (!config.webhook_ca_file.empty()) {
    if (Status st = gateway::TrustWebhookCaFile(config.webhook_ca_file); !st.ok()) {
      spdlog::critical("{}", st.message());
      return 1;
    }
  }
  auto events =
      queue::EventQueue::Open(queue::QueueOptions{.db_path = store_at,
                                                  .node = QueueNode(config),
                                                  .lease_us = config.event_lease_s * 1'000'000});
  if (!events.ok()) {
    spdlog::critical("{}", events.status().message());
    return 1;
  }
  auto jobs = queue::JobStore::Open(store_at, QueueNode(config));
  if (!jobs.ok()) {
    spdlog::critical("{}", jobs.status().message());
    return 1;
  }
  // One acceptor per shard on the same port: shard 0's binds it (port 0: the kernel picks
  // one), the others join it.
  using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;
  asio::ip::tcp::endpoint bound;
  for (int i = 0; i < threads; ++i) {
    auto& a = *acceptors.emplace_back(std::make_unique<asio::ip::tcp::acceptor>(*shards[i]));
    boost::system::error_code ec;
    a.open(listen->protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && threads > 1) a.set_option(ReusePort(true), ec);
    if (!ec) a.bind(i == 0 ? *listen : bound, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      spdlog::critical("failed to listen on {}: {}", config.listen, ec.message());
      return 1;
    }
    if (i == 0) bound = a.local_endpoint();
  }
  if (!config.etcd.empty()) {
    auto made = JoinCluster(config, bound, pools, *models->get(), gpus.get(), node_memory_mb);
    if (!made.ok()) {
      spdlog::critical("{}", made.status().message());
      return 2;
    }
    membership = std::move(*made);
    metrics.SetNode(membership->name());
  }
  // In a cluster, tenant limits hold over all nodes: concurrency and rate by leased shares in
  // etcd, the budget by the shared ledger's month-to-date totals, read once a second.
  std::unique_ptr<cluster::ShareKeeper> shares;
  std::jthread spend_refresh;
  if (membership != nullptr) {
    cluster::ShareKeeperOptions share_options;
    share_options.node_name = membership->name();
    share_options.lease_s = config.node_lease_s;
    share_options.period_ms = std::min<int64_t>(200, config.node_lease_s * 1000 / 4);
    shares = std::make_unique<cluster::ShareKeeper>(
        membership->etcd(), std::move(share_options), &dispatcher,
        [keys = keys->get()] { return keys->ListTenants(); });
    if (active_meter != nullptr) {
      spend_refresh = std::jthread(
          [&dispatcher, active_meter, prices = PriceSheetFrom(config)](std::stop_token stop) {
            std::mutex mu;
            std::condition_variable_any cv;
            std::string last_error;
            while (!stop.stop_requested()) {
              Status st = LoadMonthSpend(*active_meter, prices, dispatcher, WallNowMicros());
              if (!st.ok() && st.message() != last_error) {
                spdlog::warn("budgets: failed to read the cluster's spend: {}", st.message());
              }
              last_error = st.ok() ? "" : st.message();
              std::unique_lock lock(mu);
              cv.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });
            }
          });
    }
  }
  const std::string isolation = (*spawner)->isolation();
  metrics::StatsRing live;
  gateway::Api api(gateway::ApiDeps{
      registry->get(), &pools, &logs, active_meter, &config, *key, isolation, &metrics, keys->get(),
      &dispatcher, gpus.get(), config.durable_events ? events->get() : nullptr, &live, jobs->get(),
      models->get(), (*spawner)->tmp_storage(), membership.get(),
      membership != nullptr ? cluster::ClusterToken(*master) : ""});

  // Functions with min_instances get their warm instances now.
  for (const auto& f : (*registry)->List()) {
    if (!f.versions.empty() && f.versions.back()->manifest.min_instances > 0) {
      pools.Get(f.versions.back(), /*latest=*/true);
    }
  }
  // Templates for the versions called in the last 24 hours (from the meter's records), so
  // their first calls after a restart fork too.
  if (config.templates && active_meter != nullptr) {
    auto recent = active_meter->RecentVersions(WallNowMicros() - 24LL * 3600 * 1'000'000);
    if (!recent.ok()) spdlog::warn("no template prewarm: {}", recent.status().message());
    std::set<std::pair<std::string, std::string>> called;
    if (recent.ok()) called.insert(recent->begin(), recent->end());
    for (const auto& f : (*registry)->List()) {
      for (const auto& v : f.versions) {
        if (!called.count({v->function, std::to_string(v->version)})) continue;
        pools.Get(v, /*latest=*/v == f.versions.back())->Prewarm();
      }
    }
  }

  RaiseFdLimit();
  gateway::HttpOptions http_options;
  http_options.header_timeout_ms = config.header_timeout_ms;
  http_options.idle_timeout_ms = config.idle_timeout_ms;
  http_options.max_connections = config.max_connections;
  http_options.max_connections_per_ip = config.max_connections_per_ip;
  http_options.max_upload_bytes_in_flight = config.max_upload_bytes_in_flight;
  http_options.spool_dir = config.data_dir + "/tmp";  // the registry keeps it, empty at start
  http_options.reserve_fd = true;
  http_options.strand_per_connection = false;  // each shard is one thread
  bool stopping = false;
  // The connection limits hold for the listener as a whole, across its shards' acceptors.
  auto listener = gateway::NewListenerState(http_options);
  for (int i = 0; i < threads; ++i) {
    asio::co_spawn(
        *shards[i],
        gateway::AcceptLoop(*acceptors[i], shards[i]->get_executor(), api, nullptr, listener),
        asio::detached);
  }
  asio::co_spawn(ioc, WatchExits((*spawner)->exit_fd(), pools), asio::detached);
  asio::co_spawn(ioc, TickLoop(pools, live, stopping), asio::detached);
  std::unique_ptr<cluster::DrainMover> drain_mover;
  if (membership != nullptr) {
    membership->Start(ioc.get_executor());
    // A drained node's warm work moves to the others (cluster/drain_mover.h).
    drain_mover = std::make_unique<cluster::DrainMover>(membership.get(), &pools, registry->get());
    asio::co_spawn(ioc, drain_mover->Run(stopping), asio::detached);
  }
  if (shares != nullptr) shares->Start(ioc.get_executor());
  if (Status st = api.ResumeEvents(ioc.get_executor()); !st.ok()) {
    spdlog::critical("failed to resume queued event invocations: {}", st.message());
    return 1;
  }
  if (Status st = api.ResumeJobs(ioc.get_executor()); !st.ok()) {
    spdlog::critical("failed to resume jobs: {}", st.message());
    return 1;
  }

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int sig) {
    spdlog::info("signal {}: stopping: no new connections, finishing in-flight invocations", sig);
    // Each acceptor on its own shard's thread.
    for (int i = 0; i < threads; ++i) {
      asio::post(*shards[i], [&a = *acceptors[i]] {
        boost::system::error_code ignored;
        a.close(ignored);
      });
    }
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          // Leave first: the others stop counting on this node at once, not at its lease's end.
          if (membership != nullptr) co_await membership->Leave();
          asio::steady_timer timer(ioc);
          auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(config.shutdown_grace_ms);
          while (!pools.Quiet() && std::chrono::steady_clock::now() < deadline) {
            timer.expires_after(std::chrono::milliseconds(20));
            co_await timer.async_wait(asio::use_awaitable);
          }
          if (!pools.Quiet()) spdlog::warn("grace period over: failing what is still running");
          // This node's shares of tenant limits go back once its calls are done (or failed).
          if (shares != nullptr) co_await shares->Leave();
          pools.Shutdown();
          // Let the posted completions write their responses.
          timer.expires_after(std::chrono::milliseconds(50));
          co_await timer.async_wait(asio::use_awaitable);
          stopping = true;
          for (auto& shard : shards) shard->stop();
        },
        asio::detached);
  });

  spdlog::info("isolation: {}", isolation);
  std::printf("thaw listening on http://%s:%u\n", bound.address().to_string().c_str(),
              bound.port());
  std::fflush(stdout);

  // A shard's loop runs until shutdown stops it, even while it has nothing to do.
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
  for (auto& shard : shards) keep_running.push_back(asio::make_work_guard(*shard));
  // pin_shards: each shard's thread on one CPU. Shard 0's is the main thread, pinned last, so
  // the threads started before (meter and log writers, spawn replies) run anywhere.
  const auto pin = [&](int shard) {
    if (!config.pin_shards) return;
    if (Status st = PinThisThread(ShardCpu(cpus, shard)); !st.ok()) {
      spdlog::warn("shard {} not pinned: {}", shard, st.message());
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) {
    workers.emplace_back([&, i] {
      SetCurrentShard(i);
      pin(i);
      shards[i]->run();
    });
  }
  SetCurrentShard(0);
  pin(0);
  ioc.run();
  for (auto& t : workers) t.join();
  changes.reset();                // no more reloads
  fetcher.reset();                // its thread may ask the membership for peers
  (*spawner)->StopReplyThread();  // its callbacks use the pools, which go before it
  endpoints.CloseAll();
  if (Status st = (*meter)->Flush(); !st.ok()) {
    spdlog::error("meter records could not be written: {}", st.message());
  }
  spdlog::info("stopped");
  // The shards' io_contexts are left to the process's exit, not destroyed: their queued
  // handlers own objects registered with other shards' reactors (an instance's log pipes on
  // shard 0, its channel and Runtime API on its own shard), and destroying one context's
  // handlers after another context is gone frees those into a destroyed reactor (heap
  // corruption at shutdown).
  for (auto& shard : shards) (void)shard.release();
  return 0;
}

}  // namespace thaw::server

// Config: every knob of `thaw serve`, parsed in one pure step from the environment (THAW_*)
// and then command-line flags (which win). Each malformed value is rejected by name.
// The table in README.md lists the same knobs: keep them in step with kKnobs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "meter/cost.h"

namespace thaw::server {

struct Config {
  std::string listen = "127.0.0.1:8080";
  std::string data_dir = ".thaw";
  // Where durable state lives: empty for SQLite in <data_dir>/thaw.db, or a postgres:// URL.
  std::string store;
  // The file holding the master key API key secrets are derived from (mode 0600, never
  // logged): nodes of one cluster must share it. Empty: <data_dir>/master.key, made on first
  // start.
  std::string master_key_file;
  std::string log_level = "info";
  int64_t threads = 0;  // 0: one per core
  // Thread-per-core for real: shard i's thread runs only on the i-th CPU thaw may use.
  bool pin_shards = false;
  // An instance of a one-vCPU function (memory_mb <= 1769, no GPU) runs only on its shard's
  // CPU (the one pin_shards gives it), following its native channel when that moves shard.
  bool pin_instances = false;
  std::string runtimes_dir;  // empty: <dir of the thaw binary>/runtimes
  std::string python = "/usr/bin/python3";
  std::string node = "/usr/bin/node";
  std::string region = "us-east-1";
  int64_t max_payload_bytes = 6 * 1024 * 1024;
  int64_t max_bundle_bytes = 256 * 1024 * 1024;
  int64_t max_unpacked_bytes = 1024LL * 1024 * 1024;
  int64_t max_queue = 256;
  int64_t queue_timeout_ms = 10'000;
  int64_t init_timeout_ms = 10'000;
  int64_t shutdown_grace_ms = 30'000;
  int64_t log_lines = 10'000;
  // Where jailed instances' /tmp disks (ephemeral_storage_mb) are made; empty:
  // <data_dir>/ephemeral.
  std::string ephemeral_storage_dir;
  int64_t pids_max = 1024;         // processes and threads per instance (cgroup pids limit)
  int64_t instance_uids = 10'000;  // jailed instances live at once (each has its own uid)
  int64_t ready_shells = 2;        // jailed sandboxes kept ready per kind for cold starts at once
  int64_t async_queue_events = 10'000;  // Event invocations waiting or running, all tenants
  int64_t max_queued_events = 100'000;  // Event invocations waiting or running, per function
  int64_t async_retry_base_ms = 1000;   // first retry of a failed Event invocation
  int64_t job_retention_hours = 24;     // a finished job's input and output are kept this long
  // false: Event invocations live in memory only (a stop loses them; no dead letters or
  // event invoke configs), to measure what durability costs.
  bool durable_events = true;
  // true: webhook destinations may post to loopback, private and link-local addresses.
  bool webhook_private_addresses = false;
  // PEM CA certificates https webhooks trust beside the system's (empty: the system's only).
  std::string webhook_ca_file;
  int64_t log_rate_bytes = 1 << 20;  // what one instance may print per second (and burst)
  int64_t node_memory_mb = 0;  // memory_mb all live instances may add up to; 0: machine less 10%
  bool auth = true;
  bool sandbox = true;    // jail instances when root; false runs plain processes
  bool templates = true;  // fork python3 instances from a per-version template
  // thaw's own runtimes take events on a native channel instead of the HTTP Runtime API
  bool runtime_channel = true;
  int64_t price_init_gb_second_pico = 16'666'700;  // template init, as Lambda's INIT phase
  bool metering = true;  // false: no invocation records (benchmarks); budgets are not enforced
  // Price sheets (integers; see meter/cost.h). Lambda: requests and billed GB-s; actual use:
  // requests, CPU-s and peak GB-s; the advisor's always-on instance price per hour.
  int64_t price_request_micro_per_million = 200'000;  // $0.20 / million requests
  int64_t price_gb_second_pico = 16'666'700;          // $0.0000166667 / GB-s
  int64_t price_cpu_second_pico = 24'000'000;         // $0.000024 / CPU-s
  int64_t price_peak_gb_second_pico = 2'500'000;      // $0.0000025 / peak GB-s
  int64_t price_instance_hour_micro = 20'800;         // $0.0208 / instance-hour
  // The API listener's limits (0: none) and whose X-Forwarded-For is believed.
  int64_t header_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  int64_t max_connections = 4096;
  int64_t max_connections_per_ip = 512;
  int64_t max_upload_bytes_in_flight = 512LL << 20;
  std::string trusted_proxies;  // comma-separated addresses and CIDRs; empty: none
  // Function logs (logs/log_store.h): the in-memory ring's bytes per function, the writer
  // queue's bytes, and per-function file rotation.
  int64_t log_ring_bytes = 4LL << 20;
  int64_t log_queue_bytes = 16LL << 20;
  int64_t log_file_bytes = 64LL << 20;
  int64_t log_files_kept = 3;
  // GPUs: empty asks NVML (dlopen'd at start); "none" means no GPUs; else a static list
  // ("0,1" or "0:H200:141"; sandbox/gpu.h). Their device nodes are nvidia<N> in gpu_device_dir.
  std::string gpus;
  std::string gpu_device_dir = "/dev";
  int64_t price_gpu_second_pico = 1'097'000'000;  // $0.001097 / GPU-s (Modal's H100; assumed)
  int64_t max_stream_bytes = 20 * 1024 * 1024;    // a streamed response, in all
  // Per million tokens OpenAI-style functions report, on both sheets; none by default.
  int64_t price_prompt_tokens_micro_per_million = 0;
  int64_t price_completion_tokens_micro_per_million = 0;
  // The model store (models/store.h): bytes each tenant may hold, and one file's limit.
  int64_t models_quota_bytes = 20LL << 30;
  int64_t max_model_file_bytes = 8LL << 30;
  // A cluster (cluster/membership.h): etcd's http://HOST:PORT (empty: this node stands alone),
  // this node's name in it (empty: the host name), the host:port others reach its API at
  // (empty: listen), and the TTL of its etcd lease.
  std::string etcd;
  std::string node_name;
  std::string advertise;
  int64_t node_lease_s = 5;
  // Nodes sharing one PostgreSQL: how long a node's hold on its Event invocations outlives its
  // last renewal; past it, another node takes them over (queue/event_queue.h).
  int64_t event_lease_s = 5;
};

struct Knob {
  const char* name;  // flag --name (with '-' for '_') and env THAW_NAME
  const char* help;
};
extern const std::vector<Knob> kKnobs;

// `values` maps knob names to raw text (from env or flags). Unknown names are errors.
Status ApplyConfigValues(const std::map<std::string, std::string>& values, Config& config);
// The price sheet the price_* knobs set.
meter::PriceSheet PriceSheetFrom(const Config& config);
// Collects THAW_<KNOB> variables from an environment block ("KEY=value" strings).
std::map<std::string, std::string> ConfigValuesFromEnv(char** envp);

}  // namespace thaw::server

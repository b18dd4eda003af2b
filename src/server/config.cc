#include "server/config.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "common/cidr.h"
#include "sandbox/gpu.h"

namespace thaw::server {

const std::vector<Knob> kKnobs = {
    {"listen", "address:port of the API (port 0 picks a free one)"},
    {"data_dir", "where functions, bundles, the database, logs and admin.key live"},
    {"store", "durable state: empty for SQLite in the data dir, or postgres://user@host:port/db"},
    {"master_key_file", "the master key (0600), shared by a cluster's nodes (default: data dir)"},
    {"log_level", "trace, debug, info, warn, error"},
    {"threads",
     "shards: threads, each with its own event loop and API acceptor; 0 means one per core"},
    {"pin_shards", "pin shard i's thread to the i-th CPU thaw may use (true/false)"},
    {"pin_instances",
     "pin an instance of a function with memory_mb <= 1769 and no GPU to its shard's CPU"},
    {"runtimes_dir", "folder holding the shipped runtimes (default: beside the binary)"},
    {"python", "interpreter for the python3 runtime"},
    {"node", "node binary for the nodejs runtime"},
    {"region", "AWS region reported to functions (AWS_REGION, ARNs)"},
    {"max_payload_bytes", "largest synchronous invoke payload (413 above)"},
    {"max_bundle_bytes", "largest uploaded bundle archive"},
    {"max_unpacked_bytes", "largest total size a bundle may unpack to"},
    {"max_queue", "requests per function version that may wait for an instance"},
    {"queue_timeout_ms", "longest a request waits for an instance before a 429"},
    {"init_timeout_ms", "longest an instance may take to initialise"},
    {"shutdown_grace_ms", "on SIGTERM, how long in-flight invocations may finish"},
    {"log_lines", "log lines kept in memory per function"},
    {"ephemeral_storage_dir",
     "folder on the disk jailed instances' /tmp images live on (default: <data_dir>/ephemeral)"},
    {"pids_max", "processes and threads per instance (cgroup pids limit; RLIMIT_NPROC rootless)"},
    {"instance_uids", "jailed instances live at once: uids leased host-wide in blocks of 1,000"},
    {"ready_shells",
     "jailed sandboxes kept ready (per network mode and /tmp size) for cold starts"},
    {"async_queue_events", "Event invocations waiting or running, shared fairly by tenants"},
    {"max_queued_events", "Event invocations waiting or running per function (429 past it)"},
    {"async_retry_base_ms", "delay before a failed Event invocation's first retry"},
    {"job_retention_hours", "how long a finished job keeps its input and output"},
    {"durable_events", "commit Event invocations to thaw.db before the 202 (false: memory only)"},
    {"webhook_private_addresses",
     "let webhook destinations post to loopback, private and link-local addresses (true/false)"},
    {"webhook_ca_file", "PEM CA certificates https webhooks trust beside the system's"},
    {"log_rate_bytes", "bytes per second one instance may print; faster, its pipe fills"},
    {"node_memory_mb",
     "memory_mb of all live instances together (0: the machine's less 10%, >= 1 GB)"},
    {"auth", "require an API key (true/false); only false on a loopback address"},
    {"sandbox", "jail instances: as root, or in user namespaces when not root (true/false)"},
    {"templates", "fork python3 instances from a per-version template (true/false)"},
    {"runtime_channel",
     "thaw's own runtimes take events on a native channel, not HTTP (true/false)"},
    {"price_init_gb_second_pico", "pico-dollars per GB-second of template init (init_gb_s)"},
    {"metering", "record every invocation for usage, bills and budgets (true/false)"},
    {"price_request_micro_per_million", "micro-dollars per million requests (both sheets)"},
    {"price_gb_second_pico", "pico-dollars per billed GB-second (Lambda sheet)"},
    {"price_cpu_second_pico", "pico-dollars per CPU-second used (actual-use sheet)"},
    {"price_peak_gb_second_pico", "pico-dollars per peak GB-second used (actual-use sheet)"},
    {"price_instance_hour_micro", "micro-dollars per always-on instance hour (advisor)"},
    {"header_timeout_ms", "longest a client may take to send a request's headers (0: no limit)"},
    {"idle_timeout_ms", "keep-alive: how long an idle connection stays open (0: no limit)"},
    {"max_connections", "open API connections at once; more get 503 (0: no limit)"},
    {"max_connections_per_ip", "open API connections from one address; more get 429 (0: none)"},
    {"max_upload_bytes_in_flight", "bundle upload bytes being received at once; more get 503"},
    {"trusted_proxies", "addresses/CIDRs whose X-Forwarded-For is believed (default none)"},
    {"log_ring_bytes", "bytes of log lines kept in memory per function"},
    {"log_queue_bytes", "bytes of log lines waiting for the disk (more are dropped and counted)"},
    {"log_file_bytes", "a function's log file rotates before it would pass this size"},
    {"log_files_kept", "rotated log files kept per function (0: only the current one)"},
    {"gpus", "GPUs: empty asks NVML; \"none\"; or a static list \"0,1\" / \"0:H200:141\""},
    {"gpu_device_dir", "where GPU device nodes (nvidiaN, nvidiactl, nvidia-uvm) are"},
    {"price_gpu_second_pico", "pico-dollars per GPU-second held (both sheets, advisor)"},
    {"max_stream_bytes", "largest streamed function response, in all (the stream ends in error)"},
    {"price_prompt_tokens_micro_per_million", "micro-dollars per million prompt tokens (both)"},
    {"price_completion_tokens_micro_per_million",
     "micro-dollars per million completion tokens (both sheets)"},
    {"models_quota_bytes", "model store bytes each tenant may hold (distinct files; 507 past it)"},
    {"max_model_file_bytes", "largest single file pushed to the model store (413 above)"},
    {"etcd", "join a cluster: etcd's http://HOST:PORT (default: none, this node stands alone)"},
    {"node_name", "this node's name in the cluster (default: the host name)"},
    {"advertise", "host:port other nodes reach this node's API at (default: listen)"},
    {"node_lease_s", "TTL of this node's etcd lease: a dead node leaves within it"},
    {"event_lease_s",
     "nodes on one PostgreSQL: a dead node's Event invocations are taken over this long after"},
};

namespace {

constexpr int64_t kMaxPrice = 1'000'000'000'000;  // keeps price x usage sums inside __int128

Status ParseBool(const std::string& name, const std::string& v, bool& out) {
  if (v != "true" && v != "false") {
    return InvalidArgument("config " + name + ": expected true or false, got '" + v + "'");
  }
  out = v == "true";
  return Status::Ok();
}

Status ParseInt(const std::string& name, const std::string& text, int64_t lo, int64_t hi,
                int64_t& out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0' || v < lo || v > hi) {
    return InvalidArgument("config " + name + ": expected an integer between " +
                           std::to_string(lo) + " and " + std::to_string(hi) + ", got '" + text +
                           "'");
  }
  out = v;
  return Status::Ok();
}

// http://HOST:PORT with a numeric port, nothing after it but an optional '/'.
bool EtcdUrlShape(const std::string& v) {
  constexpr std::string_view kScheme = "http://";
  if (!v.starts_with(kScheme)) return false;
  std::string rest = v.substr(kScheme.size());
  if (rest.ends_with("/")) rest.pop_back();
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) return false;
  for (size_t i = colon + 1; i < rest.size(); ++i) {
    if (rest[i] < '0' || rest[i] > '9') return false;
  }
  return rest.find('/') == std::string::npos;
}

bool NodeNameShape(const std::string& v) {
  if (v.empty() || v.size() > 63) return false;
  for (char ch : v) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

Status ApplyConfigValues(const std::map<std::string, std::string>& values, Config& c) {
  for (const auto& [name, v] : values) {
    if (name == "listen") {
      if (v.rfind(':') == std::string::npos) {
        return InvalidArgument("config listen: expected ADDRESS:PORT, got '" + v + "'");
      }
      c.listen = v;
    } else if (name == "data_dir") {
      if (v.empty()) return InvalidArgument("config data_dir: must not be empty");
      c.data_dir = v;
    } else if (name == "store") {
      if (!v.empty() && !v.starts_with("postgres://") && !v.starts_with("postgresql://")) {
        return InvalidArgument(
            "config store: expected a postgres://user@host:port/db URL (or empty for SQLite in "
            "the data dir), got '" +
            v + "'");
      }
      c.store = v;
    } else if (name == "master_key_file") {
      if (!v.empty() && !v.starts_with("/")) {
        return InvalidArgument("config master_key_file: expected an absolute path, got '" + v +
                               "'");
      }
      c.master_key_file = v;
    } else if (name == "log_level") {
      if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error") {
        return InvalidArgument("config log_level: expected trace|debug|info|warn|error, got '" + v +
                               "'");
      }
      c.log_level = v;
    } else if (name == "threads") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 256, c.threads));
    } else if (name == "pin_shards") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.pin_shards));
    } else if (name == "pin_instances") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.pin_instances));
    } else if (name == "runtimes_dir") {
      c.runtimes_dir = v;
    } else if (name == "python") {
      c.python = v;
    } else if (name == "node") {
      c.node = v;
    } else if (name == "region") {
      c.region = v;
    } else if (name == "max_payload_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1024, 1LL << 30, c.max_payload_bytes));
    } else if (name == "max_bundle_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1024, 1LL << 34, c.max_bundle_bytes));
    } else if (name == "max_unpacked_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1024, 1LL << 36, c.max_unpacked_bytes));
    } else if (name == "max_queue") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 1'000'000, c.max_queue));
    } else if (name == "queue_timeout_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 3'600'000, c.queue_timeout_ms));
    } else if (name == "init_timeout_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 3'600'000, c.init_timeout_ms));
    } else if (name == "shutdown_grace_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 3'600'000, c.shutdown_grace_ms));
    } else if (name == "log_lines") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 10, 10'000'000, c.log_lines));
    } else if (name == "ephemeral_storage_dir") {
      if (v.empty()) return InvalidArgument("config ephemeral_storage_dir: must not be empty");
      c.ephemeral_storage_dir = v;
    } else if (name == "pids_max") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 8, 1 << 22, c.pids_max));
    } else if (name == "log_rate_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 16 << 10, 1LL << 34, c.log_rate_bytes));
    } else if (name == "node_memory_mb") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, int64_t{1} << 40, c.node_memory_mb));
    } else if (name == "async_queue_events") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 10'000'000, c.async_queue_events));
    } else if (name == "max_queued_events") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 10'000'000, c.max_queued_events));
    } else if (name == "async_retry_base_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 3'600'000, c.async_retry_base_ms));
    } else if (name == "job_retention_hours") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 87'600, c.job_retention_hours));
    } else if (name == "webhook_private_addresses") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.webhook_private_addresses));
    } else if (name == "webhook_ca_file") {
      c.webhook_ca_file = v;  // read (and refused when unreadable) at start
    } else if (name == "durable_events") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.durable_events));
    } else if (name == "instance_uids") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 100'000, c.instance_uids));
    } else if (name == "ready_shells") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 1000, c.ready_shells));
    } else if (name == "auth") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.auth));
    } else if (name == "sandbox") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.sandbox));
    } else if (name == "templates") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.templates));
    } else if (name == "runtime_channel") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.runtime_channel));
    } else if (name == "price_init_gb_second_pico") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_init_gb_second_pico));
    } else if (name == "metering") {
      THAW_RETURN_IF_ERROR(ParseBool(name, v, c.metering));
    } else if (name == "price_request_micro_per_million") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_request_micro_per_million));
    } else if (name == "price_gb_second_pico") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_gb_second_pico));
    } else if (name == "price_cpu_second_pico") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_cpu_second_pico));
    } else if (name == "price_peak_gb_second_pico") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_peak_gb_second_pico));
    } else if (name == "price_instance_hour_micro") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_instance_hour_micro));
    } else if (name == "header_timeout_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 3'600'000, c.header_timeout_ms));
    } else if (name == "idle_timeout_ms") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 86'400'000, c.idle_timeout_ms));
    } else if (name == "max_connections") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 10'000'000, c.max_connections));
    } else if (name == "max_connections_per_ip") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 10'000'000, c.max_connections_per_ip));
    } else if (name == "max_upload_bytes_in_flight") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 1LL << 40, c.max_upload_bytes_in_flight));
    } else if (name == "models_quota_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 1LL << 50, c.models_quota_bytes));
    } else if (name == "max_model_file_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 1LL << 44, c.max_model_file_bytes));
    } else if (name == "max_stream_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1024, 1LL << 32, c.max_stream_bytes));
    } else if (name == "trusted_proxies") {
      if (auto ranges = ParseCidrList(v); !ranges.ok()) {
        return InvalidArgument("config trusted_proxies: " + ranges.status().message());
      }
      c.trusted_proxies = v;
    } else if (name == "log_ring_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 64 << 10, 1LL << 34, c.log_ring_bytes));
    } else if (name == "log_queue_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 64 << 10, 1LL << 34, c.log_queue_bytes));
    } else if (name == "log_file_bytes") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 64 << 10, 1LL << 40, c.log_file_bytes));
    } else if (name == "log_files_kept") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, 1000, c.log_files_kept));
    } else if (name == "gpus") {
      if (v != "none") {
        if (auto list = sandbox::ParseStaticGpus(v); !list.ok()) {
          return InvalidArgument("config " + list.status().message());
        }
      }
      c.gpus = v;
    } else if (name == "gpu_device_dir") {
      if (!v.starts_with("/")) {
        return InvalidArgument("config gpu_device_dir: expected an absolute path, got '" + v + "'");
      }
      c.gpu_device_dir = v;
    } else if (name == "price_gpu_second_pico") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 0, kMaxPrice, c.price_gpu_second_pico));
    } else if (name == "price_prompt_tokens_micro_per_million") {
      THAW_RETURN_IF_ERROR(
          ParseInt(name, v, 0, kMaxPrice, c.price_prompt_tokens_micro_per_million));
    } else if (name == "price_completion_tokens_micro_per_million") {
      THAW_RETURN_IF_ERROR(
          ParseInt(name, v, 0, kMaxPrice, c.price_completion_tokens_micro_per_million));
    } else if (name == "etcd") {
      if (!v.empty() && !EtcdUrlShape(v)) {
        return InvalidArgument("config etcd: expected http://HOST:PORT, got '" + v + "'");
      }
      c.etcd = v;
    } else if (name == "node_name") {
      if (!NodeNameShape(v)) {
        return InvalidArgument(
            "config node_name: expected 1-63 letters, digits, '-', '_' or '.', got '" + v + "'");
      }
      c.node_name = v;
    } else if (name == "advertise") {
      if (!v.empty() && (v.rfind(':') == std::string::npos || v.rfind(':') + 1 == v.size())) {
        return InvalidArgument("config advertise: expected HOST:PORT, got '" + v + "'");
      }
      c.advertise = v;
    } else if (name == "node_lease_s") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 2, 600, c.node_lease_s));
    } else if (name == "event_lease_s") {
      THAW_RETURN_IF_ERROR(ParseInt(name, v, 1, 600, c.event_lease_s));
    } else {
      return InvalidArgument("config: unknown setting '" + name + "'");
    }
  }
  return Status::Ok();
}

std::map<std::string, std::string> ConfigValuesFromEnv(char** envp) {
  std::map<std::string, std::string> out;
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    if (!kv.starts_with("THAW_")) continue;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string key = kv.substr(5, eq - 5);
    // THAW_SERVER and THAW_API_KEY belong to the CLI client, not the server.
    if (key == "SERVER" || key == "API_KEY") continue;
    for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out[key] = kv.substr(eq + 1);
  }
  return out;
}

meter::PriceSheet PriceSheetFrom(const Config& c) {
  meter::PriceSheet p;
  p.request_pico = c.price_request_micro_per_million;  // micro per million = pico per request
  p.gb_second_pico = c.price_gb_second_pico;
  p.cpu_second_pico = c.price_cpu_second_pico;
  p.peak_gb_second_pico = c.price_peak_gb_second_pico;
  p.instance_hour_micro = c.price_instance_hour_micro;
  p.gpu_second_pico = c.price_gpu_second_pico;
  p.prompt_token_pico = c.price_prompt_tokens_micro_per_million;  // micro per million = pico
  p.completion_token_pico = c.price_completion_tokens_micro_per_million;
  p.init_gb_second_pico = c.price_init_gb_second_pico;
  return p;
}

}  // namespace thaw::server

// Manifest: a function's thaw.yaml, parsed and validated in one pure step. Every malformed key
// is rejected with the field's name and the reason; nothing is silently ignored.
// Value type; thread-safe to copy.
#pragma once

#include <boost/json/fwd.hpp>
#include <boost/json/storage_ptr.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace thaw::registry {

enum class Runtime { kPython3, kNodejs, kCpp, kProvided };

const char* RuntimeName(Runtime runtime);

// What an instance may reach over the network. kNone: a network namespace of its own holding
// only loopback (it needs the sandbox; see docs/sandbox.md).
enum class Network { kEgress, kNone };

const char* NetworkName(Network network);

// gpu: whole GPUs an instance holds, exclusively, for its lifetime (src/dispatch/gpu_assign.h).
struct GpuSpec {
  int64_t count = 0;      // 0: no GPU
  int64_t memory_gb = 0;  // the least memory each GPU must have; 0: any
  std::string kind;       // a substring the GPU's name must contain ("H200"); empty: any
};

inline constexpr int64_t kMaxGpusPerInstance = 8;

// openai: the OpenAI-compatible models a function serves (src/gateway/openai_api.h), e.g.
// `openai: {models: [tiny-chat], kind: chat}`. No models: the function serves none. An
// embeddings model may give its native vector size (`dimensions: 64`): the gateway then lets a
// request ask for up to that many, and refuses `dimensions` to a model that gives none.
enum class OpenAiKind { kChat, kCompletions, kEmbeddings };

const char* OpenAiKindName(OpenAiKind kind);

struct OpenAiSpec {
  std::vector<std::string> models;  // names as clients send them in `model`
  OpenAiKind kind = OpenAiKind::kChat;
  int64_t dimensions = 0;  // kind embeddings only; 0: the model takes no `dimensions`
};

// Dynamic batching (`batch: {max_size: 16, max_wait_ms: 5}`): up to max_size concurrent calls
// to one version go to the handler as one event, {"batch": [event, ...]}; a call waits at most
// max_wait_ms for others to join (pool/batch_policy.h). max_size 1 (the default): no batching.
struct BatchSpec {
  int64_t max_size = 1;
  int64_t max_wait_ms = 0;
  bool enabled() const { return max_size > 1; }
};
inline constexpr int64_t kMaxBatchSize = 1024;
inline constexpr int64_t kMaxBatchWaitMs = 10'000;

// keep_alive: how long idle instances stay. kAdaptive learns it from the function's own idle
// times (pool/keep_alive.h), falling back to idle_timeout_s; kFixed keeps them idle_timeout_s.
// An idle_timeout_s of seconds without a keep_alive selects kFixed.
enum class KeepAlive { kAdaptive, kFixed };

const char* KeepAliveName(KeepAlive keep_alive);

inline constexpr int64_t kMaxOpenAiDimensions = 65536;

// models: a model from the store (src/models/store.h) that instances see read-only at `mount`.
// `digest` is empty as parsed; the deploy fills it from the tag (the model's manifest digest),
// so the version keeps the files it was deployed with when the tag moves.
struct ModelRef {
  std::string name;
  std::string tag = "latest";
  std::string mount;
  std::string digest;
};

// ephemeral_storage_mb: Lambda's default and bounds.
inline constexpr int64_t kDefaultEphemeralStorageMb = 512;
inline constexpr int64_t kMaxEphemeralStorageMb = 10240;

struct Manifest {
  std::string name;
  Runtime runtime = Runtime::kProvided;
  std::string handler;
  int64_t memory_mb = 128;
  // The size of /tmp (Lambda's EphemeralStorage): a disk of its own, not counted against
  // memory_mb (sandbox/tmp_disk.h).
  int64_t ephemeral_storage_mb = kDefaultEphemeralStorageMb;
  int64_t timeout_ms = 3000;  // Lambda's default of 3 s
  int64_t concurrency = 1;    // requests one instance serves at once
  int64_t min_instances = 0;
  int64_t max_instances = 8;
  int64_t idle_timeout_s = 300;  // kFixed's window; kAdaptive's fallback
  KeepAlive keep_alive = KeepAlive::kAdaptive;
  std::map<std::string, std::string> environment;
  // The runtime as the user named it ("python3.12"), reported back by the Lambda API; empty
  // means RuntimeName(runtime).
  std::string runtime_name;
  bool url_public = false;  // url_auth: none — the function URL needs no key
  std::string description;  // free text (Lambda's Description)
  Network network = Network::kEgress;
  // template: auto (the default) forks new instances from a template of this version where
  // the server allows it (python3; docs/sandbox.md); off always starts them fresh.
  bool template_off = false;
  GpuSpec gpu;
  OpenAiSpec openai;
  BatchSpec batch;
  // schedule: EventBridge rate(...) / cron(...) expressions (queue/schedule.h), each firing an
  // Event invocation; catch_up: a run missed while the server was down fires once at start.
  std::vector<std::string> schedules;
  bool catch_up = true;

  std::vector<ModelRef> models;

  // Event destinations (on_success, on_failure): an http(s) URL, or a function of the same
  // tenant by name, NAME:QUALIFIER or ARN; empty: none. An event invoke config's win.
  std::string on_success;
  std::string on_failure;
};

// Maps a runtime name (thaw's, or a Lambda name such as python3.11) onto a Runtime. The error
// names the `runtime` field of thaw.yaml.
StatusOr<Runtime> ParseRuntime(const std::string& name);

// Environment variable names: valid shell names, and not one the platform sets itself.
bool IsValidEnvName(const std::string& key);
bool IsReservedEnvName(const std::string& key);

// Lambda's limit on a function's variables: names and values together, in bytes.
inline constexpr size_t kMaxEnvironmentBytes = 4096;
// What is wrong with a function's variables, as {field, reason} ("environment.NAME" for one
// variable, "environment" for the total), or nothing: bad or reserved names, NUL bytes (an
// environment block cannot carry them) and more than kMaxEnvironmentBytes in all.
std::optional<std::pair<std::string, std::string>> EnvironmentProblem(
    const std::map<std::string, std::string>& environment);

// The checks ParseManifest applies, for a manifest built by other means (the Lambda API).
Status CheckManifest(const Manifest& m);

// Parses thaw.yaml text. `fallback_name` is used when the file has no `name`.
StatusOr<Manifest> ParseManifest(const std::string& yaml_text, const std::string& fallback_name);

// A function name as Lambda allows it: 1-64 of [A-Za-z0-9_-].
bool IsValidFunctionName(const std::string& name);
// A function name as thaw stores it: NAME, or TENANT.NAME (see common/tenant.h); never
// "default.NAME", which is stored as NAME.
bool IsValidInternalFunctionName(const std::string& name);

// Round-trips the validated manifest through the store as JSON.
std::string ManifestToJson(const Manifest& m);
// `sp`: where the object's memory comes from (a request's monotonic resource, say).
boost::json::object ManifestToJsonObject(const Manifest& m, boost::json::storage_ptr sp = {});
StatusOr<Manifest> ManifestFromJson(const std::string& json_text);

}  // namespace thaw::registry

// Manifest: a function's thaw.yaml, parsed and validated in one pure step. Every malformed key
// is rejected with the field's name and the reason; nothing is silently ignored.
// Value type; thread-safe to copy.
#pragma once

#include <boost/json/fwd.hpp>
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
// `openai: {models: [tiny-chat], kind: chat}`. No models: the function serves none.
enum class OpenAiKind { kChat, kCompletions, kEmbeddings };

const char* OpenAiKindName(OpenAiKind kind);

struct OpenAiSpec {
  std::vector<std::string> models;  // names as clients send them in `model`
  OpenAiKind kind = OpenAiKind::kChat;
};

struct Manifest {
  std::string name;
  Runtime runtime = Runtime::kProvided;
  std::string handler;
  int64_t memory_mb = 128;
  int64_t timeout_ms = 3000;  // Lambda's default of 3 s
  int64_t concurrency = 1;    // requests one instance serves at once
  int64_t min_instances = 0;
  int64_t max_instances = 8;
  int64_t idle_timeout_s = 300;
  std::map<std::string, std::string> environment;
  // The runtime as the user named it ("python3.12"), reported back by the Lambda API; empty
  // means RuntimeName(runtime).
  std::string runtime_name;
  bool url_public = false;  // url_auth: none — the function URL needs no key
  std::string description;  // free text (Lambda's Description)
  Network network = Network::kEgress;
  GpuSpec gpu;
  OpenAiSpec openai;
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
boost::json::object ManifestToJsonObject(const Manifest& m);
StatusOr<Manifest> ManifestFromJson(const std::string& json_text);

}  // namespace thaw::registry

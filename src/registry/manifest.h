// Manifest: a function's thaw.yaml, parsed and validated in one pure step. Every malformed key
// is rejected with the field's name and the reason; nothing is silently ignored.
// Value type; thread-safe to copy.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"

namespace thaw::registry {

enum class Runtime { kPython3, kNodejs, kCpp, kProvided };

const char* RuntimeName(Runtime runtime);

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
};

// Parses thaw.yaml text. `fallback_name` is used when the file has no `name`.
StatusOr<Manifest> ParseManifest(const std::string& yaml_text, const std::string& fallback_name);

// A function name as Lambda allows it: 1-64 of [A-Za-z0-9_-].
bool IsValidFunctionName(const std::string& name);

// Round-trips the validated manifest through the store as JSON.
std::string ManifestToJson(const Manifest& m);
boost::json::object ManifestToJsonObject(const Manifest& m);
StatusOr<Manifest> ManifestFromJson(const std::string& json_text);

}  // namespace thaw::registry

#include "registry/manifest.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <set>

#include "common/json_text.h"
#include "common/tenant.h"
#include "models/names.h"
#include "queue/schedule.h"

namespace thaw::registry {
namespace {

namespace json = boost::json;

Status FieldError(const std::string& field, const std::string& reason) {
  return InvalidArgument("thaw.yaml: field '" + field + "': " + reason);
}

StatusOr<int64_t> ReadInt(const YAML::Node& node, const std::string& field, int64_t lo,
                          int64_t hi) {
  if (!node.IsScalar()) return FieldError(field, "must be an integer");
  int64_t value = 0;
  try {
    value = node.as<int64_t>();
  } catch (const YAML::Exception&) {
    return FieldError(field, "must be an integer, got '" + node.Scalar() + "'");
  }
  if (value < lo || value > hi) {
    return FieldError(field, "must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi) + ", got " + std::to_string(value));
  }
  return value;
}

StatusOr<std::string> ReadString(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return FieldError(field, "must be a string");
  return node.Scalar();
}

// `gpu: N` (a count) or `gpu: {count: N, memory_gb: M, kind: "H200"}`.
StatusOr<GpuSpec> ReadGpu(const YAML::Node& node) {
  GpuSpec gpu;
  if (node.IsScalar()) {
    auto v = ReadInt(node, "gpu", 0, kMaxGpusPerInstance);
    if (!v.ok()) return v.status();
    gpu.count = *v;
    return gpu;
  }
  if (!node.IsMap()) return FieldError("gpu", "must be a count or {count, memory_gb, kind}");
  bool has_count = false;
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) return FieldError("gpu", "keys must be plain names");
    const std::string key = kv.first.Scalar();
    const std::string field = "gpu." + key;
    if (!seen.insert(key).second) return FieldError(field, "given more than once");
    if (key == "count") {
      auto v = ReadInt(kv.second, field, 0, kMaxGpusPerInstance);
      if (!v.ok()) return v.status();
      gpu.count = *v;
      has_count = true;
    } else if (key == "memory_gb") {
      auto v = ReadInt(kv.second, field, 0, 4096);
      if (!v.ok()) return v.status();
      gpu.memory_gb = *v;
    } else if (key == "kind") {
      auto v = ReadString(kv.second, field);
      if (!v.ok()) return v.status();
      if (v->empty() || v->size() > 64) return FieldError(field, "must be 1-64 characters");
      gpu.kind = *v;
    } else {
      return FieldError(field, "unknown key (expected count, memory_gb or kind)");
    }
  }
  if (!has_count) return FieldError("gpu.count", "is required");
  if (gpu.count == 0 && (gpu.memory_gb > 0 || !gpu.kind.empty())) {
    return FieldError("gpu.count", "must be at least 1 when memory_gb or kind is given");
  }
  return gpu;
}

// `batch: {max_size: N, max_wait_ms: M}`; max_size is required.
StatusOr<BatchSpec> ReadBatch(const YAML::Node& node) {
  if (!node.IsMap()) return FieldError("batch", "must be {max_size: N, max_wait_ms: M}");
  BatchSpec batch;
  bool has_size = false;
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) return FieldError("batch", "keys must be plain names");
    const std::string key = kv.first.Scalar();
    const std::string field = "batch." + key;
    if (!seen.insert(key).second) return FieldError(field, "given more than once");
    if (key == "max_size") {
      auto v = ReadInt(kv.second, field, 1, kMaxBatchSize);
      if (!v.ok()) return v.status();
      batch.max_size = *v;
      has_size = true;
    } else if (key == "max_wait_ms") {
      auto v = ReadInt(kv.second, field, 0, kMaxBatchWaitMs);
      if (!v.ok()) return v.status();
      batch.max_wait_ms = *v;
    } else {
      return FieldError(field, "unknown key (expected max_size or max_wait_ms)");
    }
  }
  if (!has_size) return FieldError("batch.max_size", "is required");
  return batch;
}

// A model name: 1-128 of [A-Za-z0-9._:-/], as OpenAI's own names ("gpt-4o-mini") and
// paths ("org/model") go.
bool IsValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
        c != ':' && c != '/') {
      return false;
    }
  }
  return true;
}

StatusOr<OpenAiKind> ParseOpenAiKind(const std::string& kind) {
  if (kind == "chat") return OpenAiKind::kChat;
  if (kind == "completions") return OpenAiKind::kCompletions;
  if (kind == "embeddings") return OpenAiKind::kEmbeddings;
  return FieldError("openai.kind", "must be chat, completions or embeddings, got '" + kind + "'");
}

// `openai: {models: [NAME, ...], kind: chat|completions|embeddings, dimensions: N}`.
StatusOr<OpenAiSpec> ReadOpenAi(const YAML::Node& node) {
  if (!node.IsMap()) return FieldError("openai", "must be {models: [NAME, ...], kind: KIND}");
  OpenAiSpec spec;
  bool has_kind = false;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) return FieldError("openai", "keys must be plain names");
    const std::string key = kv.first.Scalar();
    const std::string field = "openai." + key;
    if (key == "models") {
      if (!kv.second.IsSequence() || kv.second.size() == 0) {
        return FieldError(field, "must be a non-empty list of model names");
      }
      std::set<std::string> seen;
      for (size_t i = 0; i < kv.second.size(); ++i) {
        const std::string item = field + "[" + std::to_string(i) + "]";
        auto name = ReadString(kv.second[i], item);
        if (!name.ok()) return name.status();
        if (!IsValidModelName(*name)) {
          return FieldError(item, "must be 1-128 letters, digits or ._:-/, got '" + *name + "'");
        }
        if (!seen.insert(*name).second) return FieldError(item, "repeats '" + *name + "'");
        spec.models.push_back(*name);
      }
    } else if (key == "kind") {
      auto v = ReadString(kv.second, field);
      if (!v.ok()) return v.status();
      auto kind = ParseOpenAiKind(*v);
      if (!kind.ok()) return kind.status();
      spec.kind = *kind;
      has_kind = true;
    } else if (key == "dimensions") {
      auto v = ReadInt(kv.second, field, 1, kMaxOpenAiDimensions);
      if (!v.ok()) return v.status();
      spec.dimensions = *v;
    } else {
      return FieldError(field, "unknown key");
    }
  }
  if (spec.models.empty()) return FieldError("openai.models", "is required");
  if (!has_kind) return FieldError("openai.kind", "is required");
  if (spec.dimensions != 0 && spec.kind != OpenAiKind::kEmbeddings) {
    return FieldError("openai.dimensions", "is for kind embeddings only");
  }
  return spec;
}

// `models: [{name: digits, tag: v3, mount: /opt/models/digits}, ...]`.
StatusOr<std::vector<ModelRef>> ReadModels(const YAML::Node& node) {
  if (!node.IsSequence()) return FieldError("models", "must be a list of {name, tag, mount}");
  std::vector<ModelRef> out;
  std::set<std::string> names, env_names;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string item = "models[" + std::to_string(i) + "]";
    if (!node[i].IsMap()) return FieldError(item, "must be {name, tag, mount}");
    ModelRef ref;
    for (const auto& kv : node[i]) {
      if (!kv.first.IsScalar()) return FieldError(item, "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const std::string field = item + "." + key;
      auto v = ReadString(kv.second, field);
      if (!v.ok()) return v.status();
      if (key == "name") {
        if (!models::IsValidModelName(*v)) {
          return FieldError(field, "must be 1-64 letters, digits, '-' or '_', got '" + *v + "'");
        }
        ref.name = *v;
      } else if (key == "tag") {
        if (!models::IsValidModelTag(*v)) {
          return FieldError(field,
                            "must be 1-128 letters, digits, '-', '_' or '.', got '" + *v + "'");
        }
        ref.tag = *v;
      } else if (key == "mount") {
        if (auto problem = models::MountPathProblem(*v)) return FieldError(field, *problem);
        ref.mount = *v;
      } else {
        return FieldError(field, "unknown key (expected name, tag or mount)");
      }
    }
    if (ref.name.empty()) return FieldError(item + ".name", "is required");
    if (ref.mount.empty()) return FieldError(item + ".mount", "is required");
    if (!names.insert(ref.name).second ||
        !env_names.insert(models::ModelEnvName(ref.name)).second) {
      return FieldError(item + ".name", "repeats the model '" + ref.name + "'");
    }
    for (const ModelRef& other : out) {
      auto nested = [](const std::string& a, const std::string& b) {
        return a == b || (a.starts_with(b) && a[b.size()] == '/');
      };
      if (nested(ref.mount, other.mount) || nested(other.mount, ref.mount)) {
        return FieldError(item + ".mount", "overlaps " + other.mount);
      }
    }
    out.push_back(std::move(ref));
  }
  return out;
}

}  // namespace

const char* OpenAiKindName(OpenAiKind kind) {
  switch (kind) {
    case OpenAiKind::kChat:
      return "chat";
    case OpenAiKind::kCompletions:
      return "completions";
    case OpenAiKind::kEmbeddings:
      return "embeddings";
  }
  return "chat";
}

StatusOr<Runtime> ParseRuntime(const std::string& name) {
  if (name == "python3" || name.starts_with("python3.")) return Runtime::kPython3;
  if (name == "cpp") return Runtime::kCpp;
  if (name == "provided" || name == "provided.al2" || name == "provided.al2023") {
    return Runtime::kProvided;
  }
  if (name == "nodejs" || name == "nodejs18.x" || name == "nodejs20.x" || name == "nodejs22.x") {
    return Runtime::kNodejs;
  }
  return FieldError("runtime", "unknown runtime '" + name +
                                   "' (expected python3, nodejs, cpp, provided, or a Lambda name "
                                   "such as python3.11, nodejs20.x or provided.al2023)");
}

bool IsValidEnvName(const std::string& key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  for (char c : key) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

namespace {

// Variables the platform sets; a function may not override them (Lambda refuses the same).
const std::set<std::string>& ReservedEnv() {
  static const std::set<std::string> kReserved = {"_HANDLER",
                                                  "AWS_LAMBDA_RUNTIME_API",
                                                  "LAMBDA_TASK_ROOT",
                                                  "LAMBDA_RUNTIME_DIR",
                                                  "AWS_LAMBDA_FUNCTION_NAME",
                                                  "AWS_LAMBDA_FUNCTION_VERSION",
                                                  "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                                                  "AWS_LAMBDA_LOG_GROUP_NAME",
                                                  "AWS_LAMBDA_LOG_STREAM_NAME",
                                                  "AWS_EXECUTION_ENV",
                                                  "AWS_LAMBDA_INITIALIZATION_TYPE",
                                                  "AWS_REGION",
                                                  "AWS_DEFAULT_REGION",
                                                  "AWS_LAMBDA_FUNCTION_TIMEOUT"};
  return kReserved;
}

}  // namespace

bool IsReservedEnvName(const std::string& key) { return ReservedEnv().count(key) > 0; }

std::optional<std::pair<std::string, std::string>> EnvironmentProblem(
    const std::map<std::string, std::string>& environment) {
  size_t total = 0;
  for (const auto& [name, value] : environment) {
    const std::string field = "environment." + name;
    if (!IsValidEnvName(name)) return std::pair{field, std::string("not a valid variable name")};
    if (IsReservedEnvName(name)) return std::pair{field, std::string("reserved by the platform")};
    if (value.find('\0') != std::string::npos) {
      return std::pair{field, std::string("must not contain a NUL byte")};
    }
    total += name.size() + value.size();
  }
  if (total > kMaxEnvironmentBytes) {
    return std::pair{std::string("environment"),
                     "names and values take " + std::to_string(total) + " bytes, over the " +
                         std::to_string(kMaxEnvironmentBytes) + "-byte limit (Lambda's 4 KB)"};
  }
  return std::nullopt;
}

const char* RuntimeName(Runtime runtime) {
  switch (runtime) {
    case Runtime::kPython3:
      return "python3";
    case Runtime::kNodejs:
      return "nodejs";
    case Runtime::kCpp:
      return "cpp";
    case Runtime::kProvided:
      return "provided";
  }
  return "provided";
}

const char* KeepAliveName(KeepAlive keep_alive) {
  return keep_alive == KeepAlive::kFixed ? "fixed" : "adaptive";
}

const char* NetworkName(Network network) { return network == Network::kNone ? "none" : "egress"; }

bool IsValidFunctionName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

bool IsValidInternalFunctionName(const std::string& name) {
  const size_t dot = name.find('.');
  if (dot == std::string::npos) return IsValidFunctionName(name);
  // The default tenant's functions are stored bare: "default.x" would be a second "x".
  const std::string_view tenant = std::string_view(name).substr(0, dot);
  return tenant != kDefaultTenant && IsValidTenantName(tenant) &&
         IsValidFunctionName(name.substr(dot + 1));
}

namespace {

// What is wrong with an on_success/on_failure destination, or nothing (it is resolved against
// the function's tenant when an event ends: gateway/invoker.h ResolveDestination).
std::optional<std::string> DestinationProblem(const std::string& d) {
  if (d.empty() || d.size() > 2048) return "must be 1-2048 bytes";
  for (char c : d) {
    if (static_cast<unsigned char>(c) <= ' ') return "must not contain spaces or control bytes";
  }
  for (std::string_view scheme : {"http://", "https://"}) {
    if (d.starts_with(scheme)) {
      if (d.size() == scheme.size() || d[scheme.size()] == '/') return "a URL needs a host";
      return std::nullopt;
    }
  }
  if (d.starts_with("arn:")) {
    if (d.find(":function:") == std::string::npos) {
      return "must be an http(s) URL or a Lambda function (name or ARN)";
    }
    return std::nullopt;
  }
  if (!IsValidFunctionName(d.substr(0, d.find(':')))) {
    return "must be an http(s) URL or a function's name, NAME:QUALIFIER or ARN, got '" + d + "'";
  }
  return std::nullopt;
}

}  // namespace

StatusOr<Manifest> ParseManifest(const std::string& yaml_text, const std::string& fallback_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument("thaw.yaml: not valid YAML: " + std::string(e.what()));
  }
  if (!root.IsMap()) return InvalidArgument("thaw.yaml: must be a mapping of keys to values");

  Manifest m;
  m.name = fallback_name;
  bool has_runtime = false;
  bool idle_timeout_seconds = false;    // idle_timeout_s gave seconds: an explicit fixed window
  std::optional<KeepAlive> keep_alive;  // as keep_alive (or idle_timeout_s: auto) said
  std::set<std::string> seen;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) return InvalidArgument("thaw.yaml: keys must be plain names");
    const std::string key = kv.first.Scalar();
    // yaml-cpp keeps the last of repeated keys; a repeated key is almost always a mistake.
    if (!seen.insert(key).second) return FieldError(key, "given more than once");
    const YAML::Node& value = kv.second;
    if (key == "name") {
      auto s = ReadString(value, key);
      if (!s.ok()) return s.status();
      m.name = *s;
    } else if (key == "runtime") {
      auto s = ReadString(value, key);
      if (!s.ok()) return s.status();
      auto rt = ParseRuntime(*s);
      if (!rt.ok()) return rt.status();
      m.runtime = *rt;
      m.runtime_name = *s;
      has_runtime = true;
    } else if (key == "handler") {
      auto s = ReadString(value, key);
      if (!s.ok()) return s.status();
      m.handler = *s;
    } else if (key == "memory_mb") {
      auto v = ReadInt(value, key, 64, 10240);
      if (!v.ok()) return v.status();
      m.memory_mb = *v;
    } else if (key == "ephemeral_storage_mb") {
      auto v = ReadInt(value, key, kDefaultEphemeralStorageMb, kMaxEphemeralStorageMb);
      if (!v.ok()) return v.status();
      m.ephemeral_storage_mb = *v;
    } else if (key == "timeout_s") {
      double seconds = 0;
      try {
        seconds = value.as<double>();
      } catch (const YAML::Exception&) {
        return FieldError(key, "must be a number of seconds");
      }
      if (!value.IsScalar() || !std::isfinite(seconds) || seconds < 0.001 || seconds > 900) {
        return FieldError(key, "must be between 0.001 and 900 seconds");
      }
      m.timeout_ms = static_cast<int64_t>(std::llround(seconds * 1000));
    } else if (key == "concurrency") {
      auto v = ReadInt(value, key, 1, 1000);
      if (!v.ok()) return v.status();
      m.concurrency = *v;
    } else if (key == "min_instances") {
      auto v = ReadInt(value, key, 0, 1000);
      if (!v.ok()) return v.status();
      m.min_instances = *v;
    } else if (key == "max_instances") {
      auto v = ReadInt(value, key, 1, 1000);
      if (!v.ok()) return v.status();
      m.max_instances = *v;
    } else if (key == "idle_timeout_s") {
      if (value.IsScalar() && value.Scalar() == "auto") {  // the same as keep_alive: adaptive
        if (keep_alive == KeepAlive::kFixed) {
          return FieldError(key, "'auto' is the adaptive keep-alive, but keep_alive says fixed");
        }
        keep_alive = KeepAlive::kAdaptive;
        continue;
      }
      auto v = ReadInt(value, key, 0, 86400);
      if (!v.ok()) return v.status();
      m.idle_timeout_s = *v;
      idle_timeout_seconds = true;
    } else if (key == "keep_alive") {
      auto v = ReadString(value, key);
      if (!v.ok()) return v.status();
      if (*v != "adaptive" && *v != "fixed") {
        return FieldError(key, "must be adaptive or fixed, got '" + *v + "'");
      }
      const KeepAlive asked = *v == "fixed" ? KeepAlive::kFixed : KeepAlive::kAdaptive;
      if (keep_alive && *keep_alive != asked) {
        return FieldError(key, "'" + *v + "' contradicts idle_timeout_s: auto");
      }
      keep_alive = asked;
    } else if (key == "environment") {
      if (value.IsNull()) continue;
      if (!value.IsMap()) return FieldError(key, "must be a mapping of NAME: value");
      for (const auto& env : value) {
        if (!env.first.IsScalar()) return FieldError(key, "variable names must be plain names");
        const std::string name = env.first.Scalar();
        if (m.environment.count(name)) {
          return FieldError("environment." + name, "given more than once");
        }
        if (!IsValidEnvName(name)) {
          return FieldError("environment." + name, "not a valid variable name");
        }
        if (ReservedEnv().count(name)) {
          return FieldError("environment." + name, "reserved by the platform");
        }
        if (!env.second.IsScalar()) {
          return FieldError("environment." + name, "must be a string, number or boolean");
        }
        m.environment[name] = env.second.Scalar();
      }
      if (auto problem = EnvironmentProblem(m.environment)) {
        return FieldError(problem->first, problem->second);
      }
    } else if (key == "url_auth") {
      auto v = ReadString(value, key);
      if (!v.ok()) return v.status();
      if (*v != "key" && *v != "none")
        return FieldError(key, "must be key or none, got '" + *v + "'");
      m.url_public = *v == "none";
    } else if (key == "network") {
      auto v = ReadString(value, key);
      if (!v.ok()) return v.status();
      if (*v != "egress" && *v != "none") {
        return FieldError(key, "must be egress or none, got '" + *v + "'");
      }
      m.network = *v == "none" ? Network::kNone : Network::kEgress;
    } else if (key == "template") {
      auto v = ReadString(value, key);
      if (!v.ok()) return v.status();
      if (*v != "auto" && *v != "off") {
        return FieldError(key, "must be auto or off, got '" + *v + "'");
      }
      m.template_off = *v == "off";
    } else if (key == "gpu") {
      auto v = ReadGpu(value);
      if (!v.ok()) return v.status();
      m.gpu = *v;
    } else if (key == "openai") {
      auto v = ReadOpenAi(value);
      if (!v.ok()) return v.status();
      m.openai = std::move(*v);
    } else if (key == "schedule") {
      std::vector<std::string> exprs;
      if (value.IsScalar()) {
        exprs.push_back(value.Scalar());
      } else if (value.IsSequence()) {
        for (const auto& item : value) {
          if (!item.IsScalar()) return FieldError(key, "must be an expression or a list of them");
          exprs.push_back(item.Scalar());
        }
      } else {
        return FieldError(key, "must be rate(...) or cron(...), or a list of them");
      }
      for (const std::string& e : exprs) {
        if (auto parsed = queue::ParseSchedule(e); !parsed.ok()) {
          return FieldError(key, parsed.status().message());
        }
        if (std::find(m.schedules.begin(), m.schedules.end(), e) != m.schedules.end()) {
          return FieldError(key, "'" + e + "' given more than once");
        }
        m.schedules.push_back(e);
      }
    } else if (key == "catch_up") {
      try {
        m.catch_up = value.as<bool>();
      } catch (const YAML::Exception&) {
        return FieldError(key, "must be true or false");
      }
    } else if (key == "models") {
      auto v = ReadModels(value);
      if (!v.ok()) return v.status();
      m.models = std::move(*v);
    } else if (key == "on_success" || key == "on_failure") {
      auto v = ReadString(value, key);
      if (!v.ok()) return v.status();
      if (auto why = DestinationProblem(*v)) return FieldError(key, *why);
      (key == "on_success" ? m.on_success : m.on_failure) = *v;
    } else if (key == "batch") {
      auto v = ReadBatch(value);
      if (!v.ok()) return v.status();
      m.batch = *v;
    } else {
      return FieldError(key, "unknown key");
    }
  }
  if (!has_runtime) return FieldError("runtime", "is required");
  // idle_timeout_s alone overrides the adaptive default; beside keep_alive: adaptive it is
  // the window adaptive falls back to while the function's histogram is not representative.
  m.keep_alive =
      keep_alive.value_or(idle_timeout_seconds ? KeepAlive::kFixed : KeepAlive::kAdaptive);
  if (!IsValidFunctionName(m.name)) {
    return FieldError("name", "must be 1-64 letters, digits, '-' or '_', got '" + m.name + "'");
  }
  if (m.runtime == Runtime::kPython3 || m.runtime == Runtime::kNodejs) {
    auto dot = m.handler.rfind('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == m.handler.size()) {
      return FieldError("handler", "must be module.function, got '" + m.handler + "'");
    }
  }
  if (m.min_instances > m.max_instances) {
    return FieldError("min_instances",
                      "must not exceed max_instances (" + std::to_string(m.max_instances) + ")");
  }
  return m;
}

Status CheckManifest(const Manifest& m) {
  auto field = [](const std::string& f, const std::string& why) {
    return InvalidArgument("field '" + f + "': " + why);
  };
  if (!IsValidInternalFunctionName(m.name)) {
    return field("name", "must be 1-64 letters, digits, '-' or '_', got '" + m.name + "'");
  }
  if (m.runtime == Runtime::kPython3 || m.runtime == Runtime::kNodejs) {
    auto dot = m.handler.rfind('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == m.handler.size()) {
      return field("handler", "must be module.function, got '" + m.handler + "'");
    }
  }
  if (m.memory_mb < 64 || m.memory_mb > 10240) return field("memory_mb", "must be 64-10240");
  if (m.ephemeral_storage_mb < kDefaultEphemeralStorageMb ||
      m.ephemeral_storage_mb > kMaxEphemeralStorageMb) {
    return field("ephemeral_storage_mb", "must be 512-10240");
  }
  if (m.timeout_ms < 1 || m.timeout_ms > 900'000) return field("timeout_s", "must be 0.001-900");
  if (m.concurrency < 1 || m.concurrency > 1000) return field("concurrency", "must be 1-1000");
  if (m.max_instances < 1 || m.max_instances > 1000 || m.min_instances < 0 ||
      m.min_instances > m.max_instances) {
    return field("min_instances", "must be 0..max_instances, and max_instances 1-1000");
  }
  if (m.gpu.count < 0 || m.gpu.count > kMaxGpusPerInstance) {
    return field("gpu.count", "must be 0-" + std::to_string(kMaxGpusPerInstance));
  }
  if (auto problem = EnvironmentProblem(m.environment)) {
    return field(problem->first, problem->second);
  }
  if (m.batch.max_size < 1 || m.batch.max_size > kMaxBatchSize) {
    return field("batch.max_size", "must be 1-" + std::to_string(kMaxBatchSize));
  }
  if (m.batch.max_wait_ms < 0 || m.batch.max_wait_ms > kMaxBatchWaitMs) {
    return field("batch.max_wait_ms", "must be 0-" + std::to_string(kMaxBatchWaitMs));
  }
  return Status::Ok();
}

json::object ManifestToJsonObject(const Manifest& m, json::storage_ptr sp) {
  json::object env(sp);
  for (const auto& [k, v] : m.environment) env[k] = v;
  json::object o(
      {{"name", m.name},
       {"runtime", RuntimeName(m.runtime)},
       {"handler", m.handler},
       {"memory_mb", m.memory_mb},
       {"ephemeral_storage_mb", m.ephemeral_storage_mb},
       {"timeout_ms", m.timeout_ms},
       {"concurrency", m.concurrency},
       {"min_instances", m.min_instances},
       {"max_instances", m.max_instances},
       {"idle_timeout_s", m.idle_timeout_s},
       {"keep_alive", KeepAliveName(m.keep_alive)},
       {"environment", std::move(env)},
       {"runtime_name", m.runtime_name},
       {"description", m.description},
       {"url_auth", m.url_public ? "none" : "key"},
       {"network", NetworkName(m.network)},
       {"template", m.template_off ? "off" : "auto"},
       {"on_success", m.on_success},
       {"on_failure", m.on_failure},
       {"gpu",
        json::object({{"count", m.gpu.count}, {"memory_gb", m.gpu.memory_gb}, {"kind", m.gpu.kind}},
                     sp)}},
      // Room for what callers add (the API's listing adds about twenty keys): no rehash.
      48, sp);
  if (!m.openai.models.empty()) {
    json::array models(sp);
    for (const auto& name : m.openai.models) models.emplace_back(name);
    json::object openai({{"models", std::move(models)}, {"kind", OpenAiKindName(m.openai.kind)}},
                        sp);
    if (m.openai.dimensions != 0) openai["dimensions"] = m.openai.dimensions;
    o["openai"] = std::move(openai);
  }
  if (m.batch.enabled()) {
    o["batch"] =
        json::object({{"max_size", m.batch.max_size}, {"max_wait_ms", m.batch.max_wait_ms}}, sp);
  }
  if (!m.schedules.empty()) {
    json::array schedules(sp);
    for (const auto& e : m.schedules) schedules.emplace_back(e);
    o["schedule"] = std::move(schedules);
    o["catch_up"] = m.catch_up;
  }
  if (!m.models.empty()) {
    json::array models(sp);
    for (const ModelRef& r : m.models) {
      models.push_back(json::object(
          {{"name", r.name}, {"tag", r.tag}, {"mount", r.mount}, {"digest", r.digest}}, sp));
    }
    o["models"] = std::move(models);
  }
  return o;
}

std::string ManifestToJson(const Manifest& m) { return JsonText(ManifestToJsonObject(m)); }

StatusOr<Manifest> ManifestFromJson(const std::string& json_text) {
  boost::system::error_code ec;
  json::value v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return Internal("stored manifest is not a JSON object");
  try {
    const json::object& o = v.as_object();
    Manifest m;
    m.name = json::value_to<std::string>(o.at("name"));
    auto rt = ParseRuntime(json::value_to<std::string>(o.at("runtime")));
    if (!rt.ok()) return rt.status();
    m.runtime = *rt;
    m.handler = json::value_to<std::string>(o.at("handler"));
    m.memory_mb = o.at("memory_mb").to_number<int64_t>();
    // Absent in rows written before ephemeral storage: they had Lambda's default.
    if (auto* e = o.if_contains("ephemeral_storage_mb"); e != nullptr && e->is_number()) {
      m.ephemeral_storage_mb = e->to_number<int64_t>();
    }
    m.timeout_ms = o.at("timeout_ms").to_number<int64_t>();
    m.concurrency = o.at("concurrency").to_number<int64_t>();
    m.min_instances = o.at("min_instances").to_number<int64_t>();
    m.max_instances = o.at("max_instances").to_number<int64_t>();
    m.idle_timeout_s = o.at("idle_timeout_s").to_number<int64_t>();
    // Rows written before the adaptive keep-alive kept idle_timeout_s: keep them as they were.
    m.keep_alive = KeepAlive::kFixed;
    if (auto* k = o.if_contains("keep_alive"); k != nullptr && k->is_string()) {
      m.keep_alive = k->as_string() == "adaptive" ? KeepAlive::kAdaptive : KeepAlive::kFixed;
    }
    // Absent in rows written before function URLs existed.
    if (auto* u = o.if_contains("url_auth"); u != nullptr && u->is_string()) {
      m.url_public = u->as_string() == "none";
    }
    for (const auto& kv : o.at("environment").as_object()) {
      m.environment[std::string(kv.key())] = json::value_to<std::string>(kv.value());
    }
    // Added after the first release: absent from older stored manifests.
    if (auto* rn = o.if_contains("runtime_name")) m.runtime_name = json::value_to<std::string>(*rn);
    if (auto* d = o.if_contains("description")) m.description = json::value_to<std::string>(*d);
    if (auto* d = o.if_contains("on_success")) m.on_success = json::value_to<std::string>(*d);
    if (auto* d = o.if_contains("on_failure")) m.on_failure = json::value_to<std::string>(*d);
    if (auto* n = o.if_contains("network"); n != nullptr && n->is_string()) {
      m.network = n->as_string() == "none" ? Network::kNone : Network::kEgress;
    }
    if (auto* t = o.if_contains("template"); t != nullptr && t->is_string()) {
      m.template_off = t->as_string() == "off";
    }
    if (auto* g = o.if_contains("gpu"); g != nullptr && g->is_object()) {
      const json::object& go = g->as_object();
      m.gpu.count = go.at("count").to_number<int64_t>();
      m.gpu.memory_gb = go.at("memory_gb").to_number<int64_t>();
      m.gpu.kind = json::value_to<std::string>(go.at("kind"));
    }
    if (auto* a = o.if_contains("openai"); a != nullptr && a->is_object()) {
      const json::object& ao = a->as_object();
      for (const auto& name : ao.at("models").as_array()) {
        m.openai.models.push_back(json::value_to<std::string>(name));
      }
      auto kind = ParseOpenAiKind(json::value_to<std::string>(ao.at("kind")));
      if (!kind.ok()) return kind.status();
      m.openai.kind = *kind;
      if (auto* d = ao.if_contains("dimensions")) m.openai.dimensions = d->to_number<int64_t>();
    }
    if (auto* b = o.if_contains("batch"); b != nullptr && b->is_object()) {
      m.batch.max_size = b->as_object().at("max_size").to_number<int64_t>();
      m.batch.max_wait_ms = b->as_object().at("max_wait_ms").to_number<int64_t>();
    }
    if (auto* sc = o.if_contains("schedule"); sc != nullptr && sc->is_array()) {
      for (const auto& e : sc->as_array()) m.schedules.push_back(json::value_to<std::string>(e));
    }
    if (auto* c = o.if_contains("catch_up"); c != nullptr && c->is_bool())
      m.catch_up = c->as_bool();
    if (auto* ms = o.if_contains("models"); ms != nullptr && ms->is_array()) {
      for (const auto& item : ms->as_array()) {
        const json::object& mo = item.as_object();
        m.models.push_back(ModelRef{json::value_to<std::string>(mo.at("name")),
                                    json::value_to<std::string>(mo.at("tag")),
                                    json::value_to<std::string>(mo.at("mount")),
                                    json::value_to<std::string>(mo.at("digest"))});
      }
    }
    return m;
  } catch (const std::exception& e) {
    return Internal(std::string("stored manifest is malformed: ") + e.what());
  }
}

}  // namespace thaw::registry

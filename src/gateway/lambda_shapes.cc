#include "gateway/lambda_shapes.h"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cmath>
#include <ctime>

#include "common/base64.h"
#include "common/sha256.h"
#include "common/tenant.h"

namespace thaw::gateway::lambda {
namespace {

namespace json = boost::json;

Status Bad(const std::string& field, const std::string& why) {
  return InvalidArgument(field + ": " + why);
}

StatusOr<std::optional<std::string>> OptString(const json::object& o, const char* field,
                                               const std::string& path = "") {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return Bad(path + field, "must be a string");
  return std::optional<std::string>(std::string(v->as_string()));
}

StatusOr<std::optional<int64_t>> OptInt(const json::object& o, const char* field, int64_t lo,
                                        int64_t hi) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return std::optional<int64_t>();
  int64_t n = 0;
  if (v->is_int64()) {
    n = v->as_int64();
  } else if (v->is_uint64()) {
    n = v->as_uint64() > static_cast<uint64_t>(hi) ? hi + 1 : static_cast<int64_t>(v->as_uint64());
  } else if (v->is_double() && std::nearbyint(v->as_double()) == v->as_double() &&
             std::fabs(v->as_double()) < 1e15) {
    n = static_cast<int64_t>(v->as_double());
  } else {
    return Bad(field, "must be an integer");
  }
  if (n < lo || n > hi) {
    return Bad(field, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                          ", got " + std::to_string(n));
  }
  return std::optional<int64_t>(n);
}

StatusOr<bool> OptBool(const json::object& o, const char* field) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr || v->is_null()) return false;
  if (!v->is_bool()) return Bad(field, "must be true or false");
  return v->as_bool();
}

// Refuses what thaw cannot do rather than ignoring it: code from S3 or an image, layers,
// other architectures.
Status CheckUnsupported(const json::object& body) {
  if (auto* p = body.if_contains("PackageType"); p && !p->is_null()) {
    if (!p->is_string() || p->as_string() != "Zip") {
      return Bad("PackageType", "only Zip is supported by thaw");
    }
  }
  if (auto* a = body.if_contains("Architectures"); a && !a->is_null()) {
    if (!a->is_array()) return Bad("Architectures", "must be a list");
    for (const auto& e : a->as_array()) {
      if (!e.is_string() || e.as_string() != "x86_64") {
        return Bad("Architectures", "only x86_64 is supported by thaw");
      }
    }
  }
  if (auto* l = body.if_contains("Layers"); l && !l->is_null()) {
    if (!l->is_array() || !l->as_array().empty()) {
      return Bad("Layers", "layers are not supported by thaw; put the files in the zip");
    }
  }
  return Status::Ok();
}

// Code.ZipFile (or the top-level ZipFile of UpdateFunctionCode), decoded.
StatusOr<std::string> ZipFile(const json::object& o, const std::string& path) {
  for (const char* s3 : {"S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"}) {
    if (auto* v = o.if_contains(s3); v && !v->is_null()) {
      return Bad(path + s3, "code from S3 or a container image is not supported by thaw; send " +
                                path + "ZipFile");
    }
  }
  auto zip = OptString(o, "ZipFile", path);
  if (!zip.ok()) return zip.status();
  if (!zip->has_value() || (*zip)->empty()) return Bad(path + "ZipFile", "is required");
  auto bytes = Base64Decode(**zip);
  if (!bytes) return Bad(path + "ZipFile", "is not valid base64");
  return std::move(*bytes);
}

bool IsNumber(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Validates JSON without building a tree: every event is accepted as it comes.
struct NullHandler {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t, json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) { return true; }
  bool on_object_end(std::size_t, json::error_code&) { return true; }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_key_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_key(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t, json::string_view, json::error_code&) { return true; }
  bool on_uint64(uint64_t, json::string_view, json::error_code&) { return true; }
  bool on_double(double, json::string_view, json::error_code&) { return true; }
  bool on_bool(bool, json::error_code&) { return true; }
  bool on_null(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

// A UUID-shaped id that changes whenever what it describes changes.
std::string RevisionId(const std::string& seed) {
  std::string h = Sha256Hex(seed);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

}  // namespace

StatusOr<FunctionRef> ParseFunctionRef(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  FunctionRef ref;
  if (parts.size() >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" &&
      parts.size() <= 8) {
    ref.name = parts[6];
    ref.account = parts[4];
    if (parts.size() == 8) ref.qualifier = parts[7];
  } else if ((parts.size() == 3 || parts.size() == 4) && parts[1] == "function") {
    ref.name = parts[2];
    ref.account = parts[0];
    if (parts.size() == 4) ref.qualifier = parts[3];
  } else if (parts.size() <= 2) {
    ref.name = parts[0];
    if (parts.size() == 2) ref.qualifier = parts[1];
  } else {
    return Bad("FunctionName",
               "expected a name, NAME:QUALIFIER or a function ARN, got '" + text + "'");
  }
  if (!registry::IsValidFunctionName(ref.name)) {
    return Bad("FunctionName", "must be 1-64 letters, digits, '-' or '_', got '" + ref.name + "'");
  }
  if (parts.size() == 2 || parts.size() == 4 || parts.size() == 8) {
    if (ref.qualifier.empty() || ref.qualifier.size() > 128) {
      return Bad("Qualifier", "must be 1-128 characters");
    }
  }
  return ref;
}

StatusOr<std::string> MergeQualifier(const FunctionRef& ref, const std::string& param) {
  if (!ref.qualifier.empty() && !param.empty() && ref.qualifier != param) {
    return InvalidArgument(
        "The derived qualifier from the function name does not match the specified qualifier.");
  }
  std::string q = param.empty() ? ref.qualifier : param;
  if (q.size() > 128) return Bad("Qualifier", "must be 1-128 characters");
  for (char c : q) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '$' && c != '-' && c != '_') {
      return Bad("Qualifier",
                 "must be $LATEST, a version number or an alias name, got '" + q + "'");
    }
  }
  return q;
}

std::string FunctionArn(const std::string& region, const std::string& name,
                        const std::string& qualifier) {
  std::string arn = "arn:aws:lambda:" + region + ":" + AccountOf(TenantOfFunction(name)) +
                    ":function:" + std::string(BareFunctionName(name));
  if (!qualifier.empty()) arn += ":" + qualifier;
  return arn;
}

StatusOr<FunctionFields> ParseFunctionFields(const json::object& body) {
  THAW_RETURN_IF_ERROR(CheckUnsupported(body));
  FunctionFields f;
  auto runtime = OptString(body, "Runtime");
  if (!runtime.ok()) return runtime.status();
  f.runtime = *runtime;
  auto handler = OptString(body, "Handler");
  if (!handler.ok()) return handler.status();
  if (handler->has_value() && ((*handler)->empty() || (*handler)->size() > 128)) {
    return Bad("Handler", "must be 1-128 characters");
  }
  f.handler = *handler;
  auto description = OptString(body, "Description");
  if (!description.ok()) return description.status();
  if (description->has_value() && (*description)->size() > 256) {
    return Bad("Description", "must be at most 256 characters");
  }
  f.description = *description;
  auto timeout = OptInt(body, "Timeout", 1, 900);
  if (!timeout.ok()) return timeout.status();
  f.timeout_s = *timeout;
  auto memory = OptInt(body, "MemorySize", 128, 10240);
  if (!memory.ok()) return memory.status();
  f.memory_mb = *memory;
  if (auto* e = body.if_contains("EphemeralStorage"); e && !e->is_null()) {
    if (!e->is_object()) return Bad("EphemeralStorage", "must be an object with Size");
    auto size = OptInt(e->as_object(), "Size", registry::kDefaultEphemeralStorageMb,
                       registry::kMaxEphemeralStorageMb);
    if (!size.ok() || !size->has_value()) {
      return Bad("EphemeralStorage.Size", "must be an integer between 512 and 10240 (MB)");
    }
    f.ephemeral_storage_mb = *size;
  }
  if (auto* env = body.if_contains("Environment"); env && !env->is_null()) {
    if (!env->is_object()) return Bad("Environment", "must be an object with Variables");
    std::map<std::string, std::string> vars;
    size_t total = 0;
    if (auto* v = env->as_object().if_contains("Variables"); v && !v->is_null()) {
      if (!v->is_object()) return Bad("Environment.Variables", "must be an object");
      for (const auto& kv : v->as_object()) {
        const std::string key(kv.key());
        const std::string field = "Environment.Variables." + key;
        if (!registry::IsValidEnvName(key)) return Bad(field, "not a valid variable name");
        if (registry::IsReservedEnvName(key)) return Bad(field, "reserved by the platform");
        if (!kv.value().is_string()) return Bad(field, "must be a string");
        vars[key] = std::string(kv.value().as_string());
        total += key.size() + vars[key].size();
      }
    }
    if (total > 4096) return Bad("Environment.Variables", "must total at most 4 KB");
    f.environment = std::move(vars);
  }
  return f;
}

Status ApplyFunctionFields(const FunctionFields& f, registry::Manifest& m) {
  if (f.runtime) {
    auto rt = registry::ParseRuntime(*f.runtime);
    if (!rt.ok()) {
      return Bad("Runtime", "'" + *f.runtime +
                                "' is not supported by thaw (python3.x, nodejs18.x-22.x, "
                                "provided, provided.al2 and provided.al2023 are)");
    }
    m.runtime = *rt;
    m.runtime_name = *f.runtime;
  }
  if (f.handler) m.handler = *f.handler;
  if (f.description) m.description = *f.description;
  if (f.timeout_s) m.timeout_ms = *f.timeout_s * 1000;
  if (f.memory_mb) m.memory_mb = *f.memory_mb;
  if (f.ephemeral_storage_mb) m.ephemeral_storage_mb = *f.ephemeral_storage_mb;
  if (f.environment) m.environment = *f.environment;
  if (m.runtime == registry::Runtime::kPython3 || m.runtime == registry::Runtime::kNodejs) {
    auto dot = m.handler.rfind('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == m.handler.size()) {
      return Bad("Handler", "runtime " + std::string(registry::RuntimeName(m.runtime)) +
                                " needs module.function, got '" + m.handler + "'");
    }
  }
  return Status::Ok();
}

StatusOr<CreateFunctionRequest> ParseCreateFunction(const json::object& body) {
  CreateFunctionRequest req;
  auto name = OptString(body, "FunctionName");
  if (!name.ok()) return name.status();
  if (!name->has_value()) return Bad("FunctionName", "is required");
  auto ref = ParseFunctionRef(**name);
  if (!ref.ok()) return ref.status();
  if (!ref->qualifier.empty()) return Bad("FunctionName", "must not carry a qualifier");
  req.ref = std::move(*ref);
  const json::value* code = body.if_contains("Code");
  if (code == nullptr || !code->is_object()) return Bad("Code", "is required, with ZipFile");
  auto zip = ZipFile(code->as_object(), "Code.");
  if (!zip.ok()) return zip.status();
  req.zip = std::move(*zip);
  auto fields = ParseFunctionFields(body);
  if (!fields.ok()) return fields.status();
  if (!fields->runtime) return Bad("Runtime", "is required for a Zip package");
  req.fields = std::move(*fields);
  auto publish = OptBool(body, "Publish");
  if (!publish.ok()) return publish.status();
  req.publish = *publish;
  return req;
}

StatusOr<UpdateCodeRequest> ParseUpdateCode(const json::object& body) {
  THAW_RETURN_IF_ERROR(CheckUnsupported(body));
  auto dry_run = OptBool(body, "DryRun");
  if (!dry_run.ok()) return dry_run.status();
  if (*dry_run) return Bad("DryRun", "is not supported by thaw");
  UpdateCodeRequest req;
  auto zip = ZipFile(body, "");
  if (!zip.ok()) return zip.status();
  req.zip = std::move(*zip);
  auto publish = OptBool(body, "Publish");
  if (!publish.ok()) return publish.status();
  req.publish = *publish;
  return req;
}

StatusOr<int64_t> ParseFunctionVersion(const std::string& text, const std::string& field) {
  if (text == "$LATEST") return int64_t{0};
  if (IsNumber(text) && text.size() <= 18 && std::stoll(text) > 0) return std::stoll(text);
  return Bad(field, "expected $LATEST or a version number, got '" + text + "'");
}

StatusOr<registry::Alias> ParseAlias(const json::object& body, const registry::Alias* base) {
  registry::Alias alias;
  if (base != nullptr) alias = *base;
  if (base == nullptr) {
    auto name = OptString(body, "Name");
    if (!name.ok()) return name.status();
    if (!name->has_value()) return Bad("Name", "is required");
    if (!registry::IsValidAliasName(**name) || **name == "$LATEST") {
      return Bad("Name", "must be 1-128 letters, digits, '-' or '_', not only digits; got '" +
                             **name + "'");
    }
    alias.name = **name;
  }
  auto version = OptString(body, "FunctionVersion");
  if (!version.ok()) return version.status();
  if (version->has_value()) {
    auto v = ParseFunctionVersion(**version, "FunctionVersion");
    if (!v.ok()) return v.status();
    alias.version = *v;
  } else if (base == nullptr) {
    return Bad("FunctionVersion", "is required");
  }
  auto description = OptString(body, "Description");
  if (!description.ok()) return description.status();
  if (description->has_value()) alias.description = **description;
  if (auto* rc = body.if_contains("RoutingConfig"); rc && !rc->is_null()) {
    if (!rc->is_object()) return Bad("RoutingConfig", "must be an object");
    alias.weights.clear();
    if (auto* w = rc->as_object().if_contains("AdditionalVersionWeights"); w && !w->is_null()) {
      if (!w->is_object())
        return Bad("RoutingConfig.AdditionalVersionWeights", "must be an object");
      for (const auto& kv : w->as_object()) {
        const std::string field = "RoutingConfig.AdditionalVersionWeights." + std::string(kv.key());
        auto v = ParseFunctionVersion(std::string(kv.key()), field);
        if (!v.ok()) return v.status();
        if (*v == 0) return Bad(field, "$LATEST cannot take a share of an alias's calls");
        if (!kv.value().is_number()) return Bad(field, "must be a number between 0.0 and 1.0");
        double weight = kv.value().to_number<double>();
        if (!(weight >= 0.0 && weight <= 1.0)) return Bad(field, "must be between 0.0 and 1.0");
        alias.weights[*v] = weight;
      }
    }
  }
  return alias;
}

StatusOr<int64_t> ParseReservedConcurrency(const json::object& body) {
  auto n = OptInt(body, "ReservedConcurrentExecutions", 0, 1000);
  if (!n.ok()) return n.status();
  if (!n->has_value()) return Bad("ReservedConcurrentExecutions", "is required");
  return **n;
}

StatusOr<queue::InvokeConfig> ParseEventInvokeConfig(const json::object& body,
                                                     const DestinationResolver& resolve,
                                                     queue::InvokeConfig base) {
  auto retries = OptInt(body, "MaximumRetryAttempts", 0, 2);
  if (!retries.ok()) return retries.status();
  auto age = OptInt(body, "MaximumEventAgeInSeconds", 60, 21600);
  if (!age.ok()) return age.status();
  if (const json::value* d = body.if_contains("DestinationConfig")) {
    if (!d->is_object()) return Bad("DestinationConfig", "must be an object");
    for (const auto& [key, target] : d->as_object()) {
      const std::string field = "DestinationConfig." + std::string(key);
      if (key != "OnSuccess" && key != "OnFailure") return Bad(field, "unknown key");
      const json::object* o = target.if_object();
      if (o == nullptr) return Bad(field, "must be an object");
      std::optional<std::string>& slot = key == "OnSuccess" ? base.on_success : base.on_failure;
      slot.reset();
      const json::value* dest = o->if_contains("Destination");
      if (dest == nullptr || dest->is_null()) continue;
      if (!dest->is_string()) return Bad(field + ".Destination", "must be a string");
      if (dest->as_string().empty()) continue;
      auto resolved = resolve(std::string(dest->as_string()));
      if (!resolved.ok()) return Bad(field + ".Destination", resolved.status().message());
      slot = std::move(*resolved);
    }
  }
  if (*retries) base.max_retry_attempts = **retries;
  if (*age) base.max_event_age_s = **age;
  base.updated_us = 0;
  return base;
}

json::object EventInvokeConfigJson(const std::string& region, const std::string& arn,
                                   const queue::InvokeConfig& config) {
  json::object o;
  o["LastModified"] = static_cast<double>(config.updated_us) / 1e6;
  o["FunctionArn"] = arn;
  if (config.max_retry_attempts) o["MaximumRetryAttempts"] = *config.max_retry_attempts;
  if (config.max_event_age_s) o["MaximumEventAgeInSeconds"] = *config.max_event_age_s;
  auto destination = [&](const std::optional<std::string>& d) {
    if (!d) return json::object{};
    if (queue::IsWebhook(*d)) return json::object{{"Destination", *d}};
    const size_t colon = d->find(':');
    return json::object{
        {"Destination", FunctionArn(region, d->substr(0, colon),
                                    colon == std::string::npos ? "" : d->substr(colon + 1))}};
  };
  o["DestinationConfig"] = json::object{{"OnSuccess", destination(config.on_success)},
                                        {"OnFailure", destination(config.on_failure)}};
  return o;
}

StatusOr<std::string> ParsePublishSha256(const json::object& body) {
  auto sha = OptString(body, "CodeSha256");
  if (!sha.ok()) return sha.status();
  if (!sha->has_value() || (*sha)->empty()) return std::string();
  auto digest = Base64Decode(**sha);
  if (!digest || digest->size() != 32) return Bad("CodeSha256", "must be a base64 SHA-256");
  return HexEncode(*digest);
}

StatusOr<json::object> ParseJsonBody(const std::string& body) {
  if (body.empty()) return json::object();
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return InvalidArgument("Could not parse request body into json: " + ec.message());
  if (!v.is_object())
    return InvalidArgument("Could not parse request body into json: not an object");
  return std::move(v.as_object());
}

bool IsJson(std::string_view text) {
  json::parse_options opt;
  opt.max_depth = 100000;
  json::basic_parser<NullHandler> p(opt);
  json::error_code ec;
  const size_t used = p.write_some(false, text.data(), text.size(), ec);
  return !ec && p.done() && used == text.size();  // one value, nothing after it
}

StatusOr<LabeledVersion> VersionFor(const registry::FunctionInfo& f, const std::string& qualifier) {
  int64_t want = 0;
  if (!qualifier.empty() && qualifier != "$LATEST") {
    auto number = ParseFunctionVersion(qualifier, "Qualifier");
    if (number.ok()) {
      want = *number;
    } else if (auto a = f.aliases.find(qualifier); a != f.aliases.end()) {
      want = a->second.version;
    } else {
      return NotFound("Function not found: " + f.name + ":" + qualifier);
    }
  }
  LabeledVersion out{nullptr, want == 0 ? "$LATEST" : std::to_string(want)};
  if (want == 0) want = f.latest;
  for (const auto& v : f.versions) {
    if (v->version == want) {
      out.version = v;
      return out;
    }
  }
  return NotFound("Function not found: " + f.name + ":" + qualifier);
}

StatusOr<Page> ParsePage(const std::string& max_items, const std::string& marker) {
  Page p;
  if (!max_items.empty()) {
    if (!IsNumber(max_items) || max_items.size() > 5 || std::stoi(max_items) < 1 ||
        std::stoi(max_items) > 10000) {
      return Bad("MaxItems", "must be 1-10000, got '" + max_items + "'");
    }
    p.max_items = std::stoi(max_items);
  }
  if (!marker.empty()) {
    auto colon = marker.rfind(':');
    if (colon == std::string::npos) return Bad("Marker", "not a marker this API handed out");
    auto v = ParseFunctionVersion(marker.substr(colon + 1), "Marker");
    if (!v.ok()) return Bad("Marker", "not a marker this API handed out");
    p.marker_name = marker.substr(0, colon);
    p.marker_version = *v;
  }
  return p;
}

json::object ListPage(const std::vector<registry::FunctionInfo>& functions, bool published_too,
                      const Page& page, const char* key, const std::string& region) {
  json::array out;
  std::string next;
  for (const auto& f : functions) {
    std::vector<int64_t> versions = {0};
    if (published_too) {
      for (const auto& [v, _] : f.published) versions.push_back(v);
    }
    for (int64_t v : versions) {
      if (page.marker_version >= 0 &&
          (f.name < page.marker_name || (f.name == page.marker_name && v < page.marker_version))) {
        continue;  // before the marker: an earlier page had it
      }
      const std::string label = v == 0 ? "$LATEST" : std::to_string(v);
      if (static_cast<int64_t>(out.size()) == page.max_items) {
        next = f.name + ":" + label;
        break;
      }
      if (auto version = VersionFor(f, label); version.ok()) {
        out.push_back(FunctionConfiguration(f, *version->version, label, region));
      }
    }
    if (!next.empty()) break;
  }
  json::object body{{key, std::move(out)}};
  if (!next.empty()) body["NextMarker"] = next;
  return body;
}

std::string LambdaTimestamp(int64_t wall_us) {
  time_t secs = static_cast<time_t>(wall_us / 1'000'000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[48];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03d+0000", static_cast<int>((wall_us / 1000) % 1000));
  return buf;
}

std::string CodeSha256(const std::string& sha256_hex) {
  auto digest = HexDecode(sha256_hex);
  return digest ? Base64Encode(*digest) : std::string();
}

json::object FunctionConfiguration(const registry::FunctionInfo& f, const registry::Version& v,
                                   const std::string& label, const std::string& region) {
  const registry::Manifest& m = v.manifest;
  std::string description = m.description;
  if (label != "$LATEST") {
    if (auto p = f.published.find(v.version);
        p != f.published.end() && !p->second.description.empty()) {
      description = p->second.description;
    }
  }
  json::object o{
      {"FunctionName", BareFunctionName(f.name)},
      {"FunctionArn", FunctionArn(region, f.name, label == "$LATEST" ? "" : label)},
      {"Runtime", m.runtime_name.empty() ? registry::RuntimeName(m.runtime) : m.runtime_name},
      {"Role", "arn:aws:iam::" + AccountOf(TenantOfFunction(f.name)) + ":role/thaw"},
      {"Handler", m.handler},
      {"CodeSize", v.code_size},
      {"Description", description},
      {"Timeout", (m.timeout_ms + 999) / 1000},
      {"MemorySize", m.memory_mb},
      {"LastModified", LambdaTimestamp(v.created_us)},
      {"CodeSha256", CodeSha256(v.sha256)},
      {"Version", label},
      {"TracingConfig", json::object{{"Mode", "PassThrough"}}},
      {"RevisionId",
       RevisionId(f.name + ":" + std::to_string(v.version) + ":" + std::to_string(v.created_us))},
      {"State", "Active"},
      {"LastUpdateStatus", "Successful"},
      {"PackageType", "Zip"},
      {"Architectures", json::array{"x86_64"}},
      {"EphemeralStorage", json::object{{"Size", m.ephemeral_storage_mb}}},
      {"LoggingConfig", json::object{{"LogFormat", "Text"}, {"LogGroup", "/aws/lambda/" + f.name}}},
  };
  if (!m.environment.empty()) {
    json::object vars;
    for (const auto& [k, val] : m.environment) vars[k] = val;
    o["Environment"] = json::object{{"Variables", std::move(vars)}};
  }
  return o;
}

json::object AliasConfiguration(const std::string& region, const std::string& function,
                                const registry::Alias& alias) {
  json::object o{{"AliasArn", FunctionArn(region, function, alias.name)},
                 {"Name", alias.name},
                 {"FunctionVersion",
                  alias.version == 0 ? std::string("$LATEST") : std::to_string(alias.version)},
                 {"Description", alias.description},
                 {"RevisionId", RevisionId(function + ":" + alias.name + ":" +
                                           std::to_string(alias.updated_us))}};
  if (!alias.weights.empty()) {
    json::object weights;
    for (const auto& [v, w] : alias.weights) weights[std::to_string(v)] = w;
    o["RoutingConfig"] = json::object{{"AdditionalVersionWeights", std::move(weights)}};
  }
  return o;
}

std::string LogTail(const std::vector<logs::Line>& lines, size_t max_bytes) {
  std::string text;
  for (const auto& line : lines) {
    text += line.text;
    text += '\n';
  }
  if (text.size() <= max_bytes) return text;
  size_t cut = text.size() - max_bytes;
  while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
  return text.substr(cut);
}

}  // namespace thaw::gateway::lambda

#include "cluster/node_record.h"

#include <boost/json.hpp>

#include "common/json_text.h"

namespace thaw::cluster {
namespace {

namespace json = boost::json;

json::array ArrayOf(const std::set<std::string>& items) {
  json::array out;
  for (const auto& s : items) out.push_back(json::value(s));
  return out;
}

Status ReadInt(const json::object& o, const char* field, int64_t& out) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr) return Status::Ok();
  if (!v->is_int64())
    return InvalidArgument(std::string("node record: ") + field + ": not an integer");
  out = v->as_int64();
  return Status::Ok();
}

Status ReadSet(const json::object& o, const char* field, std::set<std::string>& out) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr) return Status::Ok();
  if (!v->is_array()) return InvalidArgument(std::string("node record: ") + field + ": not a list");
  for (const json::value& item : v->as_array()) {
    if (!item.is_string()) {
      return InvalidArgument(std::string("node record: ") + field + ": not a list of strings");
    }
    out.insert(std::string(item.as_string()));
  }
  return Status::Ok();
}

}  // namespace

boost::json::object NodeRecordObject(const NodeRecord& r) {
  return json::object{{"name", r.name},
                      {"advertise", r.advertise},
                      {"cores", r.cores},
                      {"memory_mb", r.memory_mb},
                      {"free_memory_mb", r.free_memory_mb},
                      {"gpus", r.gpus},
                      {"inflight", r.inflight},
                      {"warm", ArrayOf(r.warm)},
                      {"templates", ArrayOf(r.templates)},
                      {"models", ArrayOf(r.models)},
                      {"draining", r.draining},
                      {"started_us", r.started_us}};
}

std::string NodeRecordJson(const NodeRecord& r) { return JsonText(NodeRecordObject(r)); }

StatusOr<NodeRecord> ParseNodeRecord(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return InvalidArgument("node record: not a JSON object");
  const json::object& o = v.as_object();
  NodeRecord r;
  const json::value* name = o.if_contains("name");
  if (name == nullptr || !name->is_string() || name->as_string().empty()) {
    return InvalidArgument("node record: name: required, a string");
  }
  r.name = std::string(name->as_string());
  if (const json::value* a = o.if_contains("advertise"); a != nullptr) {
    if (!a->is_string()) return InvalidArgument("node record: advertise: not a string");
    r.advertise = std::string(a->as_string());
  }
  if (const json::value* d = o.if_contains("draining"); d != nullptr) {
    if (!d->is_bool()) return InvalidArgument("node record: draining: not true or false");
    r.draining = d->as_bool();
  }
  THAW_RETURN_IF_ERROR(ReadInt(o, "cores", r.cores));
  THAW_RETURN_IF_ERROR(ReadInt(o, "memory_mb", r.memory_mb));
  THAW_RETURN_IF_ERROR(ReadInt(o, "free_memory_mb", r.free_memory_mb));
  THAW_RETURN_IF_ERROR(ReadInt(o, "gpus", r.gpus));
  THAW_RETURN_IF_ERROR(ReadInt(o, "inflight", r.inflight));
  THAW_RETURN_IF_ERROR(ReadInt(o, "started_us", r.started_us));
  THAW_RETURN_IF_ERROR(ReadSet(o, "warm", r.warm));
  THAW_RETURN_IF_ERROR(ReadSet(o, "templates", r.templates));
  THAW_RETURN_IF_ERROR(ReadSet(o, "models", r.models));
  return r;
}

dispatch::NodeView ViewOf(const NodeRecord& r) {
  dispatch::NodeView n;
  n.name = r.name;
  n.draining = r.draining;
  n.cores = r.cores;
  n.free_memory_mb = r.free_memory_mb;
  n.inflight = r.inflight;
  n.warm = r.warm;
  n.templates = r.templates;
  n.models = r.models;
  return n;
}

}  // namespace thaw::cluster

// `thaw nodes [ls]`, `thaw nodes drain NAME`, `thaw nodes undrain NAME`: the cluster's members
// (server side: gateway/nodes_api.cc).
#include <boost/json.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/http_client.h"
#include "common/json_text.h"

namespace thaw::cli {
namespace {

namespace json = boost::json;

std::string Joined(const json::value& list) {
  std::string out;
  for (const auto& v : list.as_array()) {
    if (!out.empty()) out += ",";
    out += std::string(v.as_string());
  }
  return out.empty() ? "-" : out;
}

}  // namespace

int CmdNodes(const ClientOptions& o, const std::string& action, const std::string& name) {
  Headers headers;
  if (!o.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + o.api_key);
  if (action == "drain" || action == "undrain") {
    auto r = HttpCall(o.server, action == "drain" ? "POST" : "DELETE",
                      "/v1/nodes/" + name + "/drain", "", headers);
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 200) return FailResponse(*r);
    if (o.json) {
      std::cout << r->body << "\n";
    } else if (action == "drain") {
      std::cout << "node " << name << " is draining: it starts no new instances\n";
    } else {
      std::cout << "node " << name << " takes new work again\n";
    }
    return 0;
  }
  auto r = HttpCall(o.server, "GET", "/v1/nodes", "", headers);
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 200) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  const json::value body = json::parse(r->body);
  std::printf("%-16s %-22s %-8s %5s %9s %9s %4s %8s %s\n", "NAME", "ADVERTISE", "HEALTH", "CORES",
              "MEM_MB", "FREE_MB", "GPUS", "INFLIGHT", "WARM (TEMPLATES)");
  for (const auto& v : body.at("nodes").as_array()) {
    const auto& n = v.as_object();
    std::string name_col = std::string(n.at("name").as_string());
    if (n.at("self").as_bool()) name_col += "*";
    std::string health = std::string(n.at("health").as_string());
    if (n.at("draining").as_bool()) health += ",drain";
    std::printf("%-16s %-22s %-8s %5ld %9ld %9ld %4ld %8ld %s (%s)\n", name_col.c_str(),
                std::string(n.at("advertise").as_string()).c_str(), health.c_str(),
                static_cast<long>(n.at("cores").as_int64()),
                static_cast<long>(n.at("memory_mb").as_int64()),
                static_cast<long>(n.at("free_memory_mb").as_int64()),
                static_cast<long>(n.at("gpus").as_int64()),
                static_cast<long>(n.at("inflight").as_int64()), Joined(n.at("warm")).c_str(),
                Joined(n.at("templates")).c_str());
  }
  return 0;
}

}  // namespace thaw::cli

#include "gateway/nodes_api.h"

#include <boost/json.hpp>

#include "cluster/membership.h"
#include "common/clock.h"
#include "gateway/responses.h"
#include "gateway/scope.h"

namespace thaw::gateway {
namespace {

namespace json = boost::json;

// ok: renewed within the last third of its TTL or so; late: it has missed renewals (the node
// is stalled or cut off, and leaves when the TTL runs out); gone: expired.
const char* Health(const cluster::LeaseTtl& ttl) {
  if (ttl.ttl_s < 0) return "gone";
  return ttl.ttl_s * 2 >= ttl.granted_ttl_s ? "ok" : "late";
}

asio::awaitable<void> ListNodes(cluster::Membership& cluster, Response& res) {
  json::array nodes;
  const int64_t now = WallNowMicros();
  for (const auto& m : cluster.Snapshot()) {
    const cluster::NodeRecord& r = m.record;
    // What the node published, and what this node adds: whether it is this one, its uptime.
    json::object o = cluster::NodeRecordObject(r);
    o.erase("started_us");
    o["self"] = m.self;
    o["up_s"] = r.started_us > 0 ? (now - r.started_us) / 1'000'000 : 0;
    auto ttl = co_await cluster.etcd().TimeToLive(m.lease);
    if (ttl.ok()) {
      o["lease"] = json::object{{"id", std::to_string(m.lease)},
                                {"ttl_s", ttl->ttl_s},
                                {"granted_ttl_s", ttl->granted_ttl_s}};
      o["health"] = Health(*ttl);
    } else {
      o["health"] = "unknown";
    }
    nodes.push_back(std::move(o));
  }
  JsonBody(
      res, http::status::ok,
      json::object{
          {"self", cluster.name()}, {"etcd", cluster.etcd().url()}, {"nodes", std::move(nodes)}});
}

}  // namespace

asio::awaitable<void> ServeNodes(cluster::Membership* cluster, const auth::Caller& caller,
                                 const std::vector<std::string_view>& parts, Request& req,
                                 Response& res) {
  if (Status st = RequireAdmin(caller); !st.ok()) co_return StatusBody(res, st);
  if (cluster == nullptr) {
    co_return StatusBody(res, FailedPrecondition("this node is not in a cluster: start thaw serve "
                                                 "with --etcd http://HOST:PORT to join one"));
  }
  const http::verb m = req.method();
  if (parts.size() == 2 && m == http::verb::get) co_return co_await ListNodes(*cluster, res);
  if (parts.size() == 4 && parts[3] == "drain" &&
      (m == http::verb::post || m == http::verb::delete_)) {
    const std::string node(parts[2]);
    const bool drain = m == http::verb::post;
    Status st = co_await cluster->SetDrain(node, drain);
    if (!st.ok()) co_return StatusBody(res, st);
    co_return JsonBody(res, http::status::ok, json::object{{"name", node}, {"draining", drain}});
  }
  MethodNotAllowed(req, res);
}

}  // namespace thaw::gateway

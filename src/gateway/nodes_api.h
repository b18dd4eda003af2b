// The cluster's admin routes: GET /v1/nodes (members, capacity, load, warm versions, lease
// health) and POST|DELETE /v1/nodes/{name}/drain. Stateless: thread-safe.
#pragma once

#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "gateway/http_server.h"

namespace thaw::cluster {
class Membership;
}

namespace thaw::gateway {

// `cluster` null: this node stands alone (409, saying how to join one).
asio::awaitable<void> ServeNodes(cluster::Membership* cluster, const auth::Caller& caller,
                                 const std::vector<std::string_view>& parts, Request& req,
                                 Response& res);

}  // namespace thaw::gateway

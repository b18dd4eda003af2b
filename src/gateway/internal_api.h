// Routes nodes of one cluster serve each other, never users: GET /v1/internal/bundles/SHA256
// (a version's archive, as deployed, for a node that lacks it: cluster/bundle_fetcher.h). Each
// needs the cluster token (X-Thaw-Cluster-Token, derived from the shared master key); without
// one configured (no --etcd) they answer 404. Stateless: thread-safe.
#pragma once

#include <string_view>

#include "gateway/http_server.h"

namespace thaw::gateway {

struct ApiDeps;

void ServeInternal(const ApiDeps& deps, std::string_view path, const Request& req, Response& res);

}  // namespace thaw::gateway

// Routes nodes of one cluster serve each other, never users (cluster/artifact_fetcher.h):
// GET /v1/internal/bundles/SHA256 (a version's archive, as deployed) and
// GET /v1/internal/models/SHA256 (one model file by its sha256, streamed from disk in chunks),
// for a node that lacks them. Each needs the cluster token (X-Thaw-Cluster-Token, derived from
// the shared master key); without one configured (no --etcd) they answer 404. Stateless:
// thread-safe.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "gateway/http_server.h"

namespace thaw::gateway {

struct ApiDeps;

asio::awaitable<void> ServeInternal(const ApiDeps& deps, const Peer& peer, std::string_view path,
                                    const Request& req, Response& res);

}  // namespace thaw::gateway

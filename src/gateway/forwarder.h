// Forwarder: runs an invocation on another node of the cluster when routing
// (dispatch/routing.h) says so. The request goes as it came (method, target, headers, body;
// Host kept so a SigV4 signature still verifies) plus X-Thaw-Forwarded-By and the cluster token
// (so the receiver may believe what this node says about the client, e.g. a function URL's
// X-Forwarded-For), over a keep-alive HTTP/1.1 connection from a small pool per peer; the answer
// comes back as it is (status, headers, body), a chunked one relayed piece by piece as it arrives.
// The receiver authenticates the caller itself and never forwards again (hop limit 1).
//
// The node that forwards a call holds its tenant slot (its share of the tenant's concurrency
// and rate limits, cluster/share_keeper.h) until the answer is back; the receiver, seeing the
// cluster token, neither counts the call against its own share nor as its demand. So a call
// goes on only when this node's share has room, and a node never loses its share to one that
// merely runs calls forwarded to it.
//
// A peer that cannot be reached before the request is sent (refused, reset, no route) means
// the call runs here; a failure after it was sent is a 502 naming the node. Owned by Api;
// thread-safe: MaybeForward runs concurrently on the gateway's connection coroutines.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>

#include "gateway/http_server.h"

namespace thaw::registry {
class Registry;
}
namespace thaw::pool {
class PoolManager;
}
namespace thaw::cluster {
class Membership;
}
namespace thaw::dispatch {
class Dispatcher;
}

namespace thaw::gateway {

// The header a forwarded request carries: the name of the node that forwarded it.
inline constexpr const char* kForwardedByHeader = "X-Thaw-Forwarded-By";
// The header every invoke answer carries in cluster mode: the node that ran the call.
inline constexpr const char* kNodeHeader = "X-Thaw-Node";

class Forwarder {
 public:
  // `dispatcher` holds forwarded calls' tenant slots (null: none are held, tests).
  Forwarder(cluster::Membership* cluster, const registry::Registry* registry,
            const pool::PoolManager* pools, dispatch::Dispatcher* dispatcher,
            std::string cluster_token);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // A synchronous call of `function` (internal name) `qualifier`: true once answered by
  // another node (`res` filled, or the answer streamed on `peer.writer`); false: run it here
  // (`res` then carries X-Thaw-Node naming this node). `req` is left as it came when false.
  // Whether `req` was forwarded by a node of this cluster: it names one and shows the cluster
  // token (a client's own X-Thaw-Forwarded-By header is not believed).
  bool FromNode(const Request& req) const;

  asio::awaitable<bool> MaybeForward(const std::string& function, const std::string& qualifier,
                                     const Peer& peer, Request& req, Response& res);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace thaw::gateway

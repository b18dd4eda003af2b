#include "gateway/forwarder.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluster/artifact_fetcher.h"
#include "cluster/membership.h"
#include "common/clock.h"
#include "common/ids.h"
#include "dispatch/dispatcher.h"
#include "dispatch/routing.h"
#include "gateway/responses.h"
#include "pool/pool.h"
#include "registry/registry.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {

namespace {

namespace beast = boost::beast;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

// Idle connections kept per peer; more are closed once their call is done.
constexpr size_t kMaxIdlePerPeer = 64;
// A peer closes a connection idle for its idle_timeout_ms (60 s by default): reuse one only
// well before that, so a call is never sent on a connection the peer is closing.
constexpr auto kMaxIdleAge = std::chrono::seconds(20);
constexpr auto kConnectTimeout = std::chrono::seconds(2);
// A buffered (not chunked) answer: Lambda's 6 MB response limit with room to spare.
constexpr uint64_t kMaxBufferedBytes = 64ULL << 20;

double Draw() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Fields that describe one hop's connection, not the message: never copied across.
bool HopByHop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::content_length:
    case http::field::expect:
      return true;
    default:
      return false;
  }
}

struct Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  beast::flat_buffer buffer;
  SteadyClock::time_point idle_since;
};

// Whether an idle connection is still open and quiet (the peer neither closed it nor sent
// anything since its last answer).
bool StillOpen(tcp::socket& socket) {
  char c;
  // SAFETY: a non-blocking peek on a socket this pool owns; it consumes nothing.
  const ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The idle keep-alive connections to one peer. Thread-safe.
class PeerPool {
 public:
  std::unique_ptr<Connection> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = SteadyClock::now();
    while (!idle_.empty()) {
      std::unique_ptr<Connection> c = std::move(idle_.back());
      idle_.pop_back();
      if (now - c->idle_since < kMaxIdleAge && c->buffer.size() == 0 && StillOpen(c->socket)) {
        return c;
      }
    }
    return nullptr;
  }
  void Put(std::unique_ptr<Connection> c) {
    c->idle_since = SteadyClock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < kMaxIdlePerPeer) idle_.push_back(std::move(c));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;  // most recently used last
};

// Closes `socket` if the operations it guards outlive `after`. Runs on the coroutine's
// executor (a strand), so its handler and the guarded coroutine never run at once.
class Watchdog {
 public:
  Watchdog(const asio::any_io_executor& executor, SteadyClock::duration after, tcp::socket& socket)
      : timer_(executor, after), state_(std::make_shared<State>()) {
    timer_.async_wait([state = state_, &socket](const boost::system::error_code& ec) {
      if (ec || !state->armed) return;
      state->fired = true;
      boost::system::error_code ignored;
      socket.close(ignored);
    });
  }
  ~Watchdog() {
    state_->armed = false;
    timer_.cancel();
  }
  bool fired() const { return state_->fired; }

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// "host:port" or "[v6]:port" into host and port.
bool SplitAddress(const std::string& address, std::string& host, std::string& port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return !host.empty();
}

// Copies `from`'s end-to-end fields onto `to`.
template <typename Fields>
void CopyFields(const Fields& from, http::fields& to) {
  for (const auto& f : from) {
    if (HopByHop(f.name())) continue;
    to.insert(f.name_string(), f.value());
  }
}

}  // namespace

struct Forwarder::Impl {
  cluster::Membership* cluster;
  const registry::Registry* registry;
  const pool::PoolManager* pools;
  dispatch::Dispatcher* dispatcher;
  std::string cluster_token;
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<PeerPool>> peers;  // by address; guarded by mu

  std::shared_ptr<PeerPool> PoolOf(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu);
    auto& p = peers[address];
    if (!p) p = std::make_shared<PeerPool>();
    return p;
  }

  // A new connection to `address`, or null (with `why`) when it cannot be made in time.
  static asio::awaitable<std::unique_ptr<Connection>> Connect(const std::string& address,
                                                              std::string& why) {
    auto executor = co_await asio::this_coro::executor;
    std::string host, port;
    if (!SplitAddress(address, host, port)) {
      why = "bad address " + address;
      co_return nullptr;
    }
    auto conn = std::make_unique<Connection>(tcp::socket(executor));
    boost::system::error_code ec;
    Watchdog watchdog(executor, kConnectTimeout, conn->socket);
    tcp::resolver resolver(executor);
    auto endpoints =
        co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) {
      co_await asio::async_connect(conn->socket, endpoints,
                                   asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec || watchdog.fired()) {
      why = watchdog.fired() ? "connect timed out" : ec.message();
      co_return nullptr;
    }
    conn->socket.set_option(tcp::no_delay(true), ec);
    co_return conn;
  }

  // Fills `res` with the 502 of a call lost with node `node` after it was sent there.
  static void NodeFailed(const std::string& node, const std::string& address,
                         const std::string& why, Response& res) {
    const std::string request_id(res["X-Thaw-Request-Id"]);
    const bool keep_alive = res.keep_alive();
    res.clear();
    res.body().clear();
    res.keep_alive(keep_alive);
    res.set("X-Thaw-Request-Id", request_id.empty() ? NewRequestId() : request_id);
    res.set(kNodeHeader, node);
    res.set("X-Amzn-ErrorType", "ServiceException");
    const std::string message =
        "node " + node + " (" + address + ") failed while running the call: " + why;
    JsonBody(res, http::status::bad_gateway,
             json::object{{"errorType", "Thaw.NodeFailed"},
                          {"errorMessage", message},
                          {"requestId", res["X-Thaw-Request-Id"]},
                          {"node", node},
                          {"Type", "Service"},
                          {"message", message}});
  }

  asio::awaitable<bool> Forward(const std::string& node, const std::string& address,
                                SteadyClock::duration deadline, const Peer& peer, Request& req,
                                Response& res);
};

Forwarder::Forwarder(cluster::Membership* cluster, const registry::Registry* registry,
                     const pool::PoolManager* pools, dispatch::Dispatcher* dispatcher,
                     std::string cluster_token)
    : impl_(std::make_unique<Impl>()) {
  impl_->cluster = cluster;
  impl_->registry = registry;
  impl_->pools = pools;
  impl_->dispatcher = dispatcher;
  impl_->cluster_token = std::move(cluster_token);
}

Forwarder::~Forwarder() = default;

bool Forwarder::FromNode(const Request& req) const {
  return req.find(kForwardedByHeader) != req.end() &&
         cluster::TokenMatches(req[cluster::kClusterTokenHeader], impl_->cluster_token);
}

asio::awaitable<bool> Forwarder::MaybeForward(const std::string& function,
                                              const std::string& qualifier, const Peer& peer,
                                              Request& req, Response& res) {
  Impl& m = *impl_;
  const std::string& self = m.cluster->name();
  res.set(kNodeHeader, self);
  if (req.find(kForwardedByHeader) != req.end()) co_return false;  // hop limit 1
  auto resolved = m.registry->Resolve(function, qualifier, Draw());
  if (!resolved.ok()) co_return false;  // the local path answers 404
  const registry::Version& v = *resolved->version;
  dispatch::RouteInput input;
  input.self = self;
  input.local_ready = m.pools->CanTakeWork(v.function, v.version, resolved->latest);
  input.draining = m.pools->draining();
  if (input.local_ready && !input.draining) co_return false;
  dispatch::PlacementRequest placement;
  placement.version = v.function + ":" + std::to_string(v.version);
  for (const auto& model : v.manifest.models) placement.models.push_back(model.digest);
  placement.memory_mb = v.manifest.memory_mb;
  const std::string target = dispatch::RouteCall(input, m.cluster->ForPlacement(), placement);
  if (target.empty()) co_return false;
  std::string address;
  for (const auto& member : m.cluster->Snapshot()) {
    if (member.record.name == target) address = member.record.advertise;
  }
  if (address.empty()) co_return false;
  // This node's share holds the call's tenant slot until the answer is back. No room in it:
  // the call stays, and the local path refuses it (or admits it, if a slot came free).
  dispatch::Dispatcher::Slot slot;
  if (m.dispatcher != nullptr && !m.dispatcher
                                      ->Admit(function, std::nullopt, WallNowMicros(), slot,
                                              dispatch::Dispatcher::Scope::kForwarding)
                                      .admitted()) {
    co_return false;
  }
  // The call's own deadline on that node, with room for its queueing and a cold start.
  const auto deadline =
      std::chrono::milliseconds(2 * v.manifest.timeout_ms) + std::chrono::seconds(60);
  co_return co_await m.Forward(target, address, deadline, peer, req, res);
}

asio::awaitable<bool> Forwarder::Impl::Forward(const std::string& node, const std::string& address,
                                               SteadyClock::duration deadline, const Peer& peer,
                                               Request& req, Response& res) {
  auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<PeerPool> pool = PoolOf(address);
  http::request<http::string_body> out{req.method(), req.target(), 11};
  CopyFields(req.base(), out.base());
  out.set(kForwardedByHeader, cluster->name());
  if (!cluster_token.empty()) out.set(cluster::kClusterTokenHeader, cluster_token);
  out.keep_alive(true);
  out.body() = std::move(req.body());
  out.prepare_payload();

  // Send it: on an idle connection if one is open, else (or when that one turns out closed
  // before the request went) on a new one. Not sent at all: run it here.
  std::unique_ptr<Connection> conn;
  boost::system::error_code ec;
  for (int attempt = 0; attempt < 2 && !conn; ++attempt) {
    conn = pool->Take();
    const bool reused = conn != nullptr;
    if (!reused) {
      std::string why;
      conn = co_await Connect(address, why);
      if (!conn) {
        spdlog::warn("node {} ({}) unreachable, running the call here: {}", node, address, why);
        req.body() = std::move(out.body());
        co_return false;
      }
    }
    co_await http::async_write(conn->socket, out, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) break;
    conn.reset();
    if (!reused) {
      spdlog::warn("node {} ({}) failed before the call was sent, running it here: {}", node,
                   address, ec.message());
      req.body() = std::move(out.body());
      co_return false;
    }
  }
  if (!conn) {
    req.body() = std::move(out.body());
    co_return false;
  }

  // Sent: from here a failure is the caller's 502.
  Watchdog watchdog(executor, deadline, conn->socket);
  auto failed = [&](const std::string& what) {
    return watchdog.fired() ? std::string("no answer in time") : what;
  };
  http::response_parser<http::empty_body> head_parser;
  head_parser.header_limit(64 * 1024);
  co_await http::async_read_header(conn->socket, conn->buffer, head_parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    NodeFailed(node, address, failed(ec.message()), res);
    co_return true;
  }
  const bool keep_alive_before = res.keep_alive();
  res.clear();
  res.body().clear();
  res.keep_alive(keep_alive_before);
  res.result(head_parser.get().result_int());
  CopyFields(head_parser.get().base(), res.base());

  if (head_parser.get().chunked() && peer.writer != nullptr) {
    // Streamed: each piece to the caller as it arrives, the trailers at the end.
    http::response_parser<http::buffer_body> parser(std::move(head_parser));
    parser.body_limit(boost::none);
    const size_t head_fields =
        static_cast<size_t>(std::distance(parser.get().begin(), parser.get().end()));
    bool client_ok = co_await peer.writer->Begin(res);
    char buf[16 * 1024];
    while (client_ok && !parser.is_done()) {
      parser.get().body().data = buf;
      parser.get().body().size = sizeof(buf);
      co_await http::async_read_some(conn->socket, conn->buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      const size_t n = sizeof(buf) - parser.get().body().size;
      if (n > 0) client_ok = co_await peer.writer->Write(std::string_view(buf, n));
      if (ec) break;
    }
    http::fields trailers;
    if (!client_ok) co_return true;  // the caller left: the dropped connection ends the call
    if (ec) {
      trailers.set("X-Thaw-Function-Error", "Thaw.NodeFailed");
      trailers.set("X-Thaw-Error", "node " + node + " (" + address +
                                       ") failed mid-stream: " + failed(ec.message()));
      (void)co_await peer.writer->End(trailers);
      co_return true;
    }
    size_t i = 0;
    for (const auto& f : parser.get()) {
      if (i++ >= head_fields) trailers.insert(f.name_string(), f.value());
    }
    (void)co_await peer.writer->End(trailers);
    if (parser.get().keep_alive()) pool->Put(std::move(conn));
    co_return true;
  }

  http::response_parser<http::string_body> parser(std::move(head_parser));
  parser.body_limit(kMaxBufferedBytes);
  co_await http::async_read(conn->socket, conn->buffer, parser,
                            asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    NodeFailed(node, address, failed(ec.message()), res);
    co_return true;
  }
  res.body() = std::move(parser.get().body());
  if (parser.get().keep_alive()) pool->Put(std::move(conn));
  co_return true;
}

}  // namespace thaw::gateway

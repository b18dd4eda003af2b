// HTTP/1.1 connection serving shared by the public API and the per-instance Runtime API:
// keep-alive, body limits decided per route from the headers, credentials checked on the
// headers before any body byte is read, Expect: 100-continue, and a 400, 413 or 501 for
// malformed, oversized or unsupported requests. A listener's limits (timeouts, connection caps,
// upload bytes in flight) are HttpOptions. Heavy (Beast): include only from .cc files.
//
// One coroutine per connection, on its own strand; the handler is called from that coroutine
// and must be safe to call concurrently for different connections.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace thaw::auth {
struct Caller;
}

namespace thaw::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Sends a response in pieces as they are produced (Transfer-Encoding: chunked), for answers
// whose body is not known whole when its headers are (streamed invocations). Owned by the
// connection; valid while the handler runs; called from the connection's coroutine only.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // Sends `head`'s status and fields (not its body) and starts a chunked body. Each call
  // returns false once the client is gone (or a write failed): stop producing.
  virtual asio::awaitable<bool> Begin(Response& head) = 0;
  virtual asio::awaitable<bool> Write(std::string_view bytes) = 0;
  // The last chunk, with `trailers` (name them in head's Trailer field).
  virtual asio::awaitable<bool> End(const http::fields& trailers) = 0;
  virtual bool begun() const = 0;
};

// A request body handed to the handler piece by piece as it arrives (HttpHandler::StreamsBody).
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // The next bytes of the body; empty once it is complete or failed (error() says which).
  virtual asio::awaitable<std::string> Read() = 0;
  // After Read returned empty: why (no error: the body is complete, trailers included).
  virtual const boost::system::error_code& error() const = 0;
  // The request's header fields, and once the body is complete its trailer fields too.
  virtual const http::request_header<>& header() const = 0;
};

// The TCP connection a request came on.
struct Peer {
  asio::ip::address address;
  uint16_t port = 0;
  uint16_t local_port = 0;  // the listener's port the client connected to
  // The connection, for a handler that answers in pieces (the response it filled is then
  // not sent). Null where the handler has no connection (tests).
  ResponseWriter* writer = nullptr;
  // The caller the handler's Screen authenticated for this request, kept by the connection for
  // that request alone (the handler may move from it); null where Screen set none (tests).
  auth::Caller* caller = nullptr;
  // The bytes already read past this request: the start of what the client pipelined after
  // it (empty when nothing was). Set while the handler runs, on requests with a plain
  // Content-Length framing; a handler may only look.
  std::string_view pipelined;
  // The handler's own state for this connection, kept from one request to the next (null
  // until it sets some). The connection's, like `writer`: touched from its coroutine only.
  mutable std::shared_ptr<void> handler_state;
};

// One listener's limits. Zero means no limit (the Runtime API's listeners use none).
struct HttpOptions {
  int64_t header_timeout_ms = 0;  // from accept (or a request's first byte) to its full headers
  int64_t idle_timeout_ms = 0;    // keep-alive: from a response to the next request's first byte
  int64_t max_connections = 0;    // open at once; more are answered 503 and closed
  int64_t max_connections_per_ip = 0;      // from one address; more get 429 and are closed
  int64_t max_upload_bytes_in_flight = 0;  // upload bodies being received or handled together
  std::string spool_dir;            // upload bodies are written here while they arrive (not memory)
  bool reserve_fd = false;          // keep one fd spare to answer 503 when out of descriptors
  int64_t accept_backoff_ms = 100;  // pause after accept fails for lack of fds or memory
  // Serve each connection on a strand of the executor. False where that executor is run by
  // one thread (a shard), which serializes its connections already.
  bool strand_per_connection = true;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Largest body accepted for a request with these headers.
  virtual uint64_t BodyLimit(const http::request_header<>& header) const = 0;
  // Whether the body is an upload: spooled to HttpOptions::spool_dir and counted against
  // max_upload_bytes_in_flight.
  virtual bool IsUpload(const http::request_header<>& header) const { return false; }
  // Checks the request's credentials on its headers alone, before a byte of its body is read:
  // false after filling `res` with the refusal (sent, and the connection closed). The caller
  // they authenticate, where it set one, reaches this request's Serve as Peer::caller, so the
  // request is authenticated once.
  virtual bool Screen(const http::request_header<>& header, Response& res,
                      std::optional<auth::Caller>& caller) const {
    return true;
  }
  // Fills a response for a request refused at the connection level: 400 (malformed), 413
  // (body over the limit), 501 (transfer coding), 429 or 503 (connection or upload limits).
  virtual void Reject(http::status status, const std::string& why, Response& res) const = 0;
  // A request with these headers was refused for its body size (just before Reject): for a
  // handler that owes someone else an answer about it.
  virtual void OnBodyTooLarge(const http::request_header<>& header, uint64_t limit) const {}
  virtual asio::awaitable<void> Handle(Request& req, Response& res) = 0;
  // Handle, for handlers that want to know the peer.
  virtual asio::awaitable<void> Serve(const Peer& peer, Request& req, Response& res) {
    return Handle(req, res);
  }
  // Whether this request's body goes to ServeBody piece by piece as it arrives, instead of
  // being read whole before Serve. (A request whose headers held its whole body, none, goes
  // to Serve as usual.) Its body limit still applies, and reports as BodyReader's error.
  virtual bool StreamsBody(const http::request_header<>& header) const { return false; }
  virtual asio::awaitable<void> ServeBody(const Peer& peer, BodyReader& body, Response& res) {
    co_return;
  }
  // Whether to serve this connection at all (checked once, before the first request).
  virtual bool Admit(const asio::ip::tcp::socket& socket) const { return true; }
};

// Accepts until the acceptor is closed, serving each connection on a strand of `connections`
// (not on the acceptor's executor, which may be a strand guarding only the acceptor).
// `keep_alive` is held by every connection (for handlers whose owner may go away).
asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive, HttpOptions options = {});

// One listener's connection and upload accounting (HttpOptions' limits), for a listener with
// several acceptors (one per shard on a SO_REUSEPORT port): each runs the AcceptLoop below with
// the same state, so the limits hold for the listener as a whole.
class ListenerState;
std::shared_ptr<ListenerState> NewListenerState(HttpOptions options);
asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive,
                                 std::shared_ptr<ListenerState> state);

}  // namespace thaw::gateway

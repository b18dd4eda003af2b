// HTTP/1.1 connection serving shared by the public API and the per-instance Runtime API:
// keep-alive, body limits decided per route from the headers, Expect: 100-continue, and a 400
// or 413 for malformed or oversized requests. Heavy (Beast): include only from .cc files.
//
// One coroutine per connection; the handler is called from that coroutine and must be safe to
// call concurrently for different connections.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>

namespace thaw::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Largest body accepted for a request with these headers.
  virtual uint64_t BodyLimit(const http::request_header<>& header) const = 0;
  // Fills a response for a request whose headers could not be parsed or whose body is over
  // the limit (`status` is 400 or 413).
  virtual void Reject(http::status status, const std::string& why, Response& res) const = 0;
  // A request with these headers was refused for its body size (just before Reject): for a
  // handler that owes someone else an answer about it.
  virtual void OnBodyTooLarge(const http::request_header<>& header, uint64_t limit) const {}
  virtual asio::awaitable<void> Handle(Request& req, Response& res) = 0;
  // Whether to serve this connection at all (checked once, before the first request).
  virtual bool Admit(const asio::ip::tcp::socket& socket) const { return true; }
};

asio::awaitable<void> ServeHttpConnection(asio::ip::tcp::socket socket, HttpHandler& handler);

// Accepts until the acceptor is closed, serving each connection on `connections` (not on
// the acceptor's executor, which may be a strand guarding only the acceptor).
// `keep_alive` is held by every connection (for handlers whose owner may go away).
asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive);

}  // namespace thaw::gateway

#include "gateway/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

namespace thaw::gateway {

namespace {

using namespace asio::experimental::awaitable_operators;

asio::awaitable<void> Discard(asio::ip::tcp::socket& socket, size_t max_bytes) {
  char buf[16384];
  size_t total = 0;
  boost::system::error_code ec;
  while (total < max_bytes) {
    total += co_await socket.async_read_some(asio::buffer(buf),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

asio::awaitable<void> Sleep(std::chrono::milliseconds how_long) {
  asio::steady_timer timer(co_await asio::this_coro::executor, how_long);
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// Sends an error response and closes without losing it: a client still uploading a body we
// refused would get a reset (and no response) if we closed with its bytes unread, so read and
// drop them for a bounded time first, as nginx's lingering close does.
asio::awaitable<void> RejectAndClose(asio::ip::tcp::socket& socket, Response& res) {
  boost::system::error_code ec;
  res.keep_alive(false);
  res.prepare_payload();
  co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  co_await (Discard(socket, 64 << 20) || Sleep(std::chrono::seconds(2)));
}

}  // namespace

asio::awaitable<void> ServeHttpConnection(asio::ip::tcp::socket socket, HttpHandler& handler) {
  boost::system::error_code ec;
  if (!handler.Admit(socket)) {
    socket.close(ec);
    co_return;
  }
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    // Beast checks Content-Length against the body limit while parsing the headers, before we
    // know the route: lift it here and apply the route's limit right after.
    parser.body_limit(boost::none);
    co_await http::async_read_header(socket, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      break;
    }
    Response res;
    res.version(11);
    if (ec) {
      handler.Reject(http::status::bad_request, "malformed HTTP request: " + ec.message(), res);
      co_await RejectAndClose(socket, res);
      co_return;
    }
    const uint64_t limit = handler.BodyLimit(parser.get().base());
    parser.body_limit(limit);
    if (parser.content_length() && *parser.content_length() > limit) {
      handler.OnBodyTooLarge(parser.get().base(), limit);
      handler.Reject(http::status::payload_too_large,
                     "request body of " + std::to_string(*parser.content_length()) +
                         " bytes is over the limit of " + std::to_string(limit) + " bytes",
                     res);
      co_await RejectAndClose(socket, res);
      co_return;
    }
    if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(kContinue, sizeof(kContinue) - 1),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    co_await http::async_read(socket, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::body_limit) {
      handler.OnBodyTooLarge(parser.get().base(), limit);
      handler.Reject(http::status::payload_too_large,
                     "request body is over the limit of " + std::to_string(limit) + " bytes", res);
      co_await RejectAndClose(socket, res);
      co_return;
    }
    if (ec) break;
    Request req = parser.release();
    res.keep_alive(req.keep_alive());
    co_await handler.Handle(req, res);
    res.prepare_payload();
    co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !res.keep_alive()) break;
  }
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive) {
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor.async_accept(connections, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
    if (ec) continue;  // EMFILE and friends: keep serving the connections we have
    asio::co_spawn(
        connections,
        [&handler, keep_alive, s = std::move(socket)]() mutable {
          return ServeHttpConnection(std::move(s), handler);
        },
        asio::detached);
  }
}

}  // namespace thaw::gateway

#include "gateway/webhook.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include "common/hmac.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

Status ValidateWebhookUrl(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->host().empty()) {
    return InvalidArgument("webhook must be an absolute URL (http://HOST[:PORT]/PATH), got '" +
                           url + "'");
  }
  if (u->scheme() != "http") {
    return InvalidArgument("webhook: only http:// URLs are supported, got '" + url + "'");
  }
  return Status::Ok();
}

asio::awaitable<StatusOr<int>> PostWebhook(std::string url, std::string body, std::string secret,
                                           std::string event, int64_t timeout_ms) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->scheme() != "http" || u->host().empty()) {
    co_return InvalidArgument("bad webhook URL '" + url + "'");
  }
  const std::string host = u->host();
  const std::string port = u->has_port() ? std::string(u->port()) : "80";
  std::string target = u->encoded_target().empty() ? "/" : std::string(u->encoded_target());
  auto ex = co_await asio::this_coro::executor;
  constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
  asio::ip::tcp::resolver resolver(ex);
  beast::tcp_stream stream(ex);
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  auto [rerr, endpoints] = co_await resolver.async_resolve(host, port, kTuple);
  if (rerr) co_return Unavailable("webhook " + url + ": resolve failed: " + rerr.message());
  auto [cerr, ep] = co_await stream.async_connect(endpoints, kTuple);
  if (cerr) co_return Unavailable("webhook " + url + ": connect failed: " + cerr.message());
  http::request<http::string_body> req(http::verb::post, target, 11);
  req.set(http::field::host, host + ":" + port);
  req.set(http::field::user_agent, "thaw-webhook");
  req.set(http::field::content_type, "application/json");
  req.set("X-Thaw-Signature", WebhookSignature(secret, body));
  req.set("X-Thaw-Webhook-Event", event);
  req.body() = std::move(body);
  req.prepare_payload();
  auto [werr, wn] = co_await http::async_write(stream, req, kTuple);
  if (werr) co_return Unavailable("webhook " + url + ": write failed: " + werr.message());
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  auto [rderr, rn] = co_await http::async_read(stream, buffer, res, kTuple);
  if (rderr) co_return Unavailable("webhook " + url + ": no answer: " + rderr.message());
  beast::error_code ec;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  co_return static_cast<int>(res.result_int());
}

}  // namespace thaw::gateway

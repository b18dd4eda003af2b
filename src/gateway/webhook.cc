#include "gateway/webhook.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

namespace thaw::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

ssl::context& TlsContext() {
  static ssl::context* ctx = [] {
    auto* c = new ssl::context(ssl::context::tls_client);
    c->set_default_verify_paths();
    c->set_verify_mode(ssl::verify_peer);
    return c;
  }();
  return *ctx;
}

template <typename Stream>
asio::awaitable<int> Exchange(Stream& stream, http::request<http::string_body>& req) {
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);  // the answer is not used: only its status
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  co_return parser.get().result_int();
}

}  // namespace

Status TrustWebhookCaFile(const std::string& path) {
  boost::system::error_code ec;
  TlsContext().load_verify_file(path, ec);
  if (ec) {
    return InvalidArgument("failed to load webhook_ca_file " + path + ": " + ec.message());
  }
  return Status::Ok();
}

bool IsInternalAddress(const asio::ip::address& address) {
  if (address.is_loopback() || address.is_unspecified() || address.is_multicast()) return true;
  if (address.is_v6()) {
    const asio::ip::address_v6 v6 = address.to_v6();
    if (v6.is_v4_mapped()) {
      return IsInternalAddress(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
    }
    const auto bytes = v6.to_bytes();
    return v6.is_link_local() || (bytes[0] & 0xfe) == 0xfc;  // fe80::/10, fc00::/7
  }
  const uint32_t a = address.to_v4().to_uint();
  auto in = [a](uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
  return in(0x00000000, 8) || in(0x0a000000, 8) || in(0xac100000, 12) || in(0xc0a80000, 16) ||
         in(0xa9fe0000, 16) || in(0x64400000, 10) || in(0x7f000000, 8);
}

asio::awaitable<StatusOr<int>> PostWebhook(
    const std::string& url, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout, bool allow_private) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  // The URL may carry a token: errors name its host at most.
  if (!parsed) co_return InvalidArgument("the webhook URL is not a valid URL");
  const bool tls = parsed->scheme() == "https";
  if (!tls && parsed->scheme() != "http") {
    co_return InvalidArgument("the webhook URL is not an http(s) URL");
  }
  std::string host(parsed->encoded_host());
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);  // IPv6
  const std::string port = parsed->has_port() ? std::string(parsed->port()) : tls ? "443" : "80";
  std::string target(parsed->encoded_path());
  if (target.empty()) target = "/";
  if (parsed->has_query()) target += "?" + std::string(parsed->encoded_query());

  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, std::string(parsed->encoded_host_and_port()));
  req.set(http::field::user_agent, "thaw-webhook");
  req.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = body;
  req.prepare_payload();

  auto executor = co_await asio::this_coro::executor;
  try {
    tcp::resolver resolver(executor);
    auto resolved = co_await resolver.async_resolve(host, port, asio::use_awaitable);
    std::vector<tcp::endpoint> endpoints;
    for (const auto& entry : resolved) {
      if (allow_private || !IsInternalAddress(entry.endpoint().address())) {
        endpoints.push_back(entry.endpoint());
      }
    }
    if (endpoints.empty()) {
      co_return Status(StatusCode::kPermissionDenied,
                       host +
                           " is an internal address: webhooks may not reach it "
                           "(webhook_private_addresses)");
    }
    beast::tcp_stream tcp_stream(executor);
    tcp_stream.expires_after(timeout);
    co_await tcp_stream.async_connect(endpoints, asio::use_awaitable);
    if (!tls) co_return co_await Exchange(tcp_stream, req);
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), TlsContext());
    // SNI, and the certificate must name the host.
    if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str())) {
      co_return Unavailable("failed to set the TLS server name for " + host);
    }
    stream.set_verify_callback(ssl::host_name_verification(host));
    co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
    co_return co_await Exchange(stream, req);
  } catch (const boost::system::system_error& e) {
    co_return Unavailable("failed to post to " + host + ":" + port + ": " + e.code().message());
  }
}

Status ValidateWebhookUrl(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->host().empty()) {
    return InvalidArgument("webhook must be an absolute URL (http(s)://HOST[:PORT]/PATH), got '" +
                           url + "'");
  }
  if (u->scheme() != "http" && u->scheme() != "https") {
    return InvalidArgument("webhook: only http:// and https:// URLs are supported, got '" + url +
                           "'");
  }
  return Status::Ok();
}

}  // namespace thaw::gateway

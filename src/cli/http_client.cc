#include "cli/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

namespace thaw::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

StatusOr<HttpResult> HttpCall(const std::string& server, const std::string& method,
                              const std::string& target, const std::string& body,
                              const Headers& headers, int timeout_ms) {
  auto url = boost::urls::parse_absolute_uri(server);
  if (!url || url->scheme() != "http" || url->host().empty()) {
    return InvalidArgument("server must look like http://HOST:PORT, got '" + server + "'");
  }
  std::string host = url->host();
  std::string port = url->has_port() ? std::string(url->port()) : "80";
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    if (timeout_ms > 0) stream.expires_after(std::chrono::milliseconds(timeout_ms));
    stream.connect(resolver.resolve(host, port));
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, host + ":" + port);
    req.set(http::field::user_agent, "thaw-cli");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    beast::error_code write_error;
    // A server may answer (413, 401) and stop reading before the body is sent: the write then
    // fails, but its response is still there to read.
    http::write(stream, req, write_error);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1ULL << 32);
    beast::error_code read_error;
    http::read(stream, buffer, parser, read_error);
    if (read_error) throw boost::system::system_error(write_error ? write_error : read_error);
    auto& res = parser.get();
    HttpResult out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(field.value());
    }
    out.body = std::move(res.body());
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
  } catch (const boost::system::system_error& e) {
    return Unavailable("cannot reach thaw at " + server + ": " + e.code().message());
  }
}

}  // namespace thaw::cli

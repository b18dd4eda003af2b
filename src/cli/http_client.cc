#include "cli/http_client.h"

#include <sys/stat.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <vector>

namespace thaw::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

StatusOr<std::pair<std::string, std::string>> HostPort(const std::string& server) {
  auto url = boost::urls::parse_absolute_uri(server);
  if (!url || url->scheme() != "http" || url->host().empty()) {
    return InvalidArgument("server must look like http://HOST:PORT, got '" + server + "'");
  }
  return std::make_pair(std::string(url->host()),
                        url->has_port() ? std::string(url->port()) : std::string("80"));
}

HttpResult ReadResult(beast::tcp_stream& stream) {
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ULL << 32);
  http::read(stream, buffer, parser);  // throws when no response came
  auto& res = parser.get();
  HttpResult out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = std::move(res.body());
  return out;
}

}  // namespace

StatusOr<HttpResult> HttpPutFile(const std::string& server, const std::string& target,
                                 const std::string& path, const Headers& headers,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  auto hp = HostPort(server);
  if (!hp.ok()) return hp.status();
  const auto& [host, port] = *hp;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return ErrnoStatus("open", path, errno);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(file, &std::fclose);
  struct stat st;
  if (::fstat(::fileno(file), &st) != 0) return ErrnoStatus("stat", path, errno);
  const int64_t total = st.st_size;
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.connect(resolver.resolve(host, port));
    http::request<http::empty_body> req(http::verb::put, target, 11);
    req.set(http::field::host, host + ":" + port);
    req.set(http::field::user_agent, "thaw-cli");
    req.set(http::field::content_type, "application/octet-stream");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.content_length(static_cast<uint64_t>(total));
    http::request_serializer<http::empty_body> sr(req);
    beast::error_code ec;
    http::write_header(stream, sr, ec);
    std::vector<char> buf(1 << 20);
    int64_t sent = 0;
    // A server may refuse (quota, bad key) and stop reading: the write then fails, but its
    // answer is still there to read.
    while (!ec && sent < total) {
      size_t n = std::fread(buf.data(), 1, buf.size(), file);
      if (n == 0) return ErrnoStatus("read", path, std::ferror(file) ? errno : EIO);
      asio::write(stream.socket(), asio::buffer(buf.data(), n), ec);
      if (!ec) {
        sent += static_cast<int64_t>(n);
        if (progress) progress(sent, total);
      }
    }
    HttpResult out = ReadResult(stream);
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
  } catch (const boost::system::system_error& e) {
    return Unavailable("cannot reach thaw at " + server + ": " + e.code().message());
  }
}

StatusOr<HttpResult> HttpCall(const std::string& server, const std::string& method,
                              const std::string& target, const std::string& body,
                              const Headers& headers, int timeout_ms) {
  auto hp = HostPort(server);
  if (!hp.ok()) return hp.status();
  const auto& [host, port] = *hp;
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

StatusOr<HttpResult> HttpGetTo(const std::string& server, const std::string& target,
                               const Headers& headers, int idle_timeout_ms,
                               const std::function<Status(std::string_view)>& sink) {
  auto hp = HostPort(server);
  if (!hp.ok()) return hp.status();
  const auto& [host, port] = *hp;
  constexpr size_t kErrorBodyBytes = 64 << 10;
  try {
    asio::io_context ioc;
    asio::ip::tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    const auto idle = std::chrono::milliseconds(idle_timeout_ms);
    if (idle_timeout_ms > 0) stream.expires_after(idle);
    stream.connect(resolver.resolve(host, port));
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, host + ":" + port);
    req.set(http::field::user_agent, "thaw");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (idle_timeout_ms > 0) stream.expires_after(idle);
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    if (idle_timeout_ms > 0) stream.expires_after(idle);
    http::read_header(stream, buffer, parser);
    HttpResult out;
    out.status = static_cast<int>(parser.get().result_int());
    for (const auto& field : parser.get()) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(field.value());
    }
    std::vector<char> buf(1 << 20);
    while (!parser.is_done()) {
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      if (idle_timeout_ms > 0) stream.expires_after(idle);
      beast::error_code ec;
      http::read(stream, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw boost::system::system_error(ec);
      const std::string_view got(buf.data(), buf.size() - parser.get().body().size);
      if (out.status == 200) {
        if (Status st = sink(got); !st.ok()) return st;
      } else if (out.body.size() < kErrorBodyBytes) {
        out.body.append(got.substr(0, kErrorBodyBytes - out.body.size()));
      }
    }
    beast::error_code ec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return out;
  } catch (const boost::system::system_error& e) {
    return Unavailable("GET " + target + " from " + server + ": " + e.code().message());
  }
}

}  // namespace thaw::cli

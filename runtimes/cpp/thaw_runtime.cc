// Implementation notes: plain POSIX sockets and a minimal HTTP/1.1 reader (Content-Length and
// chunked bodies) keep the runtime's start-up to a connect() and its per-call overhead to two
// writes and two reads.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>
#include <typeinfo>

#include "thaw/runtime.h"

namespace thaw::runtime {
namespace {

struct HttpResponse {
  int status = 0;
  std::string request_id, deadline, arn, trace, client_context, cognito;
  std::string body;
};

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

namespace detail {

class Connection {
 public:
  Connection() {
    const char* api = std::getenv("AWS_LAMBDA_RUNTIME_API");
    std::string_view a = api ? api : "";
    auto colon = a.rfind(':');
    if (colon == std::string_view::npos) {
      std::fprintf(stderr, "thaw runtime: AWS_LAMBDA_RUNTIME_API is not set\n");
      std::exit(1);
    }
    host_ = std::string(a.substr(0, colon));
    port_ = static_cast<uint16_t>(std::atoi(std::string(a.substr(colon + 1)).c_str()));
  }
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Sends one request and reads the response; reconnects once if the connection was closed.
  bool Exchange(const std::string& request, HttpResponse& out) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0 && !Connect()) return false;
      if (WriteAll(request) && ReadResponse(out)) return true;
      ::close(fd_);
      fd_ = -1;
      buf_.clear();
    }
    return false;
  }

  // Streaming: sends raw bytes on the connection (connecting first if needed).
  bool Send(std::string_view data) {
    if (fd_ < 0 && !Connect()) return false;
    return WriteAll(data);
  }
  // Whether thaw has answered (or closed) already: it does so mid-stream only to stop us.
  bool PeerAnswered() const {
    pollfd p{fd_, POLLIN, 0};
    return !buf_.empty() || ::poll(&p, 1, 0) != 0;
  }
  bool Read(HttpResponse& out) { return fd_ >= 0 && ReadResponse(out); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

 private:
  bool Connect() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    std::string host = host_ == "localhost" ? "127.0.0.1" : host_;
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
        ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::fprintf(stderr, "thaw runtime: failed to connect to %s:%u: %s\n", host.c_str(), port_,
                   std::strerror(errno));
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    return true;
  }

  bool WriteAll(std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  bool Fill() {
    char tmp[65536];
    ssize_t n;
    do {
      n = ::recv(fd_, tmp, sizeof(tmp), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  bool ReadLine(std::string& line) {
    size_t pos;
    while ((pos = buf_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    line.assign(buf_, 0, pos);
    buf_.erase(0, pos + 2);
    return true;
  }

  bool ReadExact(size_t n, std::string& out) {
    while (buf_.size() < n) {
      if (!Fill()) return false;
    }
    out.append(buf_, 0, n);
    buf_.erase(0, n);
    return true;
  }

  bool ReadResponse(HttpResponse& out) {
    out = HttpResponse();
    std::string line;
    if (!ReadLine(line) || line.size() < 12) return false;
    out.status = std::atoi(line.c_str() + 9);
    size_t content_length = 0;
    bool chunked = false;
    for (;;) {
      if (!ReadLine(line)) return false;
      if (line.empty()) break;
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string_view name(line.data(), colon);
      std::string_view value(line.data() + colon + 1, line.size() - colon - 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (IEquals(name, "content-length"))
        content_length = std::strtoull(value.data(), nullptr, 10);
      else if (IEquals(name, "transfer-encoding"))
        chunked = IEquals(value, "chunked");
      else if (IEquals(name, "lambda-runtime-aws-request-id"))
        out.request_id = value;
      else if (IEquals(name, "lambda-runtime-deadline-ms"))
        out.deadline = value;
      else if (IEquals(name, "lambda-runtime-invoked-function-arn"))
        out.arn = value;
      else if (IEquals(name, "lambda-runtime-trace-id"))
        out.trace = value;
      else if (IEquals(name, "lambda-runtime-client-context"))
        out.client_context = value;
      else if (IEquals(name, "lambda-runtime-cognito-identity"))
        out.cognito = value;
    }
    if (!chunked) return ReadExact(content_length, out.body);
    for (;;) {
      if (!ReadLine(line)) return false;
      size_t size = std::strtoull(line.c_str(), nullptr, 16);
      if (size == 0) {
        do {  // trailers
          if (!ReadLine(line)) return false;
        } while (!line.empty());
        return true;
      }
      if (!ReadExact(size, out.body) || !ReadLine(line)) return false;
    }
  }

  std::string host_;
  uint16_t port_ = 0;
  int fd_ = -1;
  std::string buf_;
};

}  // namespace detail

namespace {

using detail::Connection;

std::string Post(const std::string& path, const std::string& content_type, const std::string& body,
                 const std::string& extra_headers = "") {
  std::string req;
  req.reserve(body.size() + 256);
  req += "POST ";
  req += path;
  req += " HTTP/1.1\r\nHost: runtime\r\nContent-Type: ";
  req += content_type;
  req += "\r\nContent-Length: ";
  req += std::to_string(body.size());
  req += "\r\n";
  req += extra_headers;
  req += "\r\n";
  req += body;
  return req;
}

std::string ErrorJson(const std::string& type, const std::string& message) {
  return "{\"errorType\":\"" + JsonEscape(type) + "\",\"errorMessage\":\"" + JsonEscape(message) +
         "\"}";
}

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < in.size() ? kAlphabet[v & 63] : '=');
  }
  return out;
}

// Header values are one line of visible text.
std::string HeaderSafe(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text;
}

InvocationRequest FromNext(HttpResponse& res) {
  InvocationRequest req;
  req.payload = std::move(res.body);
  req.request_id = std::move(res.request_id);
  req.function_arn = std::move(res.arn);
  req.trace_id = std::move(res.trace);
  req.client_context = std::move(res.client_context);
  req.cognito_identity = std::move(res.cognito);
  req.deadline_ms = std::strtoll(res.deadline.c_str(), nullptr, 10);
  return req;
}

}  // namespace

void ResponseWriter::SetContentType(std::string content_type) {
  if (!started_) content_type_ = std::move(content_type);
}

bool ResponseWriter::Start() {
  if (started_) return !failed_;
  started_ = true;
  const std::string head =
      "POST " + path_ + " HTTP/1.1\r\nHost: runtime\r\nContent-Type: " + HeaderSafe(content_type_) +
      "\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Trailer: Lambda-Runtime-Function-Error-Type, "
      "Lambda-Runtime-Function-Error-Body\r\n\r\n";
  failed_ = !conn_->Send(head);
  return !failed_;
}

bool ResponseWriter::Write(std::string_view bytes) {
  if (!Start()) return false;
  if (bytes.empty()) return true;
  if (conn_->PeerAnswered()) failed_ = true;
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", bytes.size());
  failed_ = failed_ || !conn_->Send(size) || !conn_->Send(bytes) || !conn_->Send("\r\n");
  return !failed_;
}

bool ResponseWriter::Finish(const std::string& error_type, const std::string& error_json) {
  if (Start() && !conn_->PeerAnswered()) {
    std::string last = "0\r\n";
    if (!error_type.empty()) {
      last += "Lambda-Runtime-Function-Error-Type: " + HeaderSafe(error_type) +
              "\r\nLambda-Runtime-Function-Error-Body: " + Base64(error_json) + "\r\n";
    }
    last += "\r\n";
    failed_ = !conn_->Send(last);
  }
  HttpResponse res;
  const bool answered = conn_->Read(res);
  if (!answered || res.status >= 300 || failed_) {
    conn_->Reset();  // thaw closes a stream it stopped reading
    return false;
  }
  return true;
}

int64_t InvocationRequest::RemainingMillis() const {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return deadline_ms > now ? deadline_ms - now : 0;
}

InvocationResponse InvocationResponse::Success(std::string payload, std::string content_type) {
  InvocationResponse r;
  r.payload = std::move(payload);
  r.content_type = std::move(content_type);
  return r;
}

InvocationResponse InvocationResponse::Failure(std::string error_type, std::string error_message) {
  InvocationResponse r;
  r.ok = false;
  r.error_type = std::move(error_type);
  r.error_message = std::move(error_message);
  return r;
}

std::string JsonEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out;
}

namespace {

// Runs the handler; an exception it throws becomes its failure.
template <typename F>
InvocationResponse Guarded(F&& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    return InvocationResponse::Failure(typeid(e).name(), e.what());
  } catch (...) {
    return InvocationResponse::Failure("UnknownException", "handler threw a non-std exception");
  }
}

// The POST of a failed invocation's error to `base` (.../invocation/ID).
std::string ErrorPost(const std::string& base, const InvocationResponse& out) {
  return Post(base + "/error", "application/json", ErrorJson(out.error_type, out.error_message),
              "Lambda-Runtime-Function-Error-Type: " + out.error_type + "\r\n");
}

}  // namespace

int Run(const Handler& handler) {
  Connection conn;
  const std::string next =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";
  HttpResponse res;
  for (;;) {
    if (!conn.Exchange(next, res)) return 0;  // thaw stopped this instance
    if (res.status != 200) return res.status == 410 ? 0 : 1;
    InvocationRequest req = FromNext(res);
    InvocationResponse out = Guarded([&] { return handler(req); });
    const std::string base = "/2018-06-01/runtime/invocation/" + req.request_id;
    std::string request =
        out.ok ? Post(base + "/response", out.content_type, out.payload) : ErrorPost(base, out);
    if (!conn.Exchange(request, res)) return 0;
  }
}

int RunStreaming(const StreamingHandler& handler) {
  Connection conn;
  const std::string next =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";
  HttpResponse res;
  for (;;) {
    if (!conn.Exchange(next, res)) return 0;  // thaw stopped this instance
    if (res.status != 200) return res.status == 410 ? 0 : 1;
    InvocationRequest req = FromNext(res);
    const std::string base = "/2018-06-01/runtime/invocation/" + req.request_id;
    ResponseWriter writer(&conn, base + "/response");
    InvocationResponse out = Guarded([&] { return handler(req, writer); });
    if (!out.ok && !writer.started()) {
      if (!conn.Exchange(ErrorPost(base, out), res)) return 0;
      continue;
    }
    if (out.ok) {
      if (!writer.started()) writer.SetContentType(out.content_type);
      if (!out.payload.empty()) (void)writer.Write(out.payload);
      (void)writer.Finish("", "");
    } else {
      (void)writer.Finish(out.error_type, ErrorJson(out.error_type, out.error_message));
    }
  }
}

void ReportInitError(const std::string& error_type, const std::string& error_message) {
  Connection conn;
  HttpResponse res;
  (void)conn.Exchange(Post("/2018-06-01/runtime/init/error", "application/json",
                           ErrorJson(error_type, error_message),
                           "Lambda-Runtime-Function-Error-Type: " + error_type + "\r\n"),
                      res);
}

}  // namespace thaw::runtime

// Implementation notes: under thaw (THAW_CHANNEL_FD set) each call is one read of the event and
// one writev of the response, which also asks for the next event, on the native channel.
// Elsewhere, and for streamed responses, plain POSIX sockets and a minimal HTTP/1.1 reader
// (Content-Length and chunked bodies) keep the runtime's start-up to a connect() and its
// per-call overhead to one write (the response and the next GET, pipelined) and two reads.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>
#include <typeinfo>
#include <vector>

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

  // Two requests in one write, `pair` = the first then `second` (its tail): the answer to the
  // first is read and dropped, `out` is the second's. Reconnects once if the connection was
  // closed: with both again when the first was not answered, else with the second alone.
  bool ExchangePipelined(const std::string& pair, const std::string& second, HttpResponse& out) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0 && !Connect()) return false;
      if (WriteAll(pair) && ReadResponse(out)) {
        if (ReadResponse(out)) return true;
        Reset();
        return Exchange(second, out);
      }
      Reset();
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

// The native channel (THAW_CHANNEL_FD): thaw's own framing instead of HTTP, where a response
// and the ask for the next event are one write. Each frame is `u32 size` (little-endian, the
// bytes after it), a type byte and u32-length-prefixed fields (thaw's
// src/runtime_api/channel_frame.h has the table).
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}

  // Sends one frame; the last field (a body) goes out without being copied.
  bool Send(char type, std::initializer_list<std::string_view> fields) {
    std::string head(4, '\0');
    head.push_back(type);
    size_t size = 1;
    std::string_view last;
    size_t i = 0;
    for (std::string_view f : fields) {
      AppendU32(head, static_cast<uint32_t>(f.size()));
      size += 4 + f.size();
      if (++i == fields.size()) {
        last = f;
      } else {
        head.append(f);
      }
    }
    std::string size_bytes;
    AppendU32(size_bytes, static_cast<uint32_t>(size));
    head.replace(0, 4, size_bytes);
    iovec iov[2] = {{head.data(), head.size()}, {const_cast<char*>(last.data()), last.size()}};
    int count = last.empty() ? 1 : 2;
    iovec* at = iov;
    while (count > 0) {
      ssize_t n = ::writev(fd_, at, count);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      size_t wrote = static_cast<size_t>(n);
      while (count > 0 && wrote >= at->iov_len) {
        wrote -= at->iov_len;
        ++at;
        --count;
      }
      if (count > 0) {
        at->iov_base = static_cast<char*>(at->iov_base) + wrote;
        at->iov_len -= wrote;
      }
    }
    return true;
  }

  // The next event; false when thaw closed the channel (it is stopping this instance).
  bool ReadEvent(InvocationRequest& req) {
    if (!Fill(4)) return false;
    const size_t size = ReadU32(buf_.get() + off_);
    if (!Fill(4 + size)) return false;  // may move the bytes: read them after
    std::string_view frame(buf_.get() + off_ + 4, size);
    off_ += 4 + size;
    if (frame.empty() || frame[0] != 'V') return false;
    std::string_view fields[7];
    size_t at = 1;
    for (auto& f : fields) {
      if (frame.size() - at < 4) return false;
      const size_t len = ReadU32(frame.data() + at);
      at += 4;
      if (frame.size() - at < len) return false;
      f = frame.substr(at, len);
      at += len;
    }
    req.request_id.assign(fields[0]);
    req.deadline_ms = std::strtoll(std::string(fields[1]).c_str(), nullptr, 10);
    req.function_arn.assign(fields[2]);
    req.trace_id.assign(fields[3]);
    req.client_context.assign(fields[4]);
    req.cognito_identity.assign(fields[5]);
    req.payload.assign(fields[6]);
    return true;
  }

 private:
  static void AppendU32(std::string& out, uint32_t v) {
    const char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                       static_cast<char>((v >> 16) & 0xff), static_cast<char>(v >> 24)};
    out.append(b, 4);
  }
  static uint32_t ReadU32(const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return static_cast<uint32_t>(u[0]) | static_cast<uint32_t>(u[1]) << 8 |
           static_cast<uint32_t>(u[2]) << 16 | static_cast<uint32_t>(u[3]) << 24;
  }
  // Until `n` unread bytes are buffered at off_.
  bool Fill(size_t n) {
    if (end_ - off_ >= n) return true;
    if (off_ > 0) {
      std::memmove(buf_.get(), buf_.get() + off_, end_ - off_);
      end_ -= off_;
      off_ = 0;
    }
    if (size_ < n) {
      const size_t size = std::max(n, 2 * size_);
      std::unique_ptr<char[]> bigger(new char[size]);
      std::memcpy(bigger.get(), buf_.get(), end_);
      buf_ = std::move(bigger);
      size_ = size;
    }
    while (end_ < n) {
      // Sleep in poll, not in read: thaw reading our last frame frees its buffer, and the
      // kernel then wakes every sleeper on this socket (unix_write_space); a blocking read
      // would wake for nothing, once a call, where a wait for POLLIN does not.
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      ssize_t got = ::read(fd_, buf_.get() + end_, size_ - end_);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      end_ += static_cast<size_t>(got);
    }
    return true;
  }

  int fd_;
  // Not zero-filled: a page is touched (and faulted in) only once a read reaches it.
  size_t size_ = 65536;
  std::unique_ptr<char[]> buf_{new char[size_]};
  size_t off_ = 0, end_ = 0;  // unread bytes: [off_, end_)
};

// The channel thaw gave this process, or -1 (then the HTTP Runtime API serves it).
int ChannelFd() {
  const char* v = std::getenv("THAW_CHANNEL_FD");
  if (v == nullptr || *v == '\0') return -1;
  const int fd = std::atoi(v);
  // SAFETY: the function's own child processes must not hold (or write into) the channel.
  if (fd < 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
  return fd;
}

// --- Templates (thaw's docs/sandbox.md): init once, then fork instances ----------------------
// With templates on, thaw first starts the bootstrap as a template: THAW_TEMPLATE_FD names its
// channel to thaw's spawner. Everything main() did before Run is the function's init; Run then
// serves no events in the template but says "R" there and waits for fork requests: "P" with a
// fork socket. It refuses while the process holds more than one thread (a fork keeps only the
// calling one: locks the others hold would never be released), saying why on the fork socket
// (["E", why]). Else its child says ["H", its pid] there and waits for its identity, ["I",
// nodump, env...] with its stdout and stderr (and its native channel), sent once thaw has moved
// it into a cgroup of its own; then Run goes on in the child as in any instance. The template
// reports each child it reaps as ["X", pid, wait status]. Fields end in NUL (thaw's
// src/sandbox/wire.h). thaw forks only bootstraps that name THAW_TEMPLATE_FD (this file does),
// so binaries built with an older SDK keep their full starts.

constexpr char kTemplateFdVar[] = "THAW_TEMPLATE_FD";

// The template channel thaw gave this process, or -1 (an instance, or not under thaw).
int TemplateFd() {
  const char* v = std::getenv(kTemplateFdVar);
  if (v == nullptr || *v == '\0') return -1;
  const int fd = std::atoi(v);
  ::unsetenv(kTemplateFdVar);
  // SAFETY: the function's own child processes must not hold the spawner's channel.
  if (fd < 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
  return fd;
}

bool SendFields(int fd, std::initializer_list<std::string_view> fields) {
  std::string msg;
  for (std::string_view f : fields) {
    msg.append(f);
    msg.push_back('\0');
  }
  return ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
}

// One message into `buf` (at most `size` bytes) and at most `max_fds` descriptors, each
// close-on-exec. Returns the message's fields (each ended by NUL), or nothing when the read
// failed, the channel closed or the message was cut; `fds` holds what came either way.
std::optional<std::vector<std::string>> ReceiveFields(int fd, char* buf, size_t size,
                                                      std::vector<int>& fds, size_t max_fds) {
  iovec iov{buf, size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); n >= 0 && c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(got);
    }
  }
  if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || buf[n - 1] != '\0') {
    return std::nullopt;
  }
  std::vector<std::string> fields;
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    const size_t end = std::string_view(buf, n).find('\0', at);
    fields.emplace_back(buf + at, end - at);
    at = end + 1;
  }
  return fields;
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

int ThreadCount() {
  int threads = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) threads += e->d_name[0] != '.';
    ::closedir(d);
  }
  return threads;
}

// In a template's child, on its fork socket: says hello, takes its identity and becomes the
// instance thaw asked for. Exits when thaw does not take it (a spare thaw let go).
void BecomeInstance(int sock) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // it ends with its template
  ::setsid();
  if (!SendFields(sock, {"H", std::to_string(::getpid())})) ::_exit(0);
  // Room for any environment; not zero-filled, so only the pages the identity fills are
  // touched (each costs a forked child a page fault).
  constexpr size_t kMaxIdentity = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kMaxIdentity]);
  std::vector<int> fds;
  auto fields = ReceiveFields(sock, buf.get(), kMaxIdentity, fds, 3);
  if (!fields || fields->size() < 2 || (*fields)[0] != "I" || fds.size() < 2 || fds.size() > 3) {
    ::_exit(0);  // not taken: it must not run
  }
  ::close(sock);
  ::dup2(fds[0], 1);
  ::dup2(fds[1], 2);
  ::close(fds[0]);
  ::close(fds[1]);
  // Siblings share the template's uid: none may read another's memory or descriptors (ptrace
  // is refused by seccomp; this covers /proc/PID/mem, environ and pidfd_getfd).
  if ((*fields)[1] == "1") ::prctl(PR_SET_DUMPABLE, 0);
  ::clearenv();
  for (size_t i = 2; i < fields->size(); ++i) {
    const std::string& kv = (*fields)[i];
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) ::setenv(kv.substr(0, eq).c_str(), kv.c_str() + eq + 1, 1);
  }
  // Its own native channel, at whatever number it arrived (the template's descriptors are in
  // the way of the one an exec'd instance gets).
  if (fds.size() == 3) {
    ::setenv("THAW_CHANNEL_FD", std::to_string(fds[2]).c_str(), 1);
  } else {
    ::unsetenv("THAW_CHANNEL_FD");
  }
  // Siblings must not draw the same numbers from rand() as each other or the template.
  unsigned seed = 0;
  if (::getrandom(&seed, sizeof(seed), 0) == sizeof(seed)) std::srand(seed);
}

// The template's loop. Returns only in a child, once it is an instance; the template itself
// exits when thaw closes its channel.
void ServeAsTemplate(int chan) {
  std::fflush(nullptr);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  const int reaped = ::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (reaped < 0 || !SendFields(chan, {"R"})) {
    std::fprintf(stderr, "[thaw] template: %s\n", std::strerror(errno));
    ::_exit(1);
  }
  char buf[4096];
  for (;;) {
    pollfd p[2] = {{chan, POLLIN, 0}, {reaped, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) continue;  // EINTR
    if (p[1].revents != 0) {
      signalfd_siginfo info;
      while (::read(reaped, &info, sizeof(info)) == sizeof(info)) {
      }
      int status = 0;
      for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) {
        (void)SendFields(chan, {"X", std::to_string(pid), std::to_string(status)});
      }
    }
    if (p[0].revents == 0) continue;
    std::vector<int> fds;
    auto fields = ReceiveFields(chan, buf, sizeof(buf), fds, 1);
    if (!fields && fds.empty()) ::_exit(0);  // thaw is gone
    if (!fields || *fields != std::vector<std::string>{"P"} || fds.size() != 1) {
      CloseAll(fds);
      continue;
    }
    const int fork_fd = fds[0];
    if (const int threads = ThreadCount(); threads > 1) {
      (void)SendFields(fork_fd, {"E", "the template holds " + std::to_string(threads) +
                                          " threads after init (a fork keeps only one); start "
                                          "no threads before thaw::runtime::Run"});
      ::close(fork_fd);
      continue;
    }
    std::fflush(nullptr);
    if (::fork() != 0) {  // the template (or a failed fork: thaw sees the socket close)
      ::close(fork_fd);
      continue;
    }
    ::close(reaped);
    ::close(chan);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    BecomeInstance(fork_fd);
    return;
  }
}

// Called first by Run and RunStreaming: in a template, returns only once this process is a
// forked instance.
void ServeAsTemplateIfAsked() {
  if (const int chan = TemplateFd(); chan >= 0) ServeAsTemplate(chan);
}

}  // namespace detail

namespace {

using detail::Channel;
using detail::ChannelFd;
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

namespace {

int RunOnChannel(const Handler& handler, int fd) {
  Channel channel(fd);
  if (!channel.Send('N', {})) return 0;
  InvocationRequest req;
  for (;;) {
    if (!channel.ReadEvent(req)) return 0;  // thaw stopped this instance
    InvocationResponse out = Guarded([&] { return handler(req); });
    const bool sent = out.ok ? channel.Send('R', {req.request_id, out.payload})
                             : channel.Send('E', {req.request_id, out.error_type,
                                                  ErrorJson(out.error_type, out.error_message)});
    if (!sent) return 0;
  }
}

}  // namespace

int Run(const Handler& handler) {
  detail::ServeAsTemplateIfAsked();
  if (const int fd = ChannelFd(); fd >= 0) return RunOnChannel(handler, fd);
  Connection conn;
  const std::string next =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";
  HttpResponse res;
  if (!conn.Exchange(next, res)) return 0;  // thaw stopped this instance
  for (;;) {
    if (res.status != 200) return res.status == 410 ? 0 : 1;
    InvocationRequest req = FromNext(res);
    InvocationResponse out = Guarded([&] { return handler(req); });
    const std::string base = "/2018-06-01/runtime/invocation/" + req.request_id;
    std::string request =
        out.ok ? Post(base + "/response", out.content_type, out.payload) : ErrorPost(base, out);
    // The answer and the GET for the next event in one write (HTTP/1.1 pipelining): thaw reads
    // both in one wake-up and answers them in order.
    request += next;
    if (!conn.ExchangePipelined(request, next, res)) return 0;  // thaw stopped this instance
  }
}

int RunStreaming(const StreamingHandler& handler) {
  detail::ServeAsTemplateIfAsked();
  // Under thaw, events come on the native channel; the streamed answers still go over HTTP
  // (Lambda's streaming mode: chunks and error trailers), then the channel says "ready".
  const int fd = ChannelFd();
  std::optional<Channel> channel;
  if (fd >= 0) channel.emplace(fd);
  Connection conn;
  // Connected now, as the HTTP loop is by its first GET: thaw checks who holds a Runtime API
  // connection when it accepts it, which a runtime that dies right after its first chunk would
  // no longer pass.
  if (channel.has_value()) (void)conn.Send("");
  const std::string next =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";
  HttpResponse res;
  bool ready = false;  // the channel was told already (an error frame says it)
  for (;;) {
    InvocationRequest req;
    if (channel.has_value()) {
      if (!ready && !channel->Send('N', {})) return 0;
      ready = false;
      if (!channel->ReadEvent(req)) return 0;  // thaw stopped this instance
    } else {
      if (!conn.Exchange(next, res)) return 0;  // thaw stopped this instance
      if (res.status != 200) return res.status == 410 ? 0 : 1;
      req = FromNext(res);
    }
    const std::string base = "/2018-06-01/runtime/invocation/" + req.request_id;
    ResponseWriter writer(&conn, base + "/response");
    InvocationResponse out = Guarded([&] { return handler(req, writer); });
    if (!out.ok && !writer.started()) {
      if (channel.has_value()) {
        if (!channel->Send('E', {req.request_id, out.error_type,
                                 ErrorJson(out.error_type, out.error_message)})) {
          return 0;
        }
        ready = true;
        continue;
      }
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
  // A template has no caller to tell: the full start that follows reports the error.
  if (const int chan = detail::TemplateFd(); chan >= 0) {
    std::fprintf(stderr, "[thaw] template init failed: %s: %s\n", error_type.c_str(),
                 error_message.c_str());
    return;
  }
  if (const int fd = ChannelFd(); fd >= 0) {
    Channel channel(fd);
    (void)channel.Send('I', {error_type, ErrorJson(error_type, error_message)});
    return;
  }
  Connection conn;
  HttpResponse res;
  (void)conn.Exchange(Post("/2018-06-01/runtime/init/error", "application/json",
                           ErrorJson(error_type, error_message),
                           "Lambda-Runtime-Function-Error-Type: " + error_type + "\r\n"),
                      res);
}

}  // namespace thaw::runtime

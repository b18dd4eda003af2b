// Burst client: opens N connections to a thaw server, then sends one call on each at once (one
// process, one poll loop, so the driver neither staggers the calls nor competes with them for
// the CPU as N curl processes do), and prints one line per call: "STATUS SECONDS", the time
// from that call's send to its full response (curl's -w '%{http_code} %{time_total}' format).
// Usage: burst HOST:PORT KEY PATH BODY N
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Call {
  int fd = -1;
  std::string response;
  Clock::time_point sent, done;
  bool finished = false;
};

// The status code of a complete HTTP/1.1 response in `r` (Connection: close, so the server
// ends it with EOF); 0 when it is not one.
int StatusOf(const std::string& r) {
  if (r.compare(0, 9, "HTTP/1.1 ") != 0 || r.size() < 12) return 0;
  return std::atoi(r.c_str() + 9);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: burst HOST:PORT KEY PATH BODY N\n");
    return 2;
  }
  const std::string target = argv[1], key = argv[2], path = argv[3], body = argv[4];
  const int n = std::atoi(argv[5]);
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || n <= 0) {
    std::fprintf(stderr, "burst: bad HOST:PORT or N\n");
    return 2;
  }
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < static_cast<rlim_t>(n) + 64) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, static_cast<rlim_t>(n) + 64);
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(target.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, target.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "burst: not an IPv4 address: %s\n", target.c_str());
    return 2;
  }
  const std::string request =
      "POST " + path + " HTTP/1.1\r\nHost: " + target + "\r\nAuthorization: Bearer " + key +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  // Every connection is made first, so the burst is only the calls.
  std::vector<Call> calls(static_cast<size_t>(n));
  for (auto& c : calls) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || ::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::fprintf(stderr, "burst: failed to connect to %s: %s\n", target.c_str(),
                   std::strerror(errno));
      return 1;
    }
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  for (auto& c : calls) {
    c.sent = Clock::now();
    // A request this small fits a fresh socket's send buffer: one send writes it whole.
    if (::send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      c.finished = true;
      c.done = Clock::now();
    }
  }
  std::vector<pollfd> pfds;
  std::vector<size_t> which;
  char buf[16384];
  for (;;) {
    pfds.clear();
    which.clear();
    for (size_t i = 0; i < calls.size(); ++i) {
      if (calls[i].finished) continue;
      pfds.push_back({calls[i].fd, POLLIN, 0});
      which.push_back(i);
    }
    if (pfds.empty()) break;
    if (::poll(pfds.data(), pfds.size(), -1) < 0 && errno != EINTR) {
      std::perror("burst: poll");
      return 1;
    }
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      Call& c = calls[which[k]];
      ssize_t got = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (got > 0) {
        c.response.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        c.done = Clock::now();
        c.finished = true;
        ::close(c.fd);
      }
    }
  }
  for (const auto& c : calls) {
    const double seconds = std::chrono::duration<double>(c.done - c.sent).count();
    std::printf("%d %.6f\n", StatusOf(c.response), seconds);
  }
  return 0;
}

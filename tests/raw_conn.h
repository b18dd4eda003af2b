// RawConn: a raw HTTP/1.1 connection to a test server on loopback, read as bytes arrive, so a
// test sees when each chunk of a streamed answer gets here. Thread-compatible: one owner.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace thaw::testing {

// Seconds since the epoch, as a function's own time.time() reports them.
inline double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class RawConn {
 public:
  explicit RawConn(const std::string& url) {
    int port = std::stoi(url.substr(url.rfind(':') + 1));
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConn() { Close(); }
  bool Send(const std::string& bytes) {
    return connected_ && ::write(fd_, bytes.data(), bytes.size()) == ssize_t(bytes.size());
  }
  // Reads until `needle` has arrived (true) or the peer closed or `timeout_ms` passed.
  bool ReadUntil(const std::string& needle, int timeout_ms = 20000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (received_.find(needle) == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n <= 0) return received_.find(needle) != std::string::npos;
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until the server closes (requests are sent with Connection: close).
  void ReadToEnd(int timeout_ms = 20000) { ReadUntil(std::string(1, '\0') + "never", timeout_ms); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

}  // namespace thaw::testing

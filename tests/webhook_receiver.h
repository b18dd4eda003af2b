// WebhookReceiver: a real HTTP/1.1 server on 127.0.0.1:0 for tests of webhook destinations. A
// thread accepts connections one at a time, reads each request (Content-Length bodies), keeps
// it, and answers with the status the test sets (200 by default). Given a certificate and key
// it speaks HTTPS (OpenSSL) instead, and counts the handshakes that failed (a client that
// refused its certificate). Thread-safe.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace thaw::testing {

struct ReceivedRequest {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// PEM files: the certificate chain the receiver presents (leaf first) and its key.
struct TlsFiles {
  std::string cert_chain, key;
};

class WebhookReceiver {
 public:
  explicit WebhookReceiver(const std::optional<TlsFiles>& tls = std::nullopt) {
    if (tls) {
      ::signal(SIGPIPE, SIG_IGN);  // SSL_write has no MSG_NOSIGNAL
      ssl_ctx_ = SSL_CTX_new(TLS_server_method());
      if (SSL_CTX_use_certificate_chain_file(ssl_ctx_, tls->cert_chain.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ssl_ctx_, tls->key.c_str(), SSL_FILETYPE_PEM) != 1) {
        SSL_CTX_free(ssl_ctx_);
        ssl_ctx_ = nullptr;
        throw std::runtime_error("failed to load the receiver's certificate " + tls->cert_chain);
      }
    }
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 64);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
    if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  }
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  // `host` names 127.0.0.1 in the URL (an https receiver's certificate must name it).
  std::string url(const std::string& path = "/hook", const std::string& host = "127.0.0.1") const {
    return std::string(ssl_ctx_ != nullptr ? "https://" : "http://") + host + ":" +
           std::to_string(port_) + path;
  }
  int handshake_failures() const { return handshake_failures_.load(); }
  void set_status(int status) { status_ = status; }
  std::vector<ReceivedRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // Waits until `pred(requests)` holds, up to `timeout_ms`.
  bool WaitFor(const std::function<bool(const std::vector<ReceivedRequest>&)>& pred,
               int timeout_ms) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return pred(requests_); });
  }

  // "sha256=" + hex HMAC-SHA256(secret, body): what X-Thaw-Signature must say.
  static std::string Sign(const std::string& secret, const std::string& body) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
    static const char* kHex = "0123456789abcdef";
    std::string out = "sha256=";
    for (unsigned int i = 0; i < len; ++i) {
      out += kHex[mac[i] >> 4];
      out += kHex[mac[i] & 15];
    }
    return out;
  }

 private:
  void Serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stop_) return;
        continue;
      }
      timeval tv{10, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      SSL* ssl = nullptr;
      if (ssl_ctx_ != nullptr) {
        ssl = SSL_new(ssl_ctx_);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) != 1) {
          SSL_free(ssl);
          ::close(c);
          {
            std::lock_guard<std::mutex> lock(mu_);
            ++handshake_failures_;
          }
          cv_.notify_all();
          continue;
        }
      }
      auto receive = [&](char* into, size_t size) -> ssize_t {
        if (ssl == nullptr) return ::recv(c, into, size, 0);
        return SSL_read(ssl, into, static_cast<int>(size));
      };
      std::string data;
      char buf[65536];
      size_t header_end = std::string::npos;
      ReceivedRequest req;
      size_t want = 0;
      for (;;) {
        if (header_end != std::string::npos && data.size() >= header_end + 4 + want) break;
        ssize_t n = receive(buf, sizeof(buf));
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (header_end == std::string::npos &&
            (header_end = data.find("\r\n\r\n")) != std::string::npos) {
          ParseHead(data.substr(0, header_end), req);
          auto it = req.headers.find("content-length");
          want = it == req.headers.end() ? 0 : std::stoul(it->second);
        }
      }
      if (header_end != std::string::npos && data.size() >= header_end + 4 + want) {
        req.body = data.substr(header_end + 4, want);
        const int status = status_.load();
        {
          std::lock_guard<std::mutex> lock(mu_);
          requests_.push_back(std::move(req));
        }
        cv_.notify_all();
        const std::string answer = "HTTP/1.1 " + std::to_string(status) +
                                   " X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        if (ssl == nullptr) {
          (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
        } else {
          (void)SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
        }
      }
      if (ssl != nullptr) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
      }
      ::close(c);
    }
  }
  static void ParseHead(const std::string& head, ReceivedRequest& req) {
    size_t pos = head.find("\r\n");
    const std::string first = head.substr(0, pos);
    const size_t sp1 = first.find(' '), sp2 = first.rfind(' ');
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    while (pos != std::string::npos && pos < head.size()) {
      const size_t start = pos + 2;
      size_t end = head.find("\r\n", start);
      const std::string line = head.substr(start, end == std::string::npos ? end : end - start);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        req.headers[name] = line.substr(v);
      }
      pos = end;
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> status_{200};
  SSL_CTX* ssl_ctx_ = nullptr;  // null: plain HTTP
  std::atomic<int> handshake_failures_{0};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<ReceivedRequest> requests_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace thaw::testing

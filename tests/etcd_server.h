// EtcdServer: one real etcd member (Debian's etcd-server) for tests, on 127.0.0.1 with private
// ports and a temp data dir; killed and removed by the destructor. Header-only, for the
// integration binaries that need a cluster. Thread-compatible: one owner.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {

inline constexpr const char* kEtcdBinary = "/usr/bin/etcd";

class EtcdServer {
 public:
  // Null when it did not answer its health check within 20 s.
  static std::unique_ptr<EtcdServer> Start() {
    auto e = std::unique_ptr<EtcdServer>(new EtcdServer());
    char tmpl[] = "/tmp/thaw-etcd-XXXXXX";
    e->dir_ = ::mkdtemp(tmpl);
    const std::string client = "http://127.0.0.1:" + std::to_string(FreePort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(FreePort());
    std::vector<std::string> argv = {kEtcdBinary,
                                     "--name=t",
                                     "--data-dir=" + e->dir_ + "/data",
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=t=" + peer,
                                     "--logger=zap",
                                     "--log-outputs=" + e->dir_ + "/etcd.log"};
    e->pid_ = ::fork();
    if (e->pid_ == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(kEtcdBinary, args.data());
      ::_exit(127);
    }
    e->url_ = client;
    const bool up = Eventually(
        [&] {
          auto r = cli::HttpCall(client, "GET", "/health", "", {});
          return r.ok() && r->status == 200 && r->body.find("true") != std::string::npos;
        },
        20000);
    if (!up) return nullptr;
    return e;
  }
  ~EtcdServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) RemoveDir(dir_);
  }
  const std::string& url() const { return url_; }

  // A free loopback port (bound and released: the server started next takes it).
  static int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
    ::close(fd);
    return port;
  }

 private:
  EtcdServer() = default;
  pid_t pid_ = -1;
  std::string dir_, url_;
};

}  // namespace thaw::testing

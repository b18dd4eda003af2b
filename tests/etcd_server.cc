#include "etcd_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "server_fixture.h"

namespace thaw::testing {

int FreePort() {
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

std::unique_ptr<EtcdServer> EtcdServer::Start() {
  auto e = std::unique_ptr<EtcdServer>(new EtcdServer());
  char tmpl[] = "/tmp/thaw-etcd-XXXXXX";
  e->dir_ = ::mkdtemp(tmpl);
  const std::string client = "http://127.0.0.1:" + std::to_string(FreePort());
  const std::string peer = "http://127.0.0.1:" + std::to_string(FreePort());
  std::vector<std::string> argv = {kEtcd,
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
    ::execv(kEtcd, args.data());
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

EtcdServer::~EtcdServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) RemoveDir(dir_);
}

}  // namespace thaw::testing

// EtcdServer: one etcd member for tests (Debian's etcd-server), its clients served on HOST
// (127.0.0.1 unless told) at a private port, its data in a temp dir; killed and removed by its
// destructor, and killed with the test process if that dies first. Tests skip without kEtcd.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/files.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {

inline constexpr const char* kEtcd = "/usr/bin/etcd";

// A port free now on `host` (the kernel's pick for port 0, bound and released: the etcd
// started next takes it); 0 when none could be had.
inline int FreePortOn(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

class EtcdServer {
 public:
  // Null with `why_not` set when kEtcd is missing or did not become healthy (its log says why).
  static std::unique_ptr<EtcdServer> Start(std::string& why_not,
                                           const std::string& host = "127.0.0.1") {
    if (::access(kEtcd, X_OK) != 0) {
      why_not = std::string(kEtcd) + " is missing: apt-get install etcd-server";
      return nullptr;
    }
    auto e = std::unique_ptr<EtcdServer>(new EtcdServer());
    char tmpl[] = "/tmp/thaw-etcd-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      why_not = "failed to create a temp dir for etcd";
      return nullptr;
    }
    e->dir_ = tmpl;
    const std::string client = "http://" + host + ":" + std::to_string(FreePortOn(host));
    const std::string peer = "http://127.0.0.1:" + std::to_string(FreePortOn("127.0.0.1"));
    e->argv_ = {kEtcd,
                "--name=t",
                "--data-dir=" + e->dir_ + "/data",
                "--listen-client-urls=" + client,
                "--advertise-client-urls=" + client,
                "--listen-peer-urls=" + peer,
                "--initial-advertise-peer-urls=" + peer,
                "--initial-cluster=t=" + peer,
                "--logger=zap",
                "--log-outputs=" + e->dir_ + "/etcd.log"};
    e->url_ = client;
    if (!e->Run(why_not)) return nullptr;
    return e;
  }
  // SIGKILLs etcd and starts it again on the same data dir and ports (its keys and leases
  // survive, as a restarted member's do); false with `why_not` when it does not come back.
  bool Restart(std::string& why_not) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return Run(why_not);
  }
  ~EtcdServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) RemoveDir(dir_);
  }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;
  const std::string& url() const { return url_; }

 private:
  EtcdServer() = default;
  // Starts argv_ and waits until it answers healthy.
  bool Run(std::string& why_not) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test leaves no etcd behind
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::vector<char*> args;
      for (auto& a : argv_) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(kEtcd, args.data());
      ::_exit(127);
    }
    const bool up = Eventually(
        [&] {
          auto r = cli::HttpCall(url_, "GET", "/health", "", {});
          return r.ok() && r->status == 200 && r->body.find("true") != std::string::npos;
        },
        20000);
    if (!up) {
      auto log = ReadFile(dir_ + "/etcd.log");
      why_not = "etcd did not become healthy at " + url_ + ": " + (log.ok() ? *log : "(no log)");
    }
    return up;
  }
  pid_t pid_ = -1;
  std::string dir_, url_;
  std::vector<std::string> argv_;
};

// What a test of several nodes stands on: a database of its own on the shared private
// PostgreSQL (`store`) and an etcd member (`etcd`). Returns why the test must skip (no etcd or
// PostgreSQL binaries), else empty; when something failed to start, `etcd` is null and `error`
// says why. Link pg_server.cc.
inline std::string StartClusterBackends(std::string& store, std::unique_ptr<EtcdServer>& etcd,
                                        std::string& error) {
  if (::access(kEtcd, X_OK) != 0) {
    return std::string(kEtcd) + " is missing: apt-get install etcd-server";
  }
  std::string why;
  PgServer* pg = PgServer::Shared(why);
  if (pg == nullptr) return "no PostgreSQL: " + why;
  store = pg->CreateDatabase();
  if (store.empty()) {
    error = "could not create a database on the test PostgreSQL";
    return "";
  }
  etcd = EtcdServer::Start(why);
  if (etcd == nullptr) error = "etcd did not start: " + why;
  return "";
}

}  // namespace thaw::testing

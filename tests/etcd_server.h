// EtcdServer: one real etcd member (Debian's etcd-server) for tests, on 127.0.0.1 with private
// ports and a temp data dir; killed and removed by the destructor. Thread-compatible.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

namespace thaw::testing {

inline constexpr const char* kEtcd = "/usr/bin/etcd";

// A free loopback port (bound and released: the server started next takes it).
int FreePort();

class EtcdServer {
 public:
  // Null when it did not become healthy within 20 s.
  static std::unique_ptr<EtcdServer> Start();
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;
  const std::string& url() const { return url_; }

 private:
  EtcdServer() = default;
  pid_t pid_ = -1;
  std::string dir_, url_;
};

}  // namespace thaw::testing

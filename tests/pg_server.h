// PgServer: a private PostgreSQL for tests (Debian's `postgresql` binaries): initdb into a temp
// dir, `postgres` on a free loopback port with its unix socket in that dir, no system service.
// As root the server runs as `nobody` (postgres refuses root). Stopped, and its dir removed, by
// the destructor. Thread-compatible: one owner.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace thaw::testing {

class PgServer {
 public:
  // Starts one; null with `why_not` set when it cannot run here (no binaries, no `nobody`) or
  // failed to start (with the server's log). `host`: the IPv4 address it listens on; any other
  // than loopback (a test's own bridge) also trusts every client that reaches it there.
  static std::unique_ptr<PgServer> Start(std::string& why_not,
                                         const std::string& host = "127.0.0.1");
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // A new empty database, as a postgres:// URL thaw can be given (--store); "" on failure.
  std::string CreateDatabase();
  int port() const { return port_; }
  const std::string& host() const { return host_; }

  // The one server of this test binary, started on first use and stopped at exit; null (with
  // `why_not`) when none can run.
  static PgServer* Shared(std::string& why_not);

 private:
  PgServer() = default;
  // Runs `command` (a shell line), as the server's user when running as root; its exit status.
  int RunAsOwner(const std::string& command) const;

  std::string bin_;   // the folder holding initdb, pg_ctl and postgres
  std::string root_;  // temp dir: data/, the socket, log
  std::string host_;  // the address it listens on
  int port_ = 0;
  bool as_nobody_ = false;
  bool running_ = false;
  int databases_ = 0;
};

// Runs `sql` on `url`; its rows as text, or nothing (with a test failure) when it failed.
std::vector<std::vector<std::string>> Query(const std::string& url, const std::string& sql);

}  // namespace thaw::testing

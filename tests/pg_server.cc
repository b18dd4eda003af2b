#include "pg_server.h"

#include <arpa/inet.h>
#include <glob.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "common/files.h"

namespace thaw::testing {
namespace {

// The newest Debian PostgreSQL's binaries (/usr/lib/postgresql/N/bin), or THAW_PG_BIN.
std::string FindBinDir() {
  if (const char* env = std::getenv("THAW_PG_BIN"); env != nullptr && *env != '\0') return env;
  glob_t g{};
  std::vector<std::string> found;
  if (::glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  if (found.empty()) return "";
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;  // 9 < 15
  });
  const std::string& newest = found.back();
  return newest.substr(0, newest.rfind('/'));
}

// A port free now on 127.0.0.1 (the kernel's pick for port 0).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

int ExitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128; }

}  // namespace

int PgServer::RunAsOwner(const std::string& command) const {
  const std::string line =
      as_nobody_ ? "runuser -u nobody -- /bin/sh -c '" + command + "'" : command;
  return ExitCode(std::system(line.c_str()));
}

std::unique_ptr<PgServer> PgServer::Start(std::string& why_not, const std::string& host) {
  std::unique_ptr<PgServer> pg(new PgServer());
  pg->host_ = host;
  pg->bin_ = FindBinDir();
  if (pg->bin_.empty() || ::access((pg->bin_ + "/initdb").c_str(), X_OK) != 0) {
    why_not =
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; Debian's "
        "`postgresql`, which scripts/deps.sh installs)";
    return nullptr;
  }
  pg->as_nobody_ = ::geteuid() == 0;
  const passwd* nobody = pg->as_nobody_ ? ::getpwnam("nobody") : nullptr;
  if (pg->as_nobody_ && (nobody == nullptr || ::access("/usr/sbin/runuser", X_OK) != 0)) {
    why_not = "running as root, and there is no `nobody` user or runuser to run postgres as";
    return nullptr;
  }
  char tmpl[] = "/tmp/thaw-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    why_not = "failed to create a temp dir";
    return nullptr;
  }
  pg->root_ = tmpl;
  // SAFETY: our own fresh temp dir, handed to the unprivileged user that runs the server.
  if (nobody != nullptr && ::chown(tmpl, nobody->pw_uid, nobody->pw_gid) != 0) {
    why_not = "failed to chown " + pg->root_ + " to nobody";
    return nullptr;
  }
  const std::string data = pg->root_ + "/data", log = pg->root_ + "/log";
  if (pg->RunAsOwner(pg->bin_ + "/initdb -D " + data +
                     " -A trust -U thaw --encoding=UTF8 --locale=C --no-sync > " + log + " 2>&1") !=
      0) {
    auto text = ReadFile(log);
    why_not = "initdb failed: " + (text.ok() ? *text : std::string("(no log)"));
    return nullptr;
  }
  // initdb's -A trust covers loopback only: a server on a test's bridge trusts that too.
  if (host != "127.0.0.1" &&
      pg->RunAsOwner("echo \"host all all 0.0.0.0/0 trust\" >> " + data + "/pg_hba.conf") != 0) {
    why_not = "failed to write " + data + "/pg_hba.conf";
    return nullptr;
  }
  // A port picked now may be taken before postgres binds it: try a few.
  for (int attempt = 0; attempt < 3 && !pg->running_; ++attempt) {
    pg->port_ = FreePort();
    const std::string options = "-p " + std::to_string(pg->port_) + " -k " + pg->root_ +
                                " -c listen_addresses=" + host +
                                " -c fsync=off"
                                " -c synchronous_commit=off -c full_page_writes=off";
    pg->running_ = pg->RunAsOwner(pg->bin_ + "/pg_ctl -D " + data + " -l " + log + " -w -t 60" +
                                  " -o \"" + options + "\" start > /dev/null 2>&1") == 0;
  }
  if (!pg->running_) {
    auto text = ReadFile(log);
    why_not = "postgres did not start: " + (text.ok() ? *text : std::string("(no log)"));
    return nullptr;
  }
  return pg;
}

PgServer::~PgServer() {
  if (running_) {
    (void)RunAsOwner(bin_ + "/pg_ctl -D " + root_ + "/data -m immediate -w stop > /dev/null 2>&1");
  }
  if (!root_.empty()) (void)RemoveTree(root_);
}

std::string PgServer::CreateDatabase() {
  const std::string name = "t" + std::to_string(++databases_);
  const std::string base = "postgres://thaw@" + host_ + ":" + std::to_string(port_) + "/";
  const std::string admin = base + "postgres";
  PGconn* conn = PQconnectdb(admin.c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (ok) {
    PGresult* r = PQexec(conn, ("CREATE DATABASE " + name).c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  PQfinish(conn);
  return ok ? base + name : "";
}

PgServer* PgServer::Shared(std::string& why_not) {
  static std::mutex mu;
  static std::unique_ptr<PgServer> shared;
  static std::string why;
  static bool tried = false;
  std::lock_guard<std::mutex> lock(mu);
  if (!tried) {
    tried = true;
    shared = Start(why);
    // Stopped at exit: a static's destructor runs after every test.
  }
  why_not = why;
  return shared.get();
}

std::vector<std::vector<std::string>> Query(const std::string& url, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  PGconn* conn = PQconnectdb(url.c_str());
  EXPECT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* r = PQexec(conn, sql.c_str());
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      rows.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) rows.back().push_back(PQgetvalue(r, i, j));
    }
  }
  PQclear(r);
  PQfinish(conn);
  return rows;
}

}  // namespace thaw::testing

// PgDb: the PostgreSQL backend of store::Db on libpq, for several thaw nodes on one store. One
// connection; each distinct SQL text is prepared once per connection (PQprepare) and reused, its
// `?`/`?N` placeholders rewritten to `$N` then. Migrations run under an advisory lock, so nodes
// starting together apply each step once. Not thread-safe: one owner per connection.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/db.h"

namespace thaw::store {

// The SQLite DDL of a migration as PostgreSQL runs it: INTEGER PRIMARY KEY AUTOINCREMENT becomes
// an identity column, INTEGER BIGINT (SQLite's integers are 64-bit), BLOB BYTEA, and TEXT
// compares bytes as SQLite does (COLLATE "C"). Quoted text is left alone.
std::string PostgresDdl(std::string_view sqlite);
// `?N` becomes `$N` and `?` `$(the highest before it + 1)`, outside quotes and comments;
// `params` gets the highest parameter number.
std::string PostgresPlaceholders(std::string_view sql, int& params);
// The URL with its password (if any) replaced by "***", for messages and logs.
std::string RedactPostgresUrl(std::string_view url);

class PgDb : public Db {
 public:
  // A statement prepared on this connection: its server-side name and parameter types.
  struct Prepared {
    std::string name;
    std::vector<Oid> types;
  };

  // Connects to `url` (postgres://user[:password]@host[:port]/db[?param=value...]); a malformed
  // URL is kInvalidArgument, a server that cannot be reached kUnavailable.
  static StatusOr<std::unique_ptr<Db>> Connect(const std::string& url);
  ~PgDb() override;

  Dialect dialect() const override { return Dialect::kPostgres; }
  Status Exec(const std::string& sql) override;
  StatusOr<Stmt> Prepare(std::string_view sql) override;
  Status Begin() override { return Exec("BEGIN"); }
  int64_t Changes() const override { return changes_; }
  Status Notify(std::string_view kind, std::string_view id) override;

  // After each command: records the rows `result` changed (INSERT, UPDATE, DELETE only, as
  // SQLite) and whether a transaction is open.
  void NoteResult(const PGresult* result);

 protected:
  Status Migrate(std::span<const Migration> migrations) override;

 private:
  PgDb(PGconn* conn, std::string url) : conn_(conn), url_(std::move(url)) {}
  // After a lost connection, reconnects (statements prepared before are gone with it) unless a
  // transaction was open: that one is lost, and the caller must hear so (Unavailable) until it
  // ends it, rather than have the rest of its statements commit one by one.
  Status EnsureConnected(std::string_view sql);

  PGconn* conn_;
  const std::string url_;                                                      // redacted
  std::unordered_map<std::string, std::shared_ptr<const Prepared>> prepared_;  // by SQL text
  int64_t next_name_ = 1;
  int64_t changes_ = 0;
  bool in_transaction_ = false;  // as of the last command that reached the server
};

}  // namespace thaw::store

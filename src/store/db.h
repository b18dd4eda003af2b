// Db: a thin RAII wrapper over one SQLite connection in WAL mode, plus the schema migrations.
// A Db is not thread-safe: each owner (registry, meter writer) opens its own connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/status.h"

namespace thaw::store {

class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  Stmt& Bind(int index, int64_t value);
  Stmt& Bind(int index, std::string_view value);
  Stmt& BindNull(int index);
  // Returns true while there is a row; false when done. Errors become a Status via Run/Next.
  StatusOr<bool> Next();
  Status Run();  // steps to completion, ignoring rows
  void Reset();

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const;
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// A statement borrowed from a Db's cache (Db::PrepareCached): reset, its bindings cleared, when
// the handle goes out of scope. Move-only; must not outlive its Db.
class CachedStmt {
 public:
  explicit CachedStmt(Stmt* stmt) : stmt_(stmt) {}
  CachedStmt(CachedStmt&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
  CachedStmt(const CachedStmt&) = delete;
  CachedStmt& operator=(const CachedStmt&) = delete;
  CachedStmt& operator=(CachedStmt&&) = delete;
  ~CachedStmt() {
    if (stmt_ != nullptr) stmt_->Reset();
  }
  Stmt* operator->() { return stmt_; }
  Stmt& operator*() { return *stmt_; }

 private:
  Stmt* stmt_;
};

class Db {
 public:
  // Opens (creating) the database, enables WAL and foreign keys, and applies migrations.
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(const std::string& sql);
  StatusOr<Stmt> Prepare(std::string_view sql);
  // The statement for `sql` from this connection's cache, prepared on its first use: for the
  // statements an owner runs all the time, whose parsing would otherwise cost more than running
  // them. At most one handle per text may be live at once; the cache keeps every text it saw,
  // so `sql` should be one of a fixed set.
  StatusOr<CachedStmt> PrepareCached(std::string_view sql);
  // Runs one cached statement without parameters ("BEGIN IMMEDIATE", "SAVEPOINT w", ...).
  Status RunCached(std::string_view sql);
  sqlite3* raw() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  Status Migrate();
  sqlite3* db_;
  struct TextHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  // By SQL text.
  std::unordered_map<std::string, std::unique_ptr<Stmt>, TextHash, std::equal_to<>> cache_;
};

}  // namespace thaw::store

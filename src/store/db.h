// Db: one connection to thaw's durable store, plus the schema migrations. Two backends: SQLite
// (a file in the data dir, WAL mode: the embedded default) and PostgreSQL (a postgres:// URL, for
// several nodes on one store). Components write SQL both accept (`?`/`?N` placeholders, ON
// CONFLICT, RETURNING); what differs (DDL types, write transactions) stays in the backends.
// A Db and its Stmts are not thread-safe: each owner (registry, meter writer) opens its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/status.h"

namespace thaw::store {

enum class Dialect { kSqlite, kPostgres };

// One schema step: SQLite's text, and PostgreSQL's where the mechanical translation of the
// SQLite text (PostgresDdl in store/pg_db.h) is not enough.
struct Migration {
  constexpr Migration(const char* sql_in, const char* postgres_in = nullptr)  // NOLINT: implicit
      : sql(sql_in), postgres(postgres_in) {}
  const char* sql;
  const char* postgres;
};

// What a backend's prepared statement does; Stmt is its move-only handle.
class StmtBackend {
 public:
  virtual ~StmtBackend() = default;
  virtual void BindInt(int index, int64_t value) = 0;
  virtual void BindText(int index, std::string_view value) = 0;
  // BindText without a copy where the backend can: `value` stays valid until Reset().
  virtual void BindTextRef(int index, std::string_view value) { BindText(index, value); }
  virtual void BindNull(int index) = 0;
  virtual StatusOr<bool> Next() = 0;
  virtual void Reset() = 0;
  virtual int64_t Int(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  virtual bool IsNull(int col) const = 0;
};

// A prepared statement. Placeholders are 1-based (`?` numbers itself after the highest before
// it; `?N` names parameter N). Bindings stay until Reset().
class Stmt {
 public:
  explicit Stmt(std::unique_ptr<StmtBackend> impl) : impl_(std::move(impl)) {}

  Stmt& Bind(int index, int64_t value) {
    impl_->BindInt(index, value);
    return *this;
  }
  Stmt& Bind(int index, std::string_view value) {
    impl_->BindText(index, value);
    return *this;
  }
  // Binds `value` without copying it (SQLite): its bytes must stay valid until Reset() (a
  // CachedStmt's handle resets when it goes out of scope).
  Stmt& BindRef(int index, std::string_view value) {
    impl_->BindTextRef(index, value);
    return *this;
  }
  Stmt& BindNull(int index) {
    impl_->BindNull(index);
    return *this;
  }
  // Returns true while there is a row; false when done. A constraint violation (a duplicate
  // key) is kAlreadyExists; a full disk kInsufficientStorage.
  StatusOr<bool> Next() { return impl_->Next(); }
  Status Run();  // steps to completion, ignoring rows
  void Reset() { impl_->Reset(); }

  int64_t Int(int col) const { return impl_->Int(col); }
  std::string Text(int col) const { return impl_->Text(col); }
  bool IsNull(int col) const { return impl_->IsNull(col); }

 private:
  std::unique_ptr<StmtBackend> impl_;
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
  // `location` is a postgres:// (or postgresql://) URL, or else the path of a SQLite file
  // (created). Connects, and applies the migrations the schema lacks.
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& location);
  static bool IsPostgresUrl(std::string_view location);
  virtual ~Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  virtual Dialect dialect() const = 0;
  virtual Status Exec(const std::string& sql) = 0;
  virtual StatusOr<Stmt> Prepare(std::string_view sql) = 0;
  // Starts a write transaction (SQLite: BEGIN IMMEDIATE, so it takes the write lock now rather
  // than fail half-way). End it with Exec("COMMIT") or Exec("ROLLBACK").
  virtual Status Begin() = 0;
  // Rows the last INSERT, UPDATE or DELETE changed.
  virtual int64_t Changes() const = 0;
  // Tells the other nodes on this store that `kind` entry `id` changed (PostgreSQL: NOTIFY on
  // kChangesChannel with "kind:id", sent when the current transaction commits; store/
  // change_listener.h hears it). SQLite has one node: nothing to tell.
  virtual Status Notify(std::string_view kind, std::string_view id) {
    (void)kind;
    (void)id;
    return Status::Ok();
  }
  static constexpr const char* kChangesChannel = "thaw_changes";

  // The statement for `sql` from this connection's cache, prepared on its first use: for the
  // statements an owner runs all the time, whose parsing would otherwise cost more than running
  // them. At most one handle per text may be live at once; the cache keeps every text it saw,
  // so `sql` should be one of a fixed set.
  StatusOr<CachedStmt> PrepareCached(std::string_view sql);
  // Runs one cached statement without parameters ("SAVEPOINT w", "COMMIT", ...).
  Status RunCached(std::string_view sql);

 protected:
  Db() = default;
  // Applies migrations[current..] and records each in schema_version (one row per version).
  virtual Status Migrate(std::span<const Migration> migrations) = 0;
  // Finalizes the cached statements: a backend's destructor calls it before it closes the
  // connection they belong to.
  void DropCache() { cache_.clear(); }

 private:
  struct TextHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  // By SQL text.
  std::unordered_map<std::string, std::unique_ptr<Stmt>, TextHash, std::equal_to<>> cache_;
};

}  // namespace thaw::store

#include "store/sqlite_db.h"

namespace thaw::store {
namespace {

class SqliteStmt : public StmtBackend {
 public:
  SqliteStmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;
  ~SqliteStmt() override { sqlite3_finalize(stmt_); }

  void BindInt(int index, int64_t value) override { sqlite3_bind_int64(stmt_, index, value); }
  void BindText(int index, std::string_view value) override {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  void BindTextRef(int index, std::string_view value) override {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  }
  void BindNull(int index) override { sqlite3_bind_null(stmt_, index); }

  StatusOr<bool> Next() override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if (rc == SQLITE_CONSTRAINT) {
      return Status(StatusCode::kAlreadyExists, std::string("sqlite: ") + sqlite3_errmsg(db_));
    }
    if (rc == SQLITE_FULL) {
      return InsufficientStorage(std::string("sqlite step failed: ") + sqlite3_errmsg(db_));
    }
    return Internal(std::string("sqlite step failed: ") + sqlite3_errmsg(db_));
  }

  void Reset() override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int col) const override { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const override {
    const unsigned char* text = sqlite3_column_text(stmt_, col);
    if (text == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  bool IsNull(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

}  // namespace

StatusOr<std::unique_ptr<Db>> SqliteDb::OpenFile(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close(raw);
    return Internal("failed to open database " + path + ": " + msg);
  }
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
  sqlite3_busy_timeout(raw, 5000);
  // WAL + synchronous=NORMAL: a committed transaction survives a process crash (kill -9);
  // only a power loss can drop the last few.
  THAW_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
  return std::unique_ptr<Db>(std::move(db));
}

SqliteDb::~SqliteDb() {
  DropCache();  // finalized before the connection closes
  sqlite3_close(db_);
}

Status SqliteDb::Exec(const std::string& sql) {
  char* err = nullptr;
  if (int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    if (rc == SQLITE_FULL) return InsufficientStorage("sqlite: " + msg);
    return Internal("sqlite: " + msg);
  }
  return Status::Ok();
}

StatusOr<Stmt> SqliteDb::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
      SQLITE_OK) {
    return Internal(std::string("sqlite prepare failed: ") + sqlite3_errmsg(db_));
  }
  return Stmt(std::make_unique<SqliteStmt>(db_, stmt));
}

Status SqliteDb::Migrate(std::span<const Migration> migrations) {
  THAW_RETURN_IF_ERROR(Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)"));
  const int64_t target = static_cast<int64_t>(migrations.size());
  // One step per write transaction, the version read inside it: a process opening the same
  // file at the same moment waits for the lock, then finds the step done.
  for (;;) {
    THAW_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    int64_t current = 0;
    Status st = Status::Ok();
    {
      auto stmt = Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
      auto row = stmt.ok() ? stmt->Next() : StatusOr<bool>(stmt.status());
      if (!row.ok()) st = row.status();
      if (st.ok()) current = stmt->Int(0);
    }
    if (st.ok() && current < target) {
      st = Exec(migrations[static_cast<size_t>(current)].sql);
      if (st.ok()) {
        st = Exec("INSERT INTO schema_version VALUES (" + std::to_string(current + 1) + ")");
      }
    }
    if (!st.ok()) {
      (void)Exec("ROLLBACK");
      return st;
    }
    THAW_RETURN_IF_ERROR(Exec("COMMIT"));
    if (current >= target) return Status::Ok();
  }
}

}  // namespace thaw::store

// SqliteDb: the SQLite backend of store::Db, one connection to a file in WAL mode. The embedded
// default (thaw.db in the data dir); its behaviour is the one thaw always had.
// Not thread-safe: one owner per connection.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>

#include "store/db.h"

namespace thaw::store {

class SqliteDb : public Db {
 public:
  // Opens (creating) the file with WAL and synchronous=NORMAL; no migrations yet (Db::Open).
  static StatusOr<std::unique_ptr<Db>> OpenFile(const std::string& path);
  ~SqliteDb() override;

  Dialect dialect() const override { return Dialect::kSqlite; }
  Status Exec(const std::string& sql) override;
  StatusOr<Stmt> Prepare(std::string_view sql) override;
  Status Begin() override { return Exec("BEGIN IMMEDIATE"); }
  int64_t Changes() const override { return sqlite3_changes(db_); }
  sqlite3* raw() { return db_; }  // for what only SQLite has (store/wal_checkpointer.h)

 protected:
  Status Migrate(std::span<const Migration> migrations) override;

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace thaw::store

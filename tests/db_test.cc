// store::Db's statement cache (PrepareCached): one prepared statement per text, handed back
// reset with its bindings cleared, so a handle dropped mid-iteration leaves nothing behind.
#include "store/db.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "common/files.h"
#include "store/sqlite_db.h"

namespace thaw::store {
namespace {

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-db-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto db = Db::Open(dir_ + "/thaw.db");
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(*db);
    ASSERT_TRUE(db_->Exec("CREATE TABLE t (k INTEGER, v TEXT)").ok());
  }
  void TearDown() override {
    db_.reset();
    (void)RemoveTree(dir_);
  }
  int Statements() {
    int n = 0;
    for (sqlite3_stmt* s = sqlite3_next_stmt(static_cast<SqliteDb&>(*db_).raw(), nullptr);
         s != nullptr; s = sqlite3_next_stmt(static_cast<SqliteDb&>(*db_).raw(), s)) {
      ++n;
    }
    return n;
  }
  std::string dir_;
  std::unique_ptr<Db> db_;
};

TEST_F(DbTest, CachedStatementIsPreparedOnceAndReused) {
  const int before = Statements();
  for (int64_t i = 0; i < 100; ++i) {
    auto s = db_->PrepareCached("INSERT INTO t (k, v) VALUES (?, ?)");
    ASSERT_TRUE(s.ok()) << s.status().message();
    (*s)->Bind(1, i).Bind(2, "x");
    ASSERT_TRUE((*s)->Run().ok());
  }
  EXPECT_EQ(Statements(), before + 1);
  auto count = db_->Prepare("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->Next());
  EXPECT_EQ(count->Int(0), 100);
}

TEST_F(DbTest, CachedStatementComesBackResetWithBindingsCleared) {
  for (int64_t i = 1; i <= 3; ++i) {
    auto s = db_->PrepareCached("INSERT INTO t (k, v) VALUES (?, ?)");
    ASSERT_TRUE(s.ok());
    (*s)->Bind(1, i).Bind(2, "v" + std::to_string(i));
    ASSERT_TRUE((*s)->Run().ok());
  }
  const std::string_view select = "SELECT k FROM t WHERE k >= COALESCE(?, 0) ORDER BY k";
  {
    auto s = db_->PrepareCached(select);
    ASSERT_TRUE(s.ok());
    (*s)->Bind(1, int64_t{2});
    ASSERT_TRUE(*(*s)->Next());
    EXPECT_EQ((*s)->Int(0), 2);
  }  // dropped mid-iteration, with a binding
  {
    auto s = db_->PrepareCached(select);
    ASSERT_TRUE(s.ok());
    // Not bound: NULL, so every row, from the first.
    ASSERT_TRUE(*(*s)->Next());
    EXPECT_EQ((*s)->Int(0), 1);
  }
}

TEST_F(DbTest, BadCachedStatementIsAnError) {
  auto s = db_->PrepareCached("SELECT nope FROM nowhere");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(db_->RunCached("NOT SQL").ok());
}

}  // namespace
}  // namespace thaw::store

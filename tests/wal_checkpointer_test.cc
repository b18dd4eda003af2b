// store::WalCheckpointer on a real SQLite file: checkpoints happen on its own thread while the
// writer commits, and under sustained writes the WAL stays within its cap.
#include "store/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "common/files.h"
#include "store/db.h"

namespace thaw::store {
namespace {

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

TEST(WalCheckpointerTest, WalStaysWithinItsCapUnderSustainedWrites) {
  char tmpl[] = "/tmp/thaw-wal-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/thaw.db";
  {
    auto db = Db::Open(path);
    ASSERT_TRUE(db.ok()) << db.status().message();
    ASSERT_TRUE((*db)->Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").ok());
    const CheckpointOptions options{.checkpoint_pages = 20, .cap_pages = 100};
    auto checkpointer = WalCheckpointer::Start(**db, path, options);
    ASSERT_TRUE(checkpointer.ok()) << checkpointer.status().message();
    const std::string value(3000, 'x');  // a page per row, and some
    // A WAL frame is a page (4096 bytes) plus a 24-byte header, after a 32-byte file header.
    const int64_t cap_bytes = 32 + (options.cap_pages + 8) * (4096 + 24);
    int64_t largest = 0;
    for (int64_t i = 0; i < 2000; ++i) {
      (*checkpointer)->WaitBelowCap();
      ASSERT_TRUE((*db)->RunCached("BEGIN IMMEDIATE").ok());
      auto s = (*db)->PrepareCached("INSERT INTO t (k, v) VALUES (?, ?)");
      ASSERT_TRUE(s.ok());
      (*s)->Bind(1, i).Bind(2, value);
      ASSERT_TRUE((*s)->Run().ok());
      ASSERT_TRUE((*db)->RunCached("COMMIT").ok());
      largest = std::max(largest, FileSize(path + "-wal"));
    }
    EXPECT_LE(largest, cap_bytes);
    EXPECT_GT((*checkpointer)->checkpoints(), 0);
    // What was checkpointed is in the database file itself.
    EXPECT_GT(FileSize(path), 100 * 4096);
    checkpointer->reset();
    auto count = (*db)->Prepare("SELECT COUNT(*) FROM t");
    ASSERT_TRUE(count.ok());
    ASSERT_TRUE(*count->Next());
    EXPECT_EQ(count->Int(0), 2000);
  }
  (void)RemoveTree(dir);
}

}  // namespace
}  // namespace thaw::store

// WalCheckpointer: keeps WAL checkpoints out of one writer connection's commits. SQLite's
// autocheckpoint copies the WAL back into the database (and fsyncs it) inside the commit that
// passes 1000 pages: ~20 ms that every write waiting on that commit waits too. This installs a
// WAL hook on the writer connection instead (which turns its autocheckpoint off) and checkpoints
// from a thread and connection of its own while the writer goes on committing.
//
// Owned by the writer's owner, destroyed before the writer's Db and after the last commit on it.
// The hook runs on whichever thread commits on the writer connection; WaitBelowCap is for the
// writer's thread; the rest is thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

struct sqlite3;

namespace thaw::store {

class Db;

struct CheckpointOptions {
  int64_t checkpoint_pages = 1000;  // SQLite's autocheckpoint threshold
  // A checkpoint running beside the writer rarely reaches the WAL's end, and only a WAL
  // checkpointed to its end starts over: past this size (32 MB) the writer waits for one that
  // does (WaitBelowCap), so the file stays bounded under sustained load.
  int64_t cap_pages = 8'000;
};

class WalCheckpointer {
 public:
  // `writer` must outlive this; `path` is its database file (opened again for the checkpoints).
  [[nodiscard]] static StatusOr<std::unique_ptr<WalCheckpointer>> Start(
      Db& writer, const std::string& path, const CheckpointOptions& options = {});
  ~WalCheckpointer();  // stops the thread and removes the hook
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Returns at once unless the WAL is past cap_pages; then waits until a checkpoint reached its
  // end. The writer calls it before each transaction.
  void WaitBelowCap();
  int64_t checkpoints() const;  // checkpoints run so far (tests)

 private:
  WalCheckpointer(Db& writer, std::unique_ptr<Db> own, const CheckpointOptions& options);
  static int OnCommit(void* self, sqlite3* db, const char* name, int pages);
  bool Due() const;  // mu_ held: a checkpoint is due
  void Loop();

  Db& writer_;
  std::unique_ptr<Db> own_;  // used by thread_ only
  const CheckpointOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // All guarded by mu_. Sizes in pages (frames) of the current WAL.
  int64_t wal_pages_ = 0;   // at the last commit (0: it starts over at the next one)
  int64_t backfilled_ = 0;  // copied into the database by the last checkpoint
  int64_t commits_ = 0;     // commits on the writer connection
  int64_t checkpoints_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the rest is built
};

}  // namespace thaw::store

#include "store/wal_checkpointer.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>

#include "store/db.h"
#include "store/sqlite_db.h"

namespace thaw::store {

StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(
    Db& writer, const std::string& path, const CheckpointOptions& options) {
  if (writer.dialect() != Dialect::kSqlite) return Internal("WAL checkpoints are SQLite's");
  auto own = Db::Open(path);
  if (!own.ok()) return own.status();
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(writer, std::move(*own), options));
  // Replaces the writer connection's autocheckpoint (itself a WAL hook).
  sqlite3_wal_hook(static_cast<SqliteDb&>(writer).raw(), &WalCheckpointer::OnCommit, c.get());
  return c;
}

WalCheckpointer::WalCheckpointer(Db& writer, std::unique_ptr<Db> own,
                                 const CheckpointOptions& options)
    : writer_(writer), own_(std::move(own)), options_(options), thread_([this] { Loop(); }) {}

WalCheckpointer::~WalCheckpointer() {
  sqlite3_wal_hook(static_cast<SqliteDb&>(writer_).raw(), nullptr, nullptr);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int WalCheckpointer::OnCommit(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* c = static_cast<WalCheckpointer*>(self);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(c->mu_);
    c->wal_pages_ = pages;
    if (pages < c->backfilled_) c->backfilled_ = 0;  // it started over
    ++c->commits_;
    wake = c->Due();
  }
  if (wake) c->cv_.notify_all();
  return SQLITE_OK;
}

void WalCheckpointer::WaitBelowCap() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || wal_pages_ < options_.cap_pages; });
}

int64_t WalCheckpointer::checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpoints_;
}

bool WalCheckpointer::Due() const {
  return wal_pages_ >= options_.cap_pages || wal_pages_ - backfilled_ >= options_.checkpoint_pages;
}

void WalCheckpointer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || Due(); });
    if (stopping_) return;
    const int64_t commits = commits_;
    lock.unlock();
    int log = -1, done = -1;
    // PASSIVE: copies what no reader still needs, never blocking the writer.
    const int rc = sqlite3_wal_checkpoint_v2(static_cast<SqliteDb&>(*own_).raw(), nullptr,
                                             SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    lock.lock();
    ++checkpoints_;
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      spdlog::warn("failed to checkpoint the WAL: {}",
                   sqlite3_errmsg(static_cast<SqliteDb&>(*own_).raw()));
    }
    if (rc == SQLITE_OK && done >= log && commits_ == commits) {
      // At its end, and nothing committed since: the next transaction starts the WAL over.
      wal_pages_ = backfilled_ = 0;
      cv_.notify_all();
    } else if (rc == SQLITE_OK) {
      backfilled_ = std::max<int64_t>(backfilled_, done);
    }
    if (wal_pages_ >= options_.cap_pages && !stopping_) {
      // A reader on another connection still needs older frames (or another connection is
      // checkpointing): nothing to wait on but time.
      cv_.wait_for(lock, std::chrono::milliseconds(5), [&] { return stopping_; });
    }
  }
}

}  // namespace thaw::store

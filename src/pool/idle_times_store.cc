#include "pool/idle_times_store.h"

#include "store/db.h"

namespace thaw::pool {

IdleTimesStore::IdleTimesStore(std::unique_ptr<store::Db> db) : db_(std::move(db)) {}

IdleTimesStore::~IdleTimesStore() = default;

StatusOr<std::unique_ptr<IdleTimesStore>> IdleTimesStore::Open(const std::string& db_path) {
  auto db = store::Db::Open(db_path);
  if (!db.ok()) return db.status();
  return std::unique_ptr<IdleTimesStore>(new IdleTimesStore(std::move(*db)));
}

StatusOr<std::optional<IdleHistogram>> IdleTimesStore::Load(const std::string& function,
                                                            bool latest) {
  std::lock_guard<std::mutex> lock(mu_);
  auto stmt = db_->Prepare("SELECT bins FROM idle_times WHERE function = ? AND latest = ?");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, int64_t{latest ? 1 : 0});
  auto row = stmt->Next();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<IdleHistogram>();
  return IdleHistogram::Decode(stmt->Text(0));
}

Status IdleTimesStore::Save(const std::string& function, bool latest, const IdleHistogram& idle,
                            int64_t now_wall_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto stmt = db_->Prepare(
      "INSERT INTO idle_times (function, latest, bins, updated_us) VALUES (?, ?, ?, ?) "
      "ON CONFLICT (function, latest) DO UPDATE SET bins = excluded.bins, "
      "updated_us = excluded.updated_us");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function)
      .Bind(2, int64_t{latest ? 1 : 0})
      .Bind(3, idle.Encode())
      .Bind(4, now_wall_us);
  return stmt->Run();
}

}  // namespace thaw::pool

// IdleTimesStore: each function's idle-time histogram (keep_alive.h) in the data dir's SQLite
// database, so that the adaptive keep-alive does not start cold after a restart. Kept per
// function and per pool kind (calls through $LATEST, calls by version number), not per version:
// a new version inherits its function's traffic. Pools save theirs every few seconds while it
// changes and at shutdown; a crash loses the last few seconds' idle times. Owned by the server;
// thread-safe (one connection behind a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"
#include "pool/keep_alive.h"

namespace thaw::store {
class Db;
}

namespace thaw::pool {

class IdleTimesStore {
 public:
  static StatusOr<std::unique_ptr<IdleTimesStore>> Open(const std::string& db_path);
  ~IdleTimesStore();
  IdleTimesStore(const IdleTimesStore&) = delete;
  IdleTimesStore& operator=(const IdleTimesStore&) = delete;

  // nullopt when none was saved (or the saved text does not parse: the pool starts afresh).
  [[nodiscard]] StatusOr<std::optional<IdleHistogram>> Load(const std::string& function,
                                                            bool latest);
  [[nodiscard]] Status Save(const std::string& function, bool latest, const IdleHistogram& idle,
                            int64_t now_wall_us);

 private:
  explicit IdleTimesStore(std::unique_ptr<store::Db> db);

  std::mutex mu_;
  std::unique_ptr<store::Db> db_;  // guarded by mu_
};

}  // namespace thaw::pool

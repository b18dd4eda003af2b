// Meter: one record per invocation, queued on the hot path and committed to SQLite in batches
// by a background thread. The request id is the primary key, so a replayed batch never bills
// twice. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "meter/cost.h"

namespace thaw::store {
class Db;
}

namespace thaw::meter {

struct Record {
  std::string request_id;
  std::string function;
  std::string version;
  int64_t start_us = 0;  // wall clock
  int64_t end_us = 0;
  int64_t duration_us = 0;
  int64_t billed_ms = 0;
  int64_t memory_mb = 0;
  int64_t max_memory_used_mb = 0;
  int64_t cpu_us = 0;  // CPU time the instance used while running this invocation
  bool cold_start = false;
  int64_t init_us = 0;
  std::string status;  // success | error | timeout | crash | throttled
  std::string error_type;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
};

// Billed duration: rounded up to the next whole millisecond, at least 1 ms.
int64_t BilledMillis(int64_t duration_us);

struct UsageRow {
  std::string function;
  int64_t invocations = 0;
  int64_t errors = 0;  // error, timeout, crash
  int64_t throttles = 0;
  int64_t cold_starts = 0;
  int64_t billed_ms = 0;
  double gb_seconds = 0;   // billed ms x configured memory
  double cpu_seconds = 0;  // CPU actually used
  int64_t avg_duration_us = 0;
};

class Meter {
 public:
  static StatusOr<std::unique_ptr<Meter>> Open(const std::string& db_path);
  ~Meter();  // flushes

  void Add(Record record);
  // Returns once every record added before the call is committed.
  Status Flush();
  StatusOr<std::vector<UsageRow>> Usage(const std::string& function, int64_t from_us,
                                        int64_t to_us);
  // The records started in [from_us, to_us) (all functions when `function` is empty), for
  // exact aggregation and pricing in C++ (see meter/cost.h).
  StatusOr<std::vector<Sample>> Samples(const std::string& function, int64_t from_us,
                                        int64_t to_us);
  int64_t pending() const;

 private:
  explicit Meter(std::unique_ptr<store::Db> db);
  void Run();
  Status Write(const std::vector<Record>& batch);

  std::unique_ptr<store::Db> db_;  // used only by the writer thread and under db_mu_
  std::mutex db_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable flushed_cv_;
  std::vector<Record> queue_;  // guarded by mu_
  uint64_t added_ = 0;         // records handed in; guarded by mu_
  uint64_t committed_ = 0;     // records committed; guarded by mu_
  Status last_error_;          // guarded by mu_
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace thaw::meter

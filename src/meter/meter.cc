#include "meter/meter.h"

#include <chrono>

#include "store/db.h"

namespace thaw::meter {
namespace {
constexpr auto kBatchInterval = std::chrono::milliseconds(100);
constexpr size_t kBatchSize = 512;
}  // namespace

int64_t BilledMillis(int64_t duration_us) {
  if (duration_us <= 0) return 1;
  return (duration_us + 999) / 1000;
}

Meter::Meter(std::unique_ptr<store::Db> db) : db_(std::move(db)) {
  writer_ = std::thread([this] { Run(); });
}

StatusOr<std::unique_ptr<Meter>> Meter::Open(const std::string& db_path) {
  auto db = store::Db::Open(db_path);
  if (!db.ok()) return db.status();
  return std::unique_ptr<Meter>(new Meter(std::move(*db)));
}

Meter::~Meter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void Meter::Add(Record record) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(record));
    ++added_;
    wake = queue_.size() >= kBatchSize;
  }
  if (wake) cv_.notify_one();
}

int64_t Meter::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(added_ - committed_);
}

Status Meter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t target = added_;
  cv_.notify_one();
  flushed_cv_.wait(lock, [&] { return committed_ >= target || !last_error_.ok(); });
  return committed_ >= target ? Status::Ok() : last_error_;
}

void Meter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, kBatchInterval, [&] {
      return stop_ || queue_.size() >= kBatchSize || (committed_ < added_ && !queue_.empty());
    });
    if (queue_.empty()) {
      if (stop_) return;
      continue;
    }
    std::vector<Record> batch;
    batch.swap(queue_);
    lock.unlock();
    Status st = Write(batch);
    lock.lock();
    if (st.ok()) {
      committed_ += batch.size();
      last_error_ = Status::Ok();
    } else {
      // Keep the records: they are retried with the next batch (the key makes that safe).
      last_error_ = st;
      queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                    std::make_move_iterator(batch.end()));
      if (stop_) return;
    }
    flushed_cv_.notify_all();
  }
}

Status Meter::Write(const std::vector<Record>& batch) {
  std::lock_guard<std::mutex> lock(db_mu_);
  THAW_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  auto stmt = db_->Prepare(
      "INSERT OR IGNORE INTO invocations (request_id, function, version, start_us, end_us, "
      "duration_us, billed_ms, memory_mb, max_memory_used_mb, cold_start, init_us, status, "
      "error_type, bytes_in, bytes_out, cpu_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!stmt.ok()) {
    (void)db_->Exec("ROLLBACK");
    return stmt.status();
  }
  for (const Record& r : batch) {
    stmt->Reset();
    stmt->Bind(1, r.request_id)
        .Bind(2, r.function)
        .Bind(3, r.version)
        .Bind(4, r.start_us)
        .Bind(5, r.end_us)
        .Bind(6, r.duration_us)
        .Bind(7, r.billed_ms)
        .Bind(8, r.memory_mb)
        .Bind(9, r.max_memory_used_mb)
        .Bind(10, int64_t{r.cold_start})
        .Bind(11, r.init_us)
        .Bind(12, r.status)
        .Bind(13, r.error_type)
        .Bind(14, r.bytes_in)
        .Bind(15, r.bytes_out)
        .Bind(16, r.cpu_us);
    if (Status st = stmt->Run(); !st.ok()) {
      (void)db_->Exec("ROLLBACK");
      return st;
    }
  }
  return db_->Exec("COMMIT");
}

StatusOr<std::vector<UsageRow>> Meter::Usage(const std::string& function, int64_t from_us,
                                             int64_t to_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT function, COUNT(*), "
      "SUM(status IN ('error','timeout','crash')), SUM(status = 'throttled'), SUM(cold_start), "
      "SUM(billed_ms), SUM(billed_ms * memory_mb), CAST(AVG(duration_us) AS INTEGER), "
      "SUM(cpu_us) "
      "FROM invocations WHERE (?1 = '' OR function = ?1) AND start_us >= ?2 AND start_us < ?3 "
      "GROUP BY function ORDER BY function");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us);
  std::vector<UsageRow> rows;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    UsageRow u;
    u.function = stmt->Text(0);
    u.invocations = stmt->Int(1);
    u.errors = stmt->Int(2);
    u.throttles = stmt->Int(3);
    u.cold_starts = stmt->Int(4);
    u.billed_ms = stmt->Int(5);
    u.gb_seconds = static_cast<double>(stmt->Int(6)) / 1024.0 / 1000.0;
    u.avg_duration_us = stmt->Int(7);
    u.cpu_seconds = static_cast<double>(stmt->Int(8)) / 1e6;
    rows.push_back(std::move(u));
  }
  return rows;
}

StatusOr<std::vector<Sample>> Meter::Samples(const std::string& function, int64_t from_us,
                                             int64_t to_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT function, start_us, duration_us, billed_ms, memory_mb, max_memory_used_mb, cpu_us, "
      "cold_start, status FROM invocations "
      "WHERE (?1 = '' OR function = ?1) AND start_us >= ?2 AND start_us < ?3");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us);
  std::vector<Sample> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Sample s;
    s.function = stmt->Text(0);
    s.start_us = stmt->Int(1);
    s.duration_us = stmt->Int(2);
    s.billed_ms = stmt->Int(3);
    s.memory_mb = stmt->Int(4);
    s.max_memory_used_mb = stmt->Int(5);
    s.cpu_us = stmt->Int(6);
    s.cold_start = stmt->Int(7) != 0;
    s.status = stmt->Text(8);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace thaw::meter

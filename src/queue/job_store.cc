#include "queue/job_store.h"

#include <algorithm>

#include "common/clock.h"
#include "common/ids.h"
#include "store/db.h"

namespace thaw::queue {
namespace {

constexpr std::string_view kStatusNames[] = {"queued", "running", "succeeded", "failed",
                                             "canceled"};
constexpr std::string_view kEventNames[] = {"start", "output", "logs", "completed"};

constexpr std::string_view kColumns =
    "id, function, qualifier, COALESCE(input, ''), status, COALESCE(output, ''), output_dropped, "
    "error_type, error_message, webhook, webhook_events, start_kind, created_us, started_us, "
    "completed_us, duration_us, billed_ms";

Job JobFromRow(const store::Stmt& s) {
  Job j;
  j.id = s.Text(0);
  j.function = s.Text(1);
  j.qualifier = s.Text(2);
  j.input = s.Text(3);
  j.status = ParseJobStatus(s.Text(4)).value_or(JobStatus::kFailed);
  j.output = s.Text(5);
  j.output_dropped = s.Int(6) != 0;
  j.error_type = s.Text(7);
  j.error_message = s.Text(8);
  j.webhook = s.Text(9);
  j.webhook_events = static_cast<unsigned>(s.Int(10));
  j.start_kind = s.Text(11);
  j.created_us = s.Int(12);
  j.started_us = s.Int(13);
  j.completed_us = s.Int(14);
  j.duration_us = s.Int(15);
  j.billed_ms = s.Int(16);
  return j;
}

}  // namespace

std::string_view JobStatusName(JobStatus status) { return kStatusNames[static_cast<int>(status)]; }

std::optional<JobStatus> ParseJobStatus(std::string_view name) {
  for (int i = 0; i < 5; ++i) {
    if (kStatusNames[i] == name) return static_cast<JobStatus>(i);
  }
  return std::nullopt;
}

StatusOr<unsigned> ParseWebhookEvents(const std::vector<std::string>& names) {
  unsigned mask = 0;
  for (const std::string& name : names) {
    bool known = false;
    for (int i = 0; i < 4; ++i) {
      if (kEventNames[i] == name) {
        mask |= 1u << i;
        known = true;
      }
    }
    if (!known) {
      return InvalidArgument("webhook_events_filter: unknown event '" + name +
                             "' (start, output, logs, completed)");
    }
  }
  return mask;
}

StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& db_path,
                                                   const std::string& node) {
  auto db = store::Db::Open(db_path);
  if (!db.ok()) return db.status();
  return std::unique_ptr<JobStore>(new JobStore(std::move(*db), node));
}

JobStore::JobStore(std::unique_ptr<store::Db> db, std::string node)
    : node_(std::move(node)), db_(std::move(db)) {}
JobStore::~JobStore() = default;

Status JobStore::Add(Job& job) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "INSERT INTO jobs (id, function, qualifier, input, status, webhook, webhook_events, "
      "created_us, owner) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)");
  if (!s.ok()) return s.status();
  if (job.created_us == 0) job.created_us = WallNowMicros();
  s->Bind(1, job.id)
      .Bind(2, job.function)
      .Bind(3, job.qualifier)
      .Bind(4, job.input)
      .Bind(5, job.webhook)
      .Bind(6, int64_t{job.webhook_events})
      .Bind(7, job.created_us)
      .Bind(8, node_);
  THAW_RETURN_IF_ERROR(s->Run());
  job.status = JobStatus::kQueued;
  return Status::Ok();
}

Status JobStore::MarkRunning(const std::string& id, int64_t started_us,
                             const std::string& start_kind) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "UPDATE jobs SET status = 'running', started_us = ?, start_kind = ? "
      "WHERE id = ? AND status IN ('queued', 'running')");
  if (!s.ok()) return s.status();
  s->Bind(1, started_us).Bind(2, start_kind).Bind(3, id);
  THAW_RETURN_IF_ERROR(s->Run());
  if (db_->Changes() == 0) return FailedPrecondition("job " + id + " is not queued");
  return Status::Ok();
}

Status JobStore::SetOutput(const std::string& id, const std::string& output) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("UPDATE jobs SET output = ? WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, output).Bind(2, id);
  return s->Run();
}

Status JobStore::Finish(const Job& job) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "UPDATE jobs SET status = CASE WHEN status = 'canceled' THEN 'canceled' ELSE ? END, "
      "output = ?, error_type = ?, error_message = ?, start_kind = ?, started_us = ?, "
      "completed_us = CASE WHEN completed_us > 0 THEN completed_us ELSE ? END, duration_us = ?, "
      "billed_ms = ? WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, JobStatusName(job.status))
      .Bind(2, job.output)
      .Bind(3, job.error_type)
      .Bind(4, job.error_message)
      .Bind(5, job.start_kind)
      .Bind(6, job.started_us)
      .Bind(7, job.completed_us)
      .Bind(8, job.duration_us)
      .Bind(9, job.billed_ms)
      .Bind(10, job.id);
  return s->Run();
}

StatusOr<JobStatus> JobStore::Cancel(const std::string& id, int64_t now_us) {
  std::lock_guard<std::mutex> lock(mu_);
  THAW_RETURN_IF_ERROR(db_->Begin());
  auto s = db_->Prepare("SELECT status FROM jobs WHERE id = ?");
  if (!s.ok()) {
    (void)db_->Exec("ROLLBACK");
    return s.status();
  }
  s->Bind(1, id);
  auto row = s->Next();
  if (!row.ok() || !*row) {
    (void)db_->Exec("ROLLBACK");
    if (!row.ok()) return row.status();
    return NotFound("job " + id + " not found");
  }
  const JobStatus was = ParseJobStatus(s->Text(0)).value_or(JobStatus::kFailed);
  if (!IsTerminal(was)) {
    auto u = db_->Prepare(
        "UPDATE jobs SET status = 'canceled', completed_us = ?, error_type = 'Canceled', "
        "error_message = 'the job was canceled' WHERE id = ?");
    Status st = u.ok() ? u->Bind(1, now_us).Bind(2, id).Run() : u.status();
    if (!st.ok()) {
      (void)db_->Exec("ROLLBACK");
      return st;
    }
  }
  THAW_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  return was;
}

StatusOr<Job> JobStore::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT " + std::string(kColumns) + " FROM jobs WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, id);
  auto row = s->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("job " + id + " not found");
  return JobFromRow(*s);
}

StatusOr<JobPage> JobStore::List(const std::string& function, int64_t limit,
                                 const std::string& after) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT " + std::string(kColumns) +
                        " FROM jobs WHERE function = ? AND (? = '' OR id < ?) "
                        "ORDER BY id DESC LIMIT ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, after).Bind(3, after).Bind(4, limit + 1);
  JobPage page;
  for (;;) {
    auto row = s->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    page.jobs.push_back(JobFromRow(*s));
  }
  if (static_cast<int64_t>(page.jobs.size()) > limit) {
    page.jobs.pop_back();
    page.next = page.jobs.back().id;
  }
  return page;
}

StatusOr<std::vector<Job>> JobStore::Recover() { return Recover(WallNowMicros()); }

StatusOr<std::vector<Job>> JobStore::Recover(int64_t now_us) {
  return Claim(now_us, INT64_MAX, /*own=*/true);
}

StatusOr<std::vector<Job>> JobStore::TakeOver(int64_t now_us, int64_t max) {
  return Claim(now_us, max, /*own=*/false);
}

StatusOr<std::vector<Job>> JobStore::Claim(int64_t now_us, int64_t max, bool own) {
  std::lock_guard<std::mutex> lock(mu_);
  // Whose lease has not passed: their jobs are theirs (alone on SQLite, only this node).
  const std::string live = "(SELECT node FROM queue_leases WHERE lease_until_us >= ?2)";
  const std::string unfinished = "status IN ('queued', 'running')";
  std::string sql;
  if (own) {
    // At start, all at once: this node's own, and any owner without a live lease (also rows
    // from before owners, owned by '').
    sql = "UPDATE jobs SET owner = ?1 WHERE " + unfinished + " AND (owner = ?1 OR owner NOT IN " +
          live + ")";
  } else {
    // The outer conditions are checked again on each row as it is once locked (PostgreSQL's
    // READ COMMITTED): two takers at once each get distinct jobs; the pick skips rows another
    // taker holds instead of waiting.
    const std::string dead = unfinished + " AND owner != ?1 AND owner NOT IN " + live;
    const std::string pick =
        "SELECT id FROM jobs WHERE " + dead + " ORDER BY created_us, id LIMIT ?3";
    sql = db_->dialect() == store::Dialect::kPostgres
              ? "WITH picked AS MATERIALIZED (" + pick +
                    " FOR UPDATE SKIP LOCKED) UPDATE jobs SET owner = ?1 WHERE " + dead +
                    " AND id IN (SELECT id FROM picked)"
              : "UPDATE jobs SET owner = ?1 WHERE " + dead + " AND id IN (" + pick + ")";
  }
  THAW_RETURN_IF_ERROR(db_->Begin());
  std::vector<Job> out;
  Status st = [&]() -> Status {
    auto s = db_->Prepare(sql + " RETURNING " + std::string(kColumns));
    if (!s.ok()) return s.status();
    s->Bind(1, node_).Bind(2, now_us);
    if (!own) s->Bind(3, max);
    for (;;) {
      auto row = s->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      out.push_back(JobFromRow(*s));
    }
    // None of these runs here yet: what the table says runs was cut short.
    for (const Job& j : out) {
      if (j.status != JobStatus::kRunning) continue;
      auto u = db_->PrepareCached(
          "UPDATE jobs SET status = 'queued' WHERE id = ? AND status = 'running'");
      if (!u.ok()) return u.status();
      (*u)->Bind(1, j.id);
      THAW_RETURN_IF_ERROR((*u)->Run());
    }
    return Status::Ok();
  }();
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) {
    (void)db_->Exec("ROLLBACK");
    return st;
  }
  std::sort(out.begin(), out.end(), [](const Job& a, const Job& b) {
    return a.created_us != b.created_us ? a.created_us < b.created_us : a.id < b.id;
  });
  return out;
}

StatusOr<int64_t> JobStore::DropOutputs(int64_t before_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "UPDATE jobs SET output = NULL, input = NULL, output_dropped = 1 "
      "WHERE completed_us > 0 AND completed_us < ? AND output_dropped = 0");
  if (!s.ok()) return s.status();
  s->Bind(1, before_us);
  THAW_RETURN_IF_ERROR(s->Run());
  return db_->Changes();
}

StatusOr<std::pair<int64_t, int64_t>> JobStore::ScheduleState(const std::string& function,
                                                              const std::string& expression) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT anchor_us, last_fire_us FROM schedule_runs WHERE function = ? AND expression = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, expression);
  auto row = s->Next();
  if (!row.ok()) return row.status();
  if (!*row) return std::pair<int64_t, int64_t>{0, 0};
  return std::pair<int64_t, int64_t>{s->Int(0), s->Int(1)};
}

Status JobStore::SetScheduleState(const std::string& function, const std::string& expression,
                                  int64_t anchor_us, int64_t last_fire_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "INSERT INTO schedule_runs (function, expression, anchor_us, last_fire_us) "
      "VALUES (?, ?, ?, ?) ON CONFLICT (function, expression) DO UPDATE SET anchor_us = "
      "excluded.anchor_us, last_fire_us = excluded.last_fire_us");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, expression).Bind(3, anchor_us).Bind(4, last_fire_us);
  return s->Run();
}

}  // namespace thaw::queue

#include "queue/event_queue.h"

#include "common/clock.h"
#include "store/db.h"

namespace thaw::queue {
namespace {

constexpr std::string_view kNames[] = {"queued", "running", "succeeded", "failed"};

Event EventFromRow(const store::Stmt& s) {
  Event e;
  e.id = s.Int(0);
  e.request_id = s.Text(1);
  e.function = s.Text(2);
  e.qualifier = s.Text(3);
  e.payload = s.Text(4);
  e.client_context = s.Text(5);
  e.state = ParseState(s.Text(6)).value_or(EventState::kQueued);
  e.attempts = static_cast<int>(s.Int(7));
  e.next_at_us = s.Int(8);
  e.created_us = s.Int(9);
  return e;
}

constexpr std::string_view kColumns =
    "id, request_id, function, qualifier, payload, client_context, state, attempts, next_at_us, "
    "created_us";

void BindOptional(store::Stmt& s, int index, const std::optional<int64_t>& v) {
  if (v) {
    s.Bind(index, *v);
  } else {
    s.BindNull(index);
  }
}

InvokeConfig ConfigFromRow(const store::Stmt& s, int first) {
  InvokeConfig c;
  if (!s.IsNull(first)) c.max_retry_attempts = s.Int(first);
  if (!s.IsNull(first + 1)) c.max_event_age_s = s.Int(first + 1);
  c.updated_us = s.Int(first + 2);
  return c;
}

}  // namespace

std::string_view StateName(EventState state) { return kNames[static_cast<int>(state)]; }

std::optional<EventState> ParseState(std::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (kNames[i] == name) return static_cast<EventState>(i);
  }
  return std::nullopt;
}

Status ValidateInvokeConfig(const InvokeConfig& config) {
  if (config.max_retry_attempts &&
      (*config.max_retry_attempts < 0 || *config.max_retry_attempts > 2)) {
    return InvalidArgument("MaximumRetryAttempts must be between 0 and 2, got " +
                           std::to_string(*config.max_retry_attempts));
  }
  if (config.max_event_age_s && (*config.max_event_age_s < 60 || *config.max_event_age_s > 21600)) {
    return InvalidArgument("MaximumEventAgeInSeconds must be between 60 and 21600, got " +
                           std::to_string(*config.max_event_age_s));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<EventQueue>> EventQueue::Open(const QueueOptions& options) {
  auto db = store::Db::Open(options.db_path);
  if (!db.ok()) return db.status();
  return std::unique_ptr<EventQueue>(new EventQueue(std::move(*db), options));
}

EventQueue::EventQueue(std::unique_ptr<store::Db> db, QueueOptions options)
    : db_(std::move(db)), options_(std::move(options)) {}

EventQueue::~EventQueue() = default;

Status EventQueue::Add(Event& event) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "INSERT INTO events (request_id, function, qualifier, payload, client_context, state, "
      "attempts, next_at_us, created_us, updated_us) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)");
  if (!s.ok()) return s.status();
  if (event.created_us == 0) event.created_us = WallNowMicros();
  s->Bind(1, event.request_id)
      .Bind(2, event.function)
      .Bind(3, event.qualifier)
      .Bind(4, event.payload)
      .Bind(5, event.client_context)
      .Bind(6, int64_t{event.attempts})
      .Bind(7, event.next_at_us)
      .Bind(8, event.created_us)
      .Bind(9, event.created_us);
  THAW_RETURN_IF_ERROR(s->Run());
  event.id = sqlite3_last_insert_rowid(db_->raw());
  event.state = EventState::kQueued;
  return Status::Ok();
}

Status EventQueue::SetState(int64_t id, EventState state, std::optional<int> attempts,
                            std::optional<int64_t> next_at_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "UPDATE events SET state = ?, attempts = COALESCE(?, attempts), "
      "next_at_us = COALESCE(?, next_at_us), updated_us = ? WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, StateName(state));
  if (attempts) {
    s->Bind(2, int64_t{*attempts});
  } else {
    s->BindNull(2);
  }
  BindOptional(*s, 3, next_at_us);
  s->Bind(4, WallNowMicros()).Bind(5, id);
  return s->Run();
}

Status EventQueue::MarkRunning(int64_t id, int attempts) {
  return SetState(id, EventState::kRunning, attempts, std::nullopt);
}

Status EventQueue::MarkQueued(int64_t id, int64_t next_at_us) {
  return SetState(id, EventState::kQueued, std::nullopt, next_at_us);
}

Status EventQueue::MarkDone(int64_t id, bool succeeded) {
  return SetState(id, succeeded ? EventState::kSucceeded : EventState::kFailed, std::nullopt,
                  std::nullopt);
}

StatusOr<std::vector<Event>> EventQueue::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  THAW_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  auto prune = db_->Prepare("DELETE FROM events WHERE state = 'succeeded' AND updated_us < ?");
  if (!prune.ok()) return prune.status();
  prune->Bind(1, WallNowMicros() - options_.keep_finished_us);
  Status st = prune->Run();
  std::vector<Event> out;
  if (st.ok()) {
    auto s = db_->Prepare("SELECT " + std::string(kColumns) +
                          " FROM events WHERE state IN ('queued', 'running') ORDER BY id");
    if (!s.ok()) st = s.status();
    while (st.ok()) {
      auto row = s->Next();
      if (!row.ok()) st = row.status();
      if (!st.ok() || !*row) break;
      out.push_back(EventFromRow(*s));
    }
  }
  if (st.ok()) st = db_->Exec("UPDATE events SET state = 'queued' WHERE state = 'running'");
  if (!st.ok()) {
    (void)db_->Exec("ROLLBACK");
    return st;
  }
  THAW_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  return out;
}

StatusOr<std::map<std::string, Depth>> EventQueue::Depths() {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT function, COUNT(*), MIN(created_us) FROM events "
      "WHERE state IN ('queued', 'running') GROUP BY function");
  if (!s.ok()) return s.status();
  std::map<std::string, Depth> out;
  for (;;) {
    auto row = s->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out[s->Text(0)] = Depth{s->Int(1), s->Int(2)};
  }
  return out;
}

StatusOr<Event> EventQueue::Get(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT " + std::string(kColumns) + " FROM events WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, id);
  auto row = s->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("event " + std::to_string(id) + " not found");
  return EventFromRow(*s);
}

Status EventQueue::PutConfig(const std::string& function, const std::string& qualifier,
                             const InvokeConfig& config) {
  THAW_RETURN_IF_ERROR(ValidateInvokeConfig(config));
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "INSERT OR REPLACE INTO event_invoke_configs (function, qualifier, max_retry_attempts, "
      "max_event_age_s, updated_us) VALUES (?, ?, ?, ?, ?)");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  BindOptional(*s, 3, config.max_retry_attempts);
  BindOptional(*s, 4, config.max_event_age_s);
  s->Bind(5, config.updated_us != 0 ? config.updated_us : WallNowMicros());
  return s->Run();
}

StatusOr<InvokeConfig> EventQueue::GetConfig(const std::string& function,
                                             const std::string& qualifier) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT max_retry_attempts, max_event_age_s, updated_us FROM event_invoke_configs "
      "WHERE function = ? AND qualifier = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  auto row = s->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("The function " + function + " has no event invoke config");
  return ConfigFromRow(*s, 0);
}

Status EventQueue::DeleteConfig(const std::string& function, const std::string& qualifier) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  THAW_RETURN_IF_ERROR(s->Run());
  if (sqlite3_changes(db_->raw()) == 0) {
    return NotFound("The function " + function + " has no event invoke config");
  }
  return Status::Ok();
}

StatusOr<std::vector<std::pair<std::string, InvokeConfig>>> EventQueue::ListConfigs(
    const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT qualifier, max_retry_attempts, max_event_age_s, updated_us FROM "
      "event_invoke_configs WHERE function = ? ORDER BY qualifier");
  if (!s.ok()) return s.status();
  s->Bind(1, function);
  std::vector<std::pair<std::string, InvokeConfig>> out;
  for (;;) {
    auto row = s->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.emplace_back(s->Text(0), ConfigFromRow(*s, 1));
  }
  return out;
}

}  // namespace thaw::queue

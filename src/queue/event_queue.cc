#include "queue/event_queue.h"

#include <algorithm>
#include <future>

#include "common/clock.h"
#include "store/db.h"
#include "store/wal_checkpointer.h"

namespace thaw::queue {
namespace {

constexpr std::string_view kNames[] = {"queued", "running", "succeeded", "failed", "forwarded"};
constexpr int kStates = 5;

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
  e.attempts_before = static_cast<int>(s.Int(10));
  e.condition = s.Text(11);
  e.error = s.Text(12);
  e.owner = s.Text(13);
  return e;
}

constexpr std::string_view kColumns =
    "id, request_id, function, qualifier, payload, client_context, state, attempts, next_at_us, "
    "created_us, attempts_before, condition, error, owner";

Delivery DeliveryFromRow(const store::Stmt& s) {
  Delivery d;
  d.id = s.Int(0);
  d.event_id = s.Int(1);
  d.function = s.Text(2);
  d.url = s.Text(3);
  d.record = s.Text(4);
  d.on_failure = s.Int(5) != 0;
  d.attempts = static_cast<int>(s.Int(6));
  d.next_at_us = s.Int(7);
  d.created_us = s.Int(8);
  return d;
}

constexpr std::string_view kDeliveryColumns =
    "id, event_id, function, url, record, on_failure, attempts, next_at_us, created_us";

void BindOptionalText(store::Stmt& s, int index, const std::optional<std::string>& v) {
  if (v) {
    s.Bind(index, *v);
  } else {
    s.BindNull(index);
  }
}

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
  if (!s.IsNull(first + 3)) c.on_success = s.Text(first + 3);
  if (!s.IsNull(first + 4)) c.on_failure = s.Text(first + 4);
  return c;
}

// Runs `body` in one IMMEDIATE transaction, rolled back when it fails.
template <typename F>
Status InTransaction(store::Db& db, F&& body) {
  THAW_RETURN_IF_ERROR(db.Begin());
  Status st = body();
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) (void)db.Exec("ROLLBACK");
  return st;
}

}  // namespace

std::string_view StateName(EventState state) { return kNames[static_cast<int>(state)]; }

std::optional<EventState> ParseState(std::string_view name) {
  for (int i = 0; i < kStates; ++i) {
    if (kNames[i] == name) return static_cast<EventState>(i);
  }
  return std::nullopt;
}

bool IsWebhook(std::string_view destination) {
  return destination.starts_with("http://") || destination.starts_with("https://");
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
  // PostgreSQL checkpoints on its own; only SQLite's WAL needs keeping out of the commits.
  std::unique_ptr<store::WalCheckpointer> checkpointer;
  if ((*db)->dialect() == store::Dialect::kSqlite) {
    auto started = store::WalCheckpointer::Start(**db, options.db_path);
    if (!started.ok()) return started.status();
    checkpointer = std::move(*started);
  }
  std::unique_ptr<EventQueue> queue(
      new EventQueue(std::move(*db), std::move(checkpointer), options));
  // Before anything is added: an owner without a live lease is taken for dead.
  THAW_RETURN_IF_ERROR(queue->RenewLease(WallNowMicros()));
  return queue;
}

EventQueue::EventQueue(std::unique_ptr<store::Db> db,
                       std::unique_ptr<store::WalCheckpointer> checkpointer, QueueOptions options)
    : db_(std::move(db)),
      checkpointer_(std::move(checkpointer)),
      options_(std::move(options)),
      shared_(db_->dialect() == store::Dialect::kPostgres),
      writer_([this] { WriterLoop(); }) {}

EventQueue::~EventQueue() {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    stopping_ = true;
  }
  write_cv_.notify_all();
  writer_.join();  // commits what was submitted before it returns
}

void EventQueue::Submit(std::function<Status()> op, std::function<void(Status)> done) {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    writes_.push_back(Write{std::move(op), std::move(done)});
  }
  write_cv_.notify_one();
}

Status EventQueue::SubmitAndWait(std::function<Status()> op) {
  std::promise<Status> result;
  auto future = result.get_future();
  Submit(std::move(op), [&result](Status st) { result.set_value(std::move(st)); });
  return future.get();
}

void EventQueue::WriterLoop() {
  for (;;) {
    std::vector<Write> batch;
    {
      std::unique_lock<std::mutex> lock(write_mu_);
      write_cv_.wait(lock, [&] { return stopping_ || !writes_.empty(); });
      if (writes_.empty()) return;
      batch.swap(writes_);
    }
    std::vector<Status> results(batch.size(), Status::Ok());
    Status commit = Status::Ok();
    if (checkpointer_ != nullptr) checkpointer_->WaitBelowCap();
    {
      std::lock_guard<std::mutex> lock(mu_);
      commit = db_->Begin();
      for (size_t i = 0; commit.ok() && i < batch.size(); ++i) {
        // A savepoint per write: one that fails leaves nothing half-done, the others commit.
        commit = db_->RunCached("SAVEPOINT w");
        if (!commit.ok()) break;
        results[i] = batch[i].op();
        if (!results[i].ok()) commit = db_->RunCached("ROLLBACK TO w");
        if (commit.ok()) commit = db_->RunCached("RELEASE w");
      }
      if (commit.ok()) commit = db_->RunCached("COMMIT");
      if (!commit.ok()) (void)db_->RunCached("ROLLBACK");
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].done) batch[i].done(commit.ok() ? results[i] : commit);
    }
  }
}

void EventQueue::AddAsync(Event event, AddDone done) {
  auto shared = std::make_shared<Event>(std::move(event));
  Submit([this, shared] { return InsertLocked(*shared); },
         [shared, done = std::move(done)](Status st) {
           if (!done) return;
           if (st.ok()) {
             done(shared->id);
           } else {
             done(std::move(st));
           }
         });
}

Status EventQueue::Add(Event& event) {
  return SubmitAndWait([this, &event] { return InsertLocked(event); });
}

Status EventQueue::InsertLocked(Event& event) {
  auto s = db_->PrepareCached(
      "INSERT INTO events (request_id, function, qualifier, payload, client_context, state, "
      "attempts, next_at_us, created_us, updated_us, owner) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, "
      "?, ?, ?) RETURNING id");
  if (!s.ok()) return s.status();
  if (event.created_us == 0) event.created_us = WallNowMicros();
  (*s)->Bind(1, event.request_id)
      .Bind(2, event.function)
      .Bind(3, event.qualifier)
      .Bind(4, event.payload)
      .Bind(5, event.client_context)
      .Bind(6, int64_t{event.attempts})
      .Bind(7, event.next_at_us)
      .Bind(8, event.created_us)
      .Bind(9, event.created_us)
      .Bind(10, options_.node);
  auto row = (*s)->Next();
  if (!row.ok()) return row.status();
  event.id = (*s)->Int(0);
  event.state = EventState::kQueued;
  event.owner = options_.node;
  return Status::Ok();
}

Status EventQueue::SetStateLocked(int64_t id, EventState state, std::optional<int> attempts,
                                  std::optional<int64_t> next_at_us) {
  auto cached = db_->PrepareCached(
      "UPDATE events SET state = ?, attempts = COALESCE(?, attempts), "
      "next_at_us = COALESCE(?, next_at_us), updated_us = ? WHERE id = ?");
  if (!cached.ok()) return cached.status();
  store::Stmt& s = **cached;
  s.Bind(1, StateName(state));
  if (attempts) {
    s.Bind(2, int64_t{*attempts});
  } else {
    s.BindNull(2);
  }
  BindOptional(s, 3, next_at_us);
  s.Bind(4, WallNowMicros()).Bind(5, id);
  return s.Run();
}

void EventQueue::MarkRunningAsync(int64_t id, int attempts) {
  Submit([=, this] { return SetStateLocked(id, EventState::kRunning, attempts, std::nullopt); },
         nullptr);
}

void EventQueue::MarkQueuedAsync(int64_t id, int64_t next_at_us) {
  Submit([=, this] { return SetStateLocked(id, EventState::kQueued, std::nullopt, next_at_us); },
         nullptr);
}

Status EventQueue::MarkRunning(int64_t id, int attempts) {
  return SubmitAndWait(
      [=, this] { return SetStateLocked(id, EventState::kRunning, attempts, std::nullopt); });
}

Status EventQueue::MarkQueued(int64_t id, int64_t next_at_us) {
  return SubmitAndWait(
      [=, this] { return SetStateLocked(id, EventState::kQueued, std::nullopt, next_at_us); });
}

Status EventQueue::MarkDone(int64_t id, bool succeeded) {
  const EventState state = succeeded ? EventState::kSucceeded : EventState::kFailed;
  return SubmitAndWait([=, this] { return SetStateLocked(id, state, std::nullopt, std::nullopt); });
}

void EventQueue::FinishAsync(int64_t id, Ending ending, FinishDone done) {
  auto shared = std::make_shared<Ending>(std::move(ending));
  Submit([this, id, shared] { return FinishLocked(id, *shared); },
         [shared, done = std::move(done)](Status st) {
           if (!done) return;
           if (st.ok()) {
             done(std::move(*shared));
           } else {
             done(std::move(st));
           }
         });
}

Status EventQueue::Finish(int64_t id, Ending& ending) {
  return SubmitAndWait([this, id, &ending] { return FinishLocked(id, ending); });
}

Status EventQueue::FinishLocked(int64_t id, Ending& ending) {
  const int64_t now = WallNowMicros();
  const EventState state = ending.succeeded                    ? EventState::kSucceeded
                           : ending.forward || ending.delivery ? EventState::kForwarded
                                                               : EventState::kFailed;
  {
    auto cached = db_->PrepareCached(
        "UPDATE events SET state = ?, condition = ?, error = ?, updated_us = ? WHERE id = ?");
    if (!cached.ok()) return cached.status();
    store::Stmt& s = **cached;
    s.Bind(1, StateName(state)).Bind(2, ending.condition).Bind(3, ending.error);
    s.Bind(4, now).Bind(5, id);
    THAW_RETURN_IF_ERROR(s.Run());
  }
  if (ending.forward) THAW_RETURN_IF_ERROR(InsertLocked(*ending.forward));
  if (ending.delivery) {
    Delivery& d = *ending.delivery;
    auto cached = db_->PrepareCached(
        "INSERT INTO deliveries (event_id, function, url, record, on_failure, state, attempts, "
        "next_at_us, created_us, updated_us, owner) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, "
        "?) RETURNING id");
    if (!cached.ok()) return cached.status();
    store::Stmt& ins = **cached;
    d.event_id = id;
    d.created_us = now;
    ins.Bind(1, id).Bind(2, d.function).Bind(3, d.url).Bind(4, d.record);
    ins.Bind(5, int64_t{d.on_failure ? 1 : 0}).Bind(6, d.next_at_us).Bind(7, now).Bind(8, now);
    ins.Bind(9, options_.node);
    auto row = ins.Next();
    if (!row.ok()) return row.status();
    d.id = ins.Int(0);
  }
  return Status::Ok();
}

StatusOr<EventPage> EventQueue::List(const std::string& function, std::optional<EventState> state,
                                     int64_t before, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("SELECT " + std::string(kColumns) +
                        " FROM events WHERE function = ? AND id < ? AND state = COALESCE(?, state) "
                        "ORDER BY id DESC LIMIT ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, before > 0 ? before : INT64_MAX);
  if (state) {
    s->Bind(3, StateName(*state));
  } else {
    s->BindNull(3);
  }
  s->Bind(4, int64_t{limit} + 1);  // one more says whether there is a next page
  EventPage page;
  for (;;) {
    auto row = s->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (static_cast<int>(page.events.size()) == limit) {
      page.next = page.events.back().id;
      break;
    }
    page.events.push_back(EventFromRow(*s));
  }
  return page;
}

StatusOr<std::vector<Event>> EventQueue::Redrive(const std::string& function,
                                                 const std::vector<std::string>& request_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Event> out;
  const int64_t now = WallNowMicros();
  Status st = InTransaction(*db_, [&]() -> Status {
    auto s = db_->Prepare("SELECT " + std::string(kColumns) +
                          " FROM events WHERE function = ? AND state = 'failed' ORDER BY id");
    if (!s.ok()) return s.status();
    s->Bind(1, function);
    std::map<std::string, Event> dead;
    for (;;) {
      auto row = s->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      Event e = EventFromRow(*s);
      dead.emplace(e.request_id, std::move(e));
    }
    if (request_ids.empty()) {
      for (auto& [id, e] : dead) out.push_back(std::move(e));
    } else {
      for (const std::string& id : request_ids) {
        auto it = dead.find(id);
        if (it == dead.end()) {
          return NotFound("event " + id + " is not a dead letter of function " + function);
        }
        out.push_back(std::move(it->second));
        dead.erase(it);
      }
    }
    auto u = db_->Prepare(
        "UPDATE events SET state = 'queued', attempts_before = attempts, created_us = ?, "
        "next_at_us = 0, condition = '', error = '', updated_us = ?, owner = ? WHERE id = ?");
    if (!u.ok()) return u.status();
    for (Event& e : out) {
      u->Reset();
      u->Bind(1, now).Bind(2, now).Bind(3, options_.node).Bind(4, e.id);
      THAW_RETURN_IF_ERROR(u->Run());
      e.state = EventState::kQueued;
      e.attempts_before = e.attempts;
      e.created_us = now;
      e.next_at_us = 0;
      e.condition.clear();
      e.error.clear();
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Status EventQueue::MarkDelivery(int64_t id, int attempts, int64_t next_at_us) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "UPDATE deliveries SET attempts = ?, next_at_us = ?, updated_us = ? WHERE id = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, int64_t{attempts}).Bind(2, next_at_us).Bind(3, WallNowMicros()).Bind(4, id);
  return s->Run();
}

Status EventQueue::EndDelivery(const Delivery& delivery, bool delivered) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = WallNowMicros();
  return InTransaction(*db_, [&]() -> Status {
    auto s = db_->Prepare("UPDATE deliveries SET state = ?, updated_us = ? WHERE id = ?");
    if (!s.ok()) return s.status();
    s->Bind(1, delivered ? "delivered" : "failed").Bind(2, now).Bind(3, delivery.id);
    THAW_RETURN_IF_ERROR(s->Run());
    if (delivered || !delivery.on_failure) return Status::Ok();
    auto e = db_->Prepare(
        "UPDATE events SET state = 'failed', updated_us = ? WHERE id = ? AND state = 'forwarded'");
    if (!e.ok()) return e.status();
    e->Bind(1, now).Bind(2, delivery.event_id);
    return e->Run();
  });
}

StatusOr<std::vector<Delivery>> EventQueue::PendingDeliveries() {
  return PendingDeliveries(WallNowMicros());
}

StatusOr<std::vector<Delivery>> EventQueue::PendingDeliveries(int64_t now_us) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Delivery> out;
  THAW_RETURN_IF_ERROR(ClaimDeliveriesLocked(now_us, INT64_MAX, /*own=*/true, out));
  return out;
}

StatusOr<std::vector<Delivery>> EventQueue::TakeOverDeliveries(int64_t now_us, int64_t max) {
  std::vector<Delivery> out;
  THAW_RETURN_IF_ERROR(
      SubmitAndWait([&] { return ClaimDeliveriesLocked(now_us, max, /*own=*/false, out); }));
  return out;
}

Status EventQueue::ClaimDeliveriesLocked(int64_t now_us, int64_t max, bool own,
                                         std::vector<Delivery>& out) {
  // Whose lease has not passed: their deliveries are theirs (alone on SQLite, only this node).
  const std::string live = "(SELECT node FROM queue_leases WHERE lease_until_us >= ?2)";
  std::string sql;
  if (own) {
    // At start: this node's own, and any owner without a live lease (also rows from before
    // owners, owned by '').
    sql =
        "UPDATE deliveries SET owner = ?1 WHERE state = 'queued' AND (owner = ?1 OR owner NOT "
        "IN " +
        live + ")";
  } else {
    // The outer conditions are checked again on each row as it is once locked (PostgreSQL's
    // READ COMMITTED): two takers at once each get distinct deliveries.
    const std::string dead = "state = 'queued' AND owner != ?1 AND owner NOT IN " + live;
    const std::string pick = "SELECT id FROM deliveries WHERE " + dead + " ORDER BY id LIMIT ?3";
    sql = shared_ ? "WITH picked AS MATERIALIZED (" + pick +
                        " FOR UPDATE SKIP LOCKED) UPDATE deliveries SET owner = ?1 WHERE " + dead +
                        " AND id IN (SELECT id FROM picked)"
                  : "UPDATE deliveries SET owner = ?1 WHERE " + dead + " AND id IN (" + pick + ")";
  }
  auto s = db_->PrepareCached(sql + " RETURNING " + std::string(kDeliveryColumns));
  if (!s.ok()) return s.status();
  (*s)->Bind(1, options_.node).Bind(2, now_us);
  if (!own) (*s)->Bind(3, max);
  const size_t first = out.size();
  for (;;) {
    auto row = (*s)->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(DeliveryFromRow(**s));
  }
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
            [](const Delivery& a, const Delivery& b) { return a.id < b.id; });
  return Status::Ok();
}

StatusOr<std::vector<Event>> EventQueue::Recover() { return Recover(WallNowMicros()); }

StatusOr<std::vector<Event>> EventQueue::Recover(int64_t now_us) {
  std::lock_guard<std::mutex> lock(mu_);
  THAW_RETURN_IF_ERROR(db_->Begin());
  std::vector<Event> out;
  Status st = [&]() -> Status {
    for (const char* sql :
         {"DELETE FROM events WHERE state IN ('succeeded', 'forwarded') AND updated_us < ?",
          "DELETE FROM deliveries WHERE state != 'queued' AND updated_us < ?",
          "DELETE FROM queue_leases WHERE lease_until_us < ? AND node NOT IN "
          "(SELECT owner FROM events WHERE state IN ('queued', 'running'))"}) {
      auto prune = db_->Prepare(sql);
      if (!prune.ok()) return prune.status();
      prune->Bind(1, now_us - options_.keep_finished_us);
      THAW_RETURN_IF_ERROR(prune->Run());
    }
    THAW_RETURN_IF_ERROR(RenewLocked(now_us));
    THAW_RETURN_IF_ERROR(ClaimLocked(now_us, INT64_MAX, /*own=*/true, out));
    // Nothing of this node runs yet: what its table rows say runs was cut short.
    auto s =
        db_->Prepare("UPDATE events SET state = 'queued' WHERE owner = ? AND state = 'running'");
    if (!s.ok()) return s.status();
    s->Bind(1, options_.node);
    return s->Run();
  }();
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) {
    (void)db_->Exec("ROLLBACK");
    return st;
  }
  return out;
}

Status EventQueue::RenewLocked(int64_t now_us) {
  auto s = db_->PrepareCached(
      "INSERT INTO queue_leases (node, lease_until_us) VALUES (?, ?) ON CONFLICT (node) DO UPDATE "
      "SET lease_until_us = excluded.lease_until_us");
  if (!s.ok()) return s.status();
  (*s)->Bind(1, options_.node).Bind(2, now_us + options_.lease_us);
  return (*s)->Run();
}

Status EventQueue::ClaimLocked(int64_t now_us, int64_t max, bool own, std::vector<Event>& out) {
  const size_t first = out.size();
  auto collect = [&](store::Stmt& s) -> Status {
    for (;;) {
      auto row = s.Next();
      if (!row.ok()) return row.status();
      if (!*row) return Status::Ok();
      out.push_back(EventFromRow(s));
    }
  };
  if (own) {
    // At start, all at once: this node's own, and any owner without a live lease (also rows
    // from before leases, owned by '').
    auto s = db_->Prepare(
        "UPDATE events SET owner = ?1 WHERE state IN ('queued', 'running') AND "
        "(owner = ?1 OR owner NOT IN (SELECT node FROM queue_leases WHERE "
        "lease_until_us >= ?2)) RETURNING " +
        std::string(kColumns));
    if (!s.ok()) return s.status();
    s->Bind(1, options_.node).Bind(2, now_us);
    THAW_RETURN_IF_ERROR(collect(*s));
  } else {
    std::vector<std::string> dead;
    {
      auto s = db_->PrepareCached(
          "SELECT node FROM queue_leases WHERE lease_until_us < ? AND node != ? ORDER BY "
          "lease_until_us");
      if (!s.ok()) return s.status();
      (*s)->Bind(1, now_us).Bind(2, options_.node);
      for (;;) {
        auto row = (*s)->Next();
        if (!row.ok()) return row.status();
        if (!*row) break;
        dead.push_back((*s)->Text(0));
      }
    }
    // The outer `owner = ?2` is checked again on the row as it is once locked (PostgreSQL's
    // READ COMMITTED), so two nodes taking over at once each get distinct events. On
    // PostgreSQL the pick skips rows another taker holds instead of waiting, and is a
    // materialized CTE: as an IN subquery it could run again per row and pass its LIMIT.
    const std::string pick =
        "SELECT id FROM events WHERE owner = ?2 AND state IN ('queued', 'running') ORDER BY id "
        "LIMIT ?3";
    const std::string sql =
        (shared_ ? "WITH picked AS MATERIALIZED (" + pick +
                       " FOR UPDATE SKIP LOCKED) UPDATE events SET owner = ?1 WHERE owner = ?2 "
                       "AND state IN ('queued', 'running') AND id IN (SELECT id FROM picked)"
                 : "UPDATE events SET owner = ?1 WHERE owner = ?2 AND state IN ('queued', "
                   "'running') AND id IN (" +
                       pick + ")") +
        " RETURNING " + std::string(kColumns);
    for (const std::string& owner : dead) {
      const int64_t room = max - static_cast<int64_t>(out.size() - first);
      if (room <= 0) break;
      auto s = db_->PrepareCached(sql);
      if (!s.ok()) return s.status();
      (*s)->Bind(1, options_.node).Bind(2, owner).Bind(3, room);
      THAW_RETURN_IF_ERROR(collect(**s));
    }
  }
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
            [](const Event& a, const Event& b) { return a.id < b.id; });
  return Status::Ok();
}

Status EventQueue::RenewLease(int64_t now_us) {
  return SubmitAndWait([this, now_us] { return RenewLocked(now_us); });
}

StatusOr<std::vector<Event>> EventQueue::TakeOver(int64_t now_us, int64_t max) {
  std::vector<Event> out;
  THAW_RETURN_IF_ERROR(SubmitAndWait([&] { return ClaimLocked(now_us, max, /*own=*/false, out); }));
  return out;
}

void EventQueue::TickAsync(int64_t now_us, int64_t max, TakeOverDone done) {
  auto out = std::make_shared<TakenOver>();
  Submit(
      [this, now_us, max, out]() -> Status {
        THAW_RETURN_IF_ERROR(RenewLocked(now_us));
        THAW_RETURN_IF_ERROR(
            ClaimDeliveriesLocked(now_us, kTakeDeliveriesPerTick, /*own=*/false, out->deliveries));
        if (max <= 0) return Status::Ok();
        return ClaimLocked(now_us, max, /*own=*/false, out->events);
      },
      [out, done = std::move(done)](Status st) {
        if (!done) return;
        if (st.ok()) {
          done(std::move(*out));
        } else {
          done(std::move(st));
        }
      });
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
  std::lock_guard<std::mutex> config_lock(config_mu_);
  configs_.erase({function, qualifier});
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "INSERT INTO event_invoke_configs (function, qualifier, max_retry_attempts, "
      "max_event_age_s, updated_us, on_success, on_failure) VALUES (?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT (function, qualifier) DO UPDATE SET max_retry_attempts = "
      "excluded.max_retry_attempts, max_event_age_s = excluded.max_event_age_s, updated_us = "
      "excluded.updated_us, on_success = excluded.on_success, on_failure = excluded.on_failure");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  BindOptional(*s, 3, config.max_retry_attempts);
  BindOptional(*s, 4, config.max_event_age_s);
  s->Bind(5, config.updated_us != 0 ? config.updated_us : WallNowMicros());
  BindOptionalText(*s, 6, config.on_success);
  BindOptionalText(*s, 7, config.on_failure);
  return s->Run();
}

StatusOr<InvokeConfig> EventQueue::GetConfig(const std::string& function,
                                             const std::string& qualifier) {
  // Held across the read so a concurrent Put/Delete cannot be overtaken by a stale value.
  std::lock_guard<std::mutex> lock(config_mu_);
  auto it = configs_.find({function, qualifier});
  if (it != configs_.end()) {
    if (!it->second) return NotFound("The function " + function + " has no event invoke config");
    return *it->second;
  }
  auto got = ReadConfig(function, qualifier);
  if (got.ok() || got.status().code() == StatusCode::kNotFound) {
    configs_[{function, qualifier}] =
        got.ok() ? std::optional<InvokeConfig>(*got) : std::optional<InvokeConfig>();
  }
  return got;
}

StatusOr<InvokeConfig> EventQueue::ReadConfig(const std::string& function,
                                              const std::string& qualifier) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT max_retry_attempts, max_event_age_s, updated_us, on_success, on_failure FROM "
      "event_invoke_configs "
      "WHERE function = ? AND qualifier = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  auto row = s->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("The function " + function + " has no event invoke config");
  return ConfigFromRow(*s, 0);
}

Status EventQueue::DeleteConfig(const std::string& function, const std::string& qualifier) {
  std::lock_guard<std::mutex> config_lock(config_mu_);
  configs_.erase({function, qualifier});
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare("DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?");
  if (!s.ok()) return s.status();
  s->Bind(1, function).Bind(2, qualifier);
  THAW_RETURN_IF_ERROR(s->Run());
  if (db_->Changes() == 0) {
    return NotFound("The function " + function + " has no event invoke config");
  }
  return Status::Ok();
}

StatusOr<std::vector<std::pair<std::string, InvokeConfig>>> EventQueue::ListConfigs(
    const std::string& function) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = db_->Prepare(
      "SELECT qualifier, max_retry_attempts, max_event_age_s, updated_us, on_success, on_failure "
      "FROM event_invoke_configs WHERE function = ? ORDER BY qualifier");
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

// EventQueue: the durable queue of asynchronous (Lambda Event) invocations, one row per event
// in the data dir's SQLite database, and each function's event invoke config. Owned by the
// server; thread-safe (one connection behind a mutex; writes are committed in batches by the
// queue's own writer thread; WAL checkpoints run beside it, store/wal_checkpointer.h).
//
// The crash contract: an event whose Add() returned is committed (WAL, synchronous=NORMAL), so
// a kill -9 at any later moment loses none. Recover() at start puts events that were running
// back to queued with their attempt count and request id unchanged: they run again
// (at-least-once, as Lambda), and the meter, which keys records by request id, bills a re-run
// attempt that had already finished only once. An event's end and the record its destination
// gets are one transaction (Finish): a crash after it redelivers the record, never loses it.
// Events that fail with no OnFailure destination stay as dead letters (kFailed) until redriven.
//
// Several nodes on one PostgreSQL share the table: each unfinished event is owned by the node
// that accepted (or took over) it, and each node holds a lease on what it owns (queue_leases,
// renewed on its tick). Recover() takes back only this node's own events and those of nodes
// whose lease has passed; TakeOver() on the tick takes a dead node's events (a kill -9) while the
// others run on. Each event goes to one taker (the claim re-checks its owner under the row
// lock); a node that stalls past its lease may still finish what it ran, so a try can run twice
// (at-least-once, as Lambda; the meter counts each request id once).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"

namespace thaw::store {
class Db;
class WalCheckpointer;
}  // namespace thaw::store

namespace thaw::queue {

// kFailed: a dead letter (retries exhausted or too old, and no OnFailure destination took
// its record); Redrive queues it again. kForwarded: failed, its record handed to its OnFailure
// destination.
enum class EventState { kQueued, kRunning, kSucceeded, kFailed, kForwarded };

std::string_view StateName(EventState state);
std::optional<EventState> ParseState(std::string_view name);

struct Event {
  int64_t id = 0;  // set by Add
  std::string request_id;
  std::string function;
  std::string qualifier;
  std::string payload;
  std::string client_context;
  EventState state = EventState::kQueued;
  int attempts = 0;         // tries started
  int64_t next_at_us = 0;   // wall clock: not to run before
  int64_t created_us = 0;   // wall clock: when accepted (or last redriven)
  int attempts_before = 0;  // tries made before the last redrive
  std::string condition;    // how it ended: Success, RetriesExhausted, EventAgeExceeded
  std::string error;        // the last failed try's "Type: message"
  std::string owner;        // the node that holds it (QueueOptions::node)
};

// An invocation record on its way to a webhook destination.
struct Delivery {
  int64_t id = 0;  // set by Finish
  int64_t event_id = 0;
  std::string function;  // whose event it reports
  std::string url;
  std::string record;  // the JSON body
  bool on_failure = false;
  int attempts = 0;  // posts made
  int64_t next_at_us = 0;
  int64_t created_us = 0;
};

// How an event ended and where its record goes: committed together by Finish.
struct Ending {
  bool succeeded = false;
  std::string condition;
  std::string error;
  std::optional<Event> forward;      // the record as an Event of the destination function
  std::optional<Delivery> delivery;  // the record for a webhook
};

// One page of a function's events, newest first; `next` is the cursor of the next page (0:
// none).
struct EventPage {
  std::vector<Event> events;
  int64_t next = 0;
};

// Events not yet finished (queued or running) of one function.
struct Depth {
  int64_t events = 0;
  int64_t oldest_created_us = 0;
};

// Lambda's FunctionEventInvokeConfig; unset: Lambda's default. A destination is an http(s)
// URL or a function's internal name, optionally NAME:QUALIFIER.
struct InvokeConfig {
  std::optional<int64_t> max_retry_attempts;  // 0-2 (default 2)
  std::optional<int64_t> max_event_age_s;     // 60-21600 (default 21600)
  std::optional<std::string> on_success;
  std::optional<std::string> on_failure;
  int64_t updated_us = 0;
};

// Whether a destination is a webhook (an http:// or https:// URL) rather than a function.
bool IsWebhook(std::string_view destination);

// InvalidArgument naming the field when a value is out of Lambda's range. Pure.
Status ValidateInvokeConfig(const InvokeConfig& config);

struct QueueOptions {
  std::string db_path;  // the data dir's thaw.db
  // Finished events are kept this long (for inspection), then dropped at the next start.
  int64_t keep_finished_us = 24LL * 3600 * 1'000'000;
  // The owner this node writes into the events it holds: distinct per node on a shared store.
  std::string node = "local";
  // How long this node's hold on its events outlives its last renewal (RenewLease, Tick).
  int64_t lease_us = 5'000'000;
};

class EventQueue {
 public:
  [[nodiscard]] static StatusOr<std::unique_ptr<EventQueue>> Open(const QueueOptions& options);
  ~EventQueue();
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // Writes go through one writer thread that commits every write waiting at once in one
  // transaction (group commit), in the order they were submitted; `done` callbacks run on that
  // thread once their write is committed (or failed). The blocking forms wait for it.
  using AddDone = std::function<void(StatusOr<int64_t>)>;
  using FinishDone = std::function<void(StatusOr<Ending>)>;

  // Commits `event` as queued; `done` gets its id. The caller may answer 202 once it ran ok.
  void AddAsync(Event event, AddDone done);
  [[nodiscard]] Status Add(Event& event);  // sets event.id
  // Fire and forget: a crash before they commit re-runs the try under the same request id.
  void MarkRunningAsync(int64_t id, int attempts);
  void MarkQueuedAsync(int64_t id, int64_t next_at_us);
  [[nodiscard]] Status MarkRunning(int64_t id, int attempts);
  [[nodiscard]] Status MarkQueued(int64_t id, int64_t next_at_us);
  [[nodiscard]] Status MarkDone(int64_t id, bool succeeded);
  // Ends event `id` as `ending` says and, in the same transaction, adds its forward event and
  // delivery (setting their ids); a forwarded failure is kForwarded, else kFailed.
  void FinishAsync(int64_t id, Ending ending, FinishDone done);
  [[nodiscard]] Status Finish(int64_t id, Ending& ending);
  // `function`'s events, newest first, with ids below `before` (0: from the newest), in
  // `state` when given; at most `limit`.
  [[nodiscard]] StatusOr<EventPage> List(const std::string& function,
                                         std::optional<EventState> state, int64_t before,
                                         int limit);
  // Queues `function`'s dead letters again (those whose request ids are in `request_ids`, or
  // all of them when it is empty) as new: their age and retries start over, their tries keep
  // counting (so each is metered under a request id of its own). NotFound naming an id that is
  // not a dead letter of `function`, and then nothing changes.
  [[nodiscard]] StatusOr<std::vector<Event>> Redrive(const std::string& function,
                                                     const std::vector<std::string>& request_ids);

  // Webhook deliveries: a post made (retry at `next_at_us`), or the end of one. A failed
  // OnFailure delivery makes its event a dead letter again.
  [[nodiscard]] Status MarkDelivery(int64_t id, int attempts, int64_t next_at_us);
  [[nodiscard]] Status EndDelivery(const Delivery& delivery, bool delivered);
  // At start: deliveries not yet ended, oldest first: this node's own and those of owners whose
  // lease had passed by `now_us` (which become this node's).
  [[nodiscard]] StatusOr<std::vector<Delivery>> PendingDeliveries();
  [[nodiscard]] StatusOr<std::vector<Delivery>> PendingDeliveries(int64_t now_us);
  // Makes up to `max` pending deliveries of other owners whose lease has passed by `now_us` this
  // node's, oldest first; each goes to one taker.
  [[nodiscard]] StatusOr<std::vector<Delivery>> TakeOverDeliveries(int64_t now_us, int64_t max);
  // At start, before anything is added: every unfinished event, oldest first, as it was (a
  // kRunning one was cut short by the crash); in the table running ones go back to queued.
  [[nodiscard]] StatusOr<std::vector<Event>> Recover();
  // The same, at wall clock `now_us`: this node's events and those of owners whose lease had
  // passed by then become this node's, and its lease runs to now_us + lease_us.
  [[nodiscard]] StatusOr<std::vector<Event>> Recover(int64_t now_us);

  // Leases, for nodes sharing the store (shared()). RenewLease moves this node's lease to
  // now_us + lease_us. TakeOver makes up to `max` unfinished events of owners whose lease has
  // passed by `now_us` this node's, and returns them as they were (a kRunning one was cut short
  // by its node's death), oldest first. Tick does both in one commit on the writer thread, and
  // takes dead nodes' pending deliveries too (kTakeDeliveriesPerTick at most).
  struct TakenOver {
    std::vector<Event> events;
    std::vector<Delivery> deliveries;
  };
  static constexpr int64_t kTakeDeliveriesPerTick = 256;
  using TakeOverDone = std::function<void(StatusOr<TakenOver>)>;
  [[nodiscard]] Status RenewLease(int64_t now_us);
  [[nodiscard]] StatusOr<std::vector<Event>> TakeOver(int64_t now_us, int64_t max);
  void TickAsync(int64_t now_us, int64_t max, TakeOverDone done);
  // Whether other nodes may share this queue (PostgreSQL): only then is a tick worth its writes.
  bool shared() const { return shared_; }
  const std::string& node() const { return options_.node; }
  int64_t lease_us() const { return options_.lease_us; }
  [[nodiscard]] StatusOr<std::map<std::string, Depth>> Depths();
  // One event by id (tests and inspection).
  [[nodiscard]] StatusOr<Event> Get(int64_t id);

  // Event invoke configs, by function and qualifier ("" for the unqualified function).
  [[nodiscard]] Status PutConfig(const std::string& function, const std::string& qualifier,
                                 const InvokeConfig& config);
  [[nodiscard]] StatusOr<InvokeConfig> GetConfig(const std::string& function,
                                                 const std::string& qualifier);
  [[nodiscard]] Status DeleteConfig(const std::string& function, const std::string& qualifier);
  // (qualifier, config) pairs of `function`.
  [[nodiscard]] StatusOr<std::vector<std::pair<std::string, InvokeConfig>>> ListConfigs(
      const std::string& function);

 private:
  EventQueue(std::unique_ptr<store::Db> db, std::unique_ptr<store::WalCheckpointer> checkpointer,
             QueueOptions options);
  struct Write {
    std::function<Status()> op;        // runs on the writer thread, mu_ held, in a transaction
    std::function<void(Status)> done;  // may be empty
  };
  void Submit(std::function<Status()> op, std::function<void(Status)> done);
  Status SubmitAndWait(std::function<Status()> op);
  void WriterLoop();
  // mu_ held, inside a transaction:
  Status SetStateLocked(int64_t id, EventState state, std::optional<int> attempts,
                        std::optional<int64_t> next_at_us);
  Status InsertLocked(Event& event);
  Status FinishLocked(int64_t id, Ending& ending);
  Status RenewLocked(int64_t now_us);
  // Makes up to `max` unfinished events of dead owners (and, with `own`, this node's) its own.
  Status ClaimLocked(int64_t now_us, int64_t max, bool own, std::vector<Event>& out);
  // The same for pending webhook deliveries.
  Status ClaimDeliveriesLocked(int64_t now_us, int64_t max, bool own, std::vector<Delivery>& out);
  StatusOr<InvokeConfig> ReadConfig(const std::string& function, const std::string& qualifier);

  std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::vector<Write> writes_;  // guarded by write_mu_
  bool stopping_ = false;      // guarded by write_mu_
  // Configs by (function, qualifier), read through: every event's end asks for its function's.
  // Taken before mu_.
  std::mutex config_mu_;
  std::map<std::pair<std::string, std::string>, std::optional<InvokeConfig>> configs_;

  std::mutex mu_;
  std::unique_ptr<store::Db> db_;  // guarded by mu_
  // Checkpoints db_'s WAL off the writer's commits; before db_ goes, after the writer.
  std::unique_ptr<store::WalCheckpointer> checkpointer_;
  const QueueOptions options_;
  bool shared_ = false;
  std::thread writer_;  // last: started once the rest is built, joined first
};

}  // namespace thaw::queue

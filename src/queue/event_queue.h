// EventQueue: the durable queue of asynchronous (Lambda Event) invocations, one row per event
// in the data dir's SQLite database, and each function's event invoke config. Owned by the
// server; thread-safe (one connection behind a mutex).
//
// The crash contract: an event whose Add() returned is committed (WAL, synchronous=NORMAL), so
// a kill -9 at any later moment loses none. Recover() at start puts events that were running
// back to queued with their attempt count and request id unchanged: they run again
// (at-least-once, as Lambda), and the meter, which keys records by request id, bills a re-run
// attempt that had already finished only once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace thaw::store {
class Db;
}

namespace thaw::queue {

enum class EventState { kQueued, kRunning, kSucceeded, kFailed };

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
  int attempts = 0;        // tries started
  int64_t next_at_us = 0;  // wall clock: not to run before
  int64_t created_us = 0;  // wall clock: when accepted
};

// Events not yet finished (queued or running) of one function.
struct Depth {
  int64_t events = 0;
  int64_t oldest_created_us = 0;
};

// Lambda's FunctionEventInvokeConfig without destinations; unset: Lambda's default.
struct InvokeConfig {
  std::optional<int64_t> max_retry_attempts;  // 0-2 (default 2)
  std::optional<int64_t> max_event_age_s;     // 60-21600 (default 21600)
  int64_t updated_us = 0;
};

// InvalidArgument naming the field when a value is out of Lambda's range. Pure.
Status ValidateInvokeConfig(const InvokeConfig& config);

struct QueueOptions {
  std::string db_path;  // the data dir's thaw.db
  // Finished events are kept this long (for inspection), then dropped at the next start.
  int64_t keep_finished_us = 24LL * 3600 * 1'000'000;
};

class EventQueue {
 public:
  [[nodiscard]] static StatusOr<std::unique_ptr<EventQueue>> Open(const QueueOptions& options);
  ~EventQueue();
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // Commits `event` as queued and sets its id; the caller may answer 202 once this returns ok.
  [[nodiscard]] Status Add(Event& event);
  [[nodiscard]] Status MarkRunning(int64_t id, int attempts);
  [[nodiscard]] Status MarkQueued(int64_t id, int64_t next_at_us);
  [[nodiscard]] Status MarkDone(int64_t id, bool succeeded);
  // At start, before anything is added: every unfinished event, oldest first, as it was (a
  // kRunning one was cut short by the crash); in the table running ones go back to queued.
  [[nodiscard]] StatusOr<std::vector<Event>> Recover();
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
  EventQueue(std::unique_ptr<store::Db> db, QueueOptions options);
  Status SetState(int64_t id, EventState state, std::optional<int> attempts,
                  std::optional<int64_t> next_at_us);

  std::mutex mu_;
  std::unique_ptr<store::Db> db_;  // guarded by mu_
  const QueueOptions options_;
};

}  // namespace thaw::queue

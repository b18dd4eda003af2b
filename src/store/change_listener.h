// ChangeListener: how a node hears that another node changed shared state in PostgreSQL. It
// holds one libpq connection of its own that LISTENs on Db::kChangesChannel (writers NOTIFY
// "kind:id" in their transaction: Db::Notify) and hands each batch of notifications to its
// handler on a thread of its own, as soon as they arrive (it waits on the socket; no polling).
// After every (re)connect the handler first gets {"*", ""}: notices may have been missed while
// no LISTEN was in place, so everything is to be read again. A lost connection is retried
// after 100 ms, doubling up to 1 s; a handler that fails (its own reads failed) is given
// {"*", ""} again a second later. Stopped by the destructor.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace thaw::store {

struct Change {
  std::string kind;  // "registry", "keys", "tenants"; "*": everything
  std::string id;    // the function, key or tenant; empty with "*"
  bool operator==(const Change&) const = default;
};

// "kind:id" as Db::Notify sends it (a payload without ':' is a kind with no id).
Change ParseChange(std::string_view payload);

class ChangeListener {
 public:
  using Handler = std::function<Status(const std::vector<Change>&)>;
  // `url` is the store's postgres:// URL. The handler runs on the listener's thread, one batch
  // at a time.
  static StatusOr<std::unique_ptr<ChangeListener>> Start(std::string url, Handler handler);
  ~ChangeListener();
  ChangeListener(const ChangeListener&) = delete;
  ChangeListener& operator=(const ChangeListener&) = delete;

  // Connections made so far (1 after the first; more after losses): for tests and logs.
  int64_t connects() const { return connects_.load(); }

 private:
  ChangeListener(std::string url, Handler handler, int stop_fd);
  void Run();
  // Waits up to `ms` for the stop signal; true when stopping.
  bool WaitStop(int ms);

  const std::string url_;
  const Handler handler_;
  const int stop_fd_;  // eventfd written by the destructor
  std::atomic<int64_t> connects_{0};
  std::thread thread_;
};

}  // namespace thaw::store

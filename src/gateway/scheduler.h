// Scheduler: fires each deployed function's `schedule:` entries (queue/schedule.h) as Event
// invocations carrying EventBridge's Scheduled Event payload. When each schedule last fired is
// kept in the JobStore, so a run missed while the server was down fires once at start (unless
// the function says catch_up: false). The decisions are queue::PlanStart / NextFire (pure);
// this is the driver: a once-a-second loop that follows deploys and deletes. Owned by Api;
// thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "common/status.h"
#include "queue/schedule.h"

namespace thaw::queue {
class JobStore;
}
namespace thaw::registry {
class Registry;
}

namespace thaw::gateway {

class Invoker;

class Scheduler {
 public:
  Scheduler(registry::Registry* registry, Invoker* invoker, queue::JobStore* store,
            std::string region);
  ~Scheduler();

  // Starts the loop on `executor`; its first turn fires the runs missed while down.
  void Start(boost::asio::any_io_executor executor);
  // The function's next scheduled run (wall clock), if it has a schedule.
  std::optional<int64_t> NextRun(const std::string& function) const;
  // One turn at `now_us`: picks up deploys and deletes, fires what is due. (The loop's body.)
  void Turn(int64_t now_us);

 private:
  struct Entry {
    queue::Schedule schedule;
    int index = 0;  // in the function's list: the rule's name
    int64_t anchor_us = 0;
    std::optional<int64_t> next_us;
  };
  void Fire(const std::string& function, const Entry& entry, int64_t fire_us);

  registry::Registry* const registry_;
  Invoker* const invoker_;
  queue::JobStore* const store_;
  const std::string region_;
  boost::asio::any_io_executor executor_;
  mutable std::mutex mu_;
  // (function, expression) -> entry; guarded by mu_.
  std::map<std::pair<std::string, std::string>, Entry> entries_;
  bool first_turn_ = true;  // guarded by mu_: missed runs are looked for at start only
};

}  // namespace thaw::gateway

// ShareKeeper: makes each tenant's concurrency and rate limits hold over the whole cluster. Each
// node holds a share of every limited tenant's limits as /thaw/shares/TENANT/NODE in etcd, under
// a lease of its own (a dead node's shares go with it), valued {"c","r","dc","dr"}: its
// concurrency and rate shares and its demand for each. Every turn (a few times a second) it
// reads the tenant's shares, computes its step (dispatch/share_split.h), lowers its local cap
// before it publishes a lower share, and raises its share only in an etcd transaction that
// fails if any share of that tenant changed since it read them; the Dispatcher admits against
// the local cap. So the published shares never add up to more than the limit, and each node's
// calls in flight never exceed its published share, even while nodes see different snapshots.
// A node that cannot renew its lease admits nothing under a limit (its shares may be gone).
// Owned by server::RunServe; its loop runs on one coroutine; Leave from the same executor.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "auth/keys.h"
#include "cluster/etcd_client.h"
#include "common/status.h"
#include "dispatch/dispatcher.h"

namespace thaw::cluster {

struct ShareKeeperOptions {
  std::string node_name;
  int64_t lease_s = 5;
  int64_t period_ms = 200;  // how often shares are rebalanced
};

// One node's published share record. Pure helpers, for tests.
struct ShareRecord {
  int64_t concurrency = 0;
  int64_t rate = 0;
  int64_t concurrency_demand = 0;
  int64_t rate_demand = 0;
  bool operator==(const ShareRecord&) const = default;
};
std::string ShareRecordJson(const ShareRecord& r);
StatusOr<ShareRecord> ParseShareRecord(const std::string& text);

class ShareKeeper {
 public:
  // `tenants` lists the tenants and their limits (the key store); it runs on the loop.
  ShareKeeper(EtcdClient etcd, ShareKeeperOptions options, dispatch::Dispatcher* dispatcher,
              std::function<std::vector<auth::Tenant>()> tenants);

  void Start(boost::asio::any_io_executor executor);
  // Stops the loop and revokes the lease: the others may take this node's shares at once, so
  // call it once this node's calls have finished.
  boost::asio::awaitable<void> Leave();

  static constexpr const char* kSharesPrefix = "/thaw/shares/";

 private:
  struct Published {
    ShareRecord record;
    int64_t at_us = 0;  // when it was written (monotonic)
  };
  boost::asio::awaitable<void> Run();
  boost::asio::awaitable<Status> Turn(int64_t now_us);
  boost::asio::awaitable<Status> Renew(int64_t now_us);
  // Every share this node held is gone (or may be): admit nothing under a limit.
  void DropAll();

  EtcdClient etcd_;
  const ShareKeeperOptions options_;
  dispatch::Dispatcher* const dispatcher_;
  const std::function<std::vector<auth::Tenant>()> tenants_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> lease_{0};
  // Loop state (the loop's coroutine only).
  int64_t last_keepalive_us_ = 0;
  int64_t last_turn_us_ = 0;
  std::string last_error_;
  std::map<std::string, Published> published_;  // by tenant: what is in etcd under lease_
  // By tenant: the demands (concurrency, rate per second) of the last second's turns.
  std::map<std::string, std::deque<std::pair<int64_t, int64_t>>> window_;
};

}  // namespace thaw::cluster

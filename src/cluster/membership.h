// Membership: this node's place in a cluster of thaw nodes, kept in etcd. It registers
// /thaw/nodes/NAME under a lease (kept alive on a timer; when the node dies the lease expires
// and etcd removes the key) and republishes the record when it changes (at most once per
// second). It keeps a local snapshot of the members and of the drain marks (/thaw/drain/NAME,
// kept without a lease so a drain outlives a restart) by reading them once and then following
// an etcd watch on them, so a node that joins, leaves or changes is seen as soon as etcd tells
// it; while the watch is broken (etcd restarted, unreachable, compacted past it) it reads them
// every poll instead, and opens a new watch a moment later.
// Owned by server::RunServe; its two loops (lease and record; members) and Leave run on the
// executor given to Start, which must be one thread (or strand). Snapshot, draining and the
// etcd calls may be used from any thread.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/etcd_client.h"
#include "cluster/node_record.h"
#include "common/status.h"
#include "dispatch/placement.h"

namespace thaw::cluster {

struct MembershipOptions {
  std::string node_name;
  std::string advertise;
  int64_t lease_s = 5;
  // How often the lease and the record are looked after, and how often the members are read
  // while no watch is open (the fallback).
  int64_t poll_ms = 500;
  // How long after a watch broke or failed to open a new one is tried (polling meanwhile).
  int64_t rewatch_ms = 2000;
};

struct Member {
  NodeRecord record;
  int64_t lease = 0;
  bool self = false;
};

class Membership {
 public:
  // `describe` fills this node's capacity, load and warm sets (name, advertise and draining are
  // set here); it runs on the loop's thread. `on_drain` is told when this node's drain mark
  // appears or goes.
  Membership(EtcdClient etcd, MembershipOptions options, std::function<NodeRecord()> describe,
             std::function<void(bool)> on_drain);

  void Start(boost::asio::any_io_executor executor);
  // Stops the loop and revokes the lease, so the others see this node go at once.
  boost::asio::awaitable<void> Leave();

  std::vector<Member> Snapshot() const;
  dispatch::ClusterSnapshot ForPlacement() const;
  bool draining() const { return draining_.load(); }
  const std::string& name() const { return options_.node_name; }
  int64_t lease_s() const { return options_.lease_s; }
  EtcdClient& etcd() { return etcd_; }

  // Marks `node` draining (or not) in etcd. NotFound when it is not a member.
  boost::asio::awaitable<Status> SetDrain(const std::string& node, bool drain);

  static constexpr const char* kNodesPrefix = "/thaw/nodes/";
  static constexpr const char* kDrainPrefix = "/thaw/drain/";

 private:
  boost::asio::awaitable<void> Run();
  // One turn: lease and record. Errors are logged once per change of state.
  boost::asio::awaitable<Status> Turn(int64_t now_us);
  // The members loop: read, then watch; poll while the watch is broken.
  boost::asio::awaitable<void> Follow();
  // Reads the members and drain marks afresh into keys_; the revision they were read at.
  boost::asio::awaitable<StatusOr<int64_t>> ReadAll();
  // Applies `watch`'s changes until it breaks or is closed: why it ended.
  boost::asio::awaitable<Status> Apply(EtcdWatch& watch);
  // keys_ into the snapshot, and this node's drain mark into draining_ (telling on_drain_).
  void Publish();

  EtcdClient etcd_;
  const MembershipOptions options_;
  const std::function<NodeRecord()> describe_;
  const std::function<void(bool)> on_drain_;
  const int64_t started_us_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopping_{false};
  // Loop state (the loop's coroutine only).
  std::atomic<int64_t> lease_{0};  // also read by Leave
  int64_t last_keepalive_us_ = 0;
  int64_t last_put_us_ = 0;
  std::string published_;  // the record last put under the current lease
  std::string last_error_;
  // Members loop state (its coroutine only; watch_ also Leave's and Run's, on the same thread).
  std::map<std::string, KeyValue> keys_;  // /thaw/drain/... and /thaw/nodes/... by key
  std::shared_ptr<EtcdWatch> watch_;      // the open watch, or null
  mutable std::mutex mu_;
  std::vector<Member> members_;  // guarded by mu_
};

}  // namespace thaw::cluster

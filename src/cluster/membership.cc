#include "cluster/membership.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <set>

#include "common/clock.h"

namespace thaw::cluster {
namespace {

namespace asio = boost::asio;

constexpr int64_t kRepublishMinUs = 1'000'000;  // a changed record is put at most once a second

// The keys the snapshot follows: the drain marks and the members, one range that holds both
// ("/thaw/drain/" < "/thaw/nodes/", and nothing else of thaw's sorts between them), so one
// watch sees them and the busy /thaw/shares/ stays out of it. Keys are filtered by prefix too.
const std::string kFollowFrom = Membership::kDrainPrefix;
const std::string kFollowEnd = PrefixEnd(Membership::kNodesPrefix);

bool Followed(const std::string& key) {
  return key.starts_with(Membership::kDrainPrefix) || key.starts_with(Membership::kNodesPrefix);
}

asio::awaitable<void> Sleep(asio::steady_timer& timer, int64_t ms) {
  timer.expires_after(std::chrono::milliseconds(ms));
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

Membership::Membership(EtcdClient etcd, MembershipOptions options,
                       std::function<NodeRecord()> describe, std::function<void(bool)> on_drain)
    : etcd_(std::move(etcd)),
      options_(std::move(options)),
      describe_(std::move(describe)),
      on_drain_(std::move(on_drain)),
      started_us_(WallNowMicros()) {}

void Membership::Start(asio::any_io_executor executor) {
  asio::co_spawn(executor, Run(), asio::detached);
  asio::co_spawn(executor, Follow(), asio::detached);
}

asio::awaitable<void> Membership::Leave() {
  stopping_ = true;
  if (watch_ != nullptr) watch_->Close();
  if (const int64_t lease = lease_.load(); lease != 0) {
    if (Status st = co_await etcd_.Revoke(lease); !st.ok()) {
      spdlog::warn("cluster: failed to leave: {}", st.message());
    }
  }
}

asio::awaitable<void> Membership::Run() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopping_) {
    Status st = co_await Turn(WallNowMicros());
    if (!st.ok() && st.message() != last_error_) {
      spdlog::warn("cluster: {}", st.message());
    } else if (st.ok() && !last_error_.empty()) {
      spdlog::info("cluster: etcd reachable again");
    }
    // etcd failed this loop: the watch may be as stale (a partition leaves a quiet stream
    // open). Closing it makes the members loop read afresh and poll until it can watch again.
    if (!st.ok() && watch_ != nullptr) watch_->Close();
    last_error_ = st.ok() ? "" : st.message();
    co_await Sleep(timer, options_.poll_ms);
  }
}

asio::awaitable<void> Membership::Follow() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  int64_t watch_after_us = 0;  // no new watch before then (one broke or failed to open)
  std::string last_error;
  while (!stopping_) {
    auto revision = co_await ReadAll();
    Status st = revision.ok() ? Status::Ok() : revision.status();
    if (st.ok() && WallNowMicros() >= watch_after_us && !stopping_) {
      auto opened = co_await etcd_.Watch(kFollowFrom, kFollowEnd, *revision + 1);
      if (opened.ok()) {
        watch_ = std::move(*opened);
        spdlog::info("cluster: following the members through an etcd watch");
        last_error.clear();
        st = co_await Apply(*watch_);
        watch_.reset();
        if (stopping_) break;
      } else {
        st = opened.status();
      }
      watch_after_us = WallNowMicros() + options_.rewatch_ms * 1000;
    }
    if (!st.ok() && st.message() != last_error) {
      spdlog::warn("cluster: {}: reading the members every {} ms until a watch opens", st.message(),
                   options_.poll_ms);
    }
    if (!st.ok()) last_error = st.message();
    co_await Sleep(timer, options_.poll_ms);
  }
}

asio::awaitable<StatusOr<int64_t>> Membership::ReadAll() {
  auto read = co_await etcd_.RangeBetween(kFollowFrom, kFollowEnd);
  if (!read.ok()) co_return read.status();
  keys_.clear();
  for (auto& kv : read->kvs) {
    if (Followed(kv.key)) keys_[kv.key] = std::move(kv);
  }
  Publish();
  co_return read->revision;
}

asio::awaitable<Status> Membership::Apply(EtcdWatch& watch) {
  while (!stopping_) {
    auto events = co_await watch.Next();
    if (!events.ok()) co_return events.status();
    for (auto& e : *events) {
      if (!Followed(e.kv.key)) continue;
      if (e.deleted) {
        keys_.erase(e.kv.key);
      } else {
        keys_[e.kv.key] = std::move(e.kv);
      }
    }
    Publish();
  }
  co_return Status::Ok();
}

asio::awaitable<Status> Membership::Turn(int64_t now_us) {
  const std::string key = kNodesPrefix + options_.node_name;
  if (lease_ != 0 && now_us - last_keepalive_us_ >= options_.lease_s * 1'000'000 / 3) {
    Status st = co_await etcd_.KeepAlive(lease_);
    if (st.code() == StatusCode::kNotFound) {
      spdlog::warn("cluster: {}: joining again", st.message());
      lease_ = 0;
    } else if (!st.ok()) {
      co_return st;
    } else {
      last_keepalive_us_ = now_us;
    }
  }
  if (stopping_) co_return Status::Ok();  // Leave revoked the lease: do not join again
  if (lease_ == 0) {
    auto granted = co_await etcd_.GrantLease(options_.lease_s);
    if (!granted.ok()) co_return granted.status();
    lease_ = *granted;
    last_keepalive_us_ = now_us;
    published_.clear();
    spdlog::info("cluster: node {} joins {} (lease {}, {} s)", options_.node_name, etcd_.url(),
                 lease_.load(), options_.lease_s);
  }
  NodeRecord record = describe_();
  record.name = options_.node_name;
  record.advertise = options_.advertise;
  record.draining = draining_.load();
  record.started_us = started_us_;
  const std::string text = NodeRecordJson(record);
  if (text != published_ && (published_.empty() || now_us - last_put_us_ >= kRepublishMinUs)) {
    Status st = co_await etcd_.Put(key, text, lease_);
    if (!st.ok()) co_return st;
    published_ = text;
    last_put_us_ = now_us;
  }

  co_return Status::Ok();
}

void Membership::Publish() {
  std::set<std::string> drained;
  const std::string drain_prefix = kDrainPrefix;
  const std::string nodes_prefix = kNodesPrefix;
  for (const auto& [key, _] : keys_) {
    if (key.starts_with(drain_prefix)) drained.insert(key.substr(drain_prefix.size()));
  }
  std::vector<Member> members;
  for (const auto& [key, kv] : keys_) {
    if (!key.starts_with(nodes_prefix)) continue;
    auto parsed = ParseNodeRecord(kv.value);
    if (!parsed.ok()) {
      spdlog::debug("cluster: skipping {}: {}", key, parsed.status().message());
      continue;
    }
    Member m{std::move(*parsed), kv.lease, false};
    m.self = m.record.name == options_.node_name;
    if (drained.count(m.record.name)) m.record.draining = true;
    members.push_back(std::move(m));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    members_ = std::move(members);
  }
  const bool drain = drained.count(options_.node_name) > 0;
  if (drain != draining_.exchange(drain)) {
    spdlog::info("cluster: node {} {}", options_.node_name,
                 drain ? "is draining: no new instances start here" : "is no longer draining");
    if (on_drain_) on_drain_(drain);
  }
}

std::vector<Member> Membership::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_;
}

dispatch::ClusterSnapshot Membership::ForPlacement() const {
  dispatch::ClusterSnapshot out;
  for (const auto& m : Snapshot()) out.nodes.push_back(ViewOf(m.record));
  return out;
}

asio::awaitable<Status> Membership::SetDrain(const std::string& node, bool drain) {
  bool known = false;
  for (const auto& m : Snapshot()) known = known || m.record.name == node;
  if (!known) co_return NotFound("no node " + node + " in the cluster");
  const std::string key = kDrainPrefix + node;
  // Two statements, not a conditional of two co_awaits (gcc 12 miscompiles that).
  if (drain) co_return co_await etcd_.Put(key, "1");
  co_return co_await etcd_.Delete(key);
}

}  // namespace thaw::cluster

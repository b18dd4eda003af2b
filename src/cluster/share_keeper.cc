#include "cluster/share_keeper.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <set>

#include "common/clock.h"
#include "common/json_text.h"
#include "dispatch/share_split.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::cluster {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr int64_t kSecondUs = 1'000'000;
// A changed demand alone is published at most this often: each write fails the others' raises.
constexpr int64_t kDemandRepublishUs = kSecondUs;

int64_t Field(const json::object& o, const char* name) {
  const json::value* v = o.if_contains(name);
  return v != nullptr && v->is_int64() ? v->as_int64() : 0;
}

}  // namespace

std::string ShareRecordJson(const ShareRecord& r) {
  return JsonText(json::object{
      {"c", r.concurrency}, {"r", r.rate}, {"dc", r.concurrency_demand}, {"dr", r.rate_demand}});
}

StatusOr<ShareRecord> ParseShareRecord(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return InvalidArgument("share record is not a JSON object: " + text);
  const json::object& o = v.as_object();
  return ShareRecord{Field(o, "c"), Field(o, "r"), Field(o, "dc"), Field(o, "dr")};
}

ShareKeeper::ShareKeeper(EtcdClient etcd, ShareKeeperOptions options,
                         dispatch::Dispatcher* dispatcher,
                         std::function<std::vector<auth::Tenant>()> tenants)
    : etcd_(std::move(etcd)),
      options_(std::move(options)),
      dispatcher_(dispatcher),
      tenants_(std::move(tenants)) {
  dispatcher_->EnableShares();
}

void ShareKeeper::Start(asio::any_io_executor executor) {
  asio::co_spawn(executor, Run(), asio::detached);
}

asio::awaitable<void> ShareKeeper::Leave() {
  stopping_ = true;
  // The lease stays set: a turn still running writes under the revoked lease and fails, rather
  // than writing a key without a lease that would outlive this node.
  if (const int64_t lease = lease_.load(); lease != 0) {
    if (Status st = co_await etcd_.Revoke(lease); !st.ok()) {
      spdlog::warn("limits: failed to give back this node's shares: {}", st.message());
    }
  }
}

void ShareKeeper::DropAll() {
  for (const auto& [tenant, _] : published_) dispatcher_->SetShare(tenant, {});
  published_.clear();
}

asio::awaitable<void> ShareKeeper::Run() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopping_) {
    Status st = co_await Turn(MonoNowMicros());
    if (!st.ok() && st.message() != last_error_) {
      spdlog::warn("limits: {}", st.message());
    } else if (st.ok() && !last_error_.empty()) {
      spdlog::info("limits: etcd reachable again");
    }
    last_error_ = st.ok() ? "" : st.message();
    timer.expires_after(std::chrono::milliseconds(options_.period_ms));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<Status> ShareKeeper::Renew(int64_t now_us) {
  const int64_t lease_us = options_.lease_s * kSecondUs;
  if (lease_ != 0 && now_us - last_keepalive_us_ >= lease_us / 3) {
    Status st = co_await etcd_.KeepAlive(lease_);
    if (st.code() == StatusCode::kNotFound) {
      spdlog::warn("limits: {}: this node's shares are gone; taking new ones", st.message());
      DropAll();
      lease_ = 0;
    } else if (!st.ok()) {
      // The lease may lapse before etcd answers again: hold nothing that may be gone.
      if (now_us - last_keepalive_us_ >= lease_us * 2 / 3) DropAll();
      co_return st;
    } else {
      last_keepalive_us_ = now_us;
    }
  }
  if (stopping_ || lease_ != 0) co_return Status::Ok();
  auto granted = co_await etcd_.GrantLease(options_.lease_s);
  if (!granted.ok()) co_return granted.status();
  lease_ = *granted;
  last_keepalive_us_ = now_us;
  published_.clear();
  co_return Status::Ok();
}

asio::awaitable<Status> ShareKeeper::Turn(int64_t now_us) {
  if (Status st = co_await Renew(now_us); !st.ok()) co_return st;
  if (stopping_) co_return Status::Ok();
  const int64_t elapsed_us =
      last_turn_us_ == 0 ? options_.period_ms * 1000 : now_us - last_turn_us_;
  last_turn_us_ = now_us;
  auto demand = dispatcher_->TakeDemand();
  auto read = co_await etcd_.RangePrefixAt(kSharesPrefix);
  if (!read.ok()) co_return read.status();
  // tenant -> node -> record
  std::map<std::string, std::map<std::string, ShareRecord>> shares;
  const std::string prefix = kSharesPrefix;
  for (const auto& kv : read->kvs) {
    const std::string rest = kv.key.substr(prefix.size());
    const size_t slash = rest.find('/');
    if (slash == std::string::npos) continue;
    auto record = ParseShareRecord(kv.value);
    if (!record.ok()) continue;
    shares[rest.substr(0, slash)][rest.substr(slash + 1)] = *record;
  }
  const size_t window_turns =
      static_cast<size_t>(std::max<int64_t>(1, 1000 / std::max<int64_t>(1, options_.period_ms)));
  std::set<std::string> limited;
  for (const auto& tenant : tenants_()) {
    const auto& limits = tenant.limits;
    if (!limits.concurrency && !limits.rate_per_second) continue;
    limited.insert(tenant.name);
    const std::string key = prefix + tenant.name + "/" + options_.node_name;
    // This node's demand: the most it ran or was refused at once, and its arrivals per second,
    // each the largest of the last second's turns.
    const dispatch::Dispatcher::Demand d = demand[tenant.name];
    auto& window = window_[tenant.name];
    window.emplace_back(d.peak_inflight + d.refused_concurrency,
                        d.arrivals * kSecondUs / std::max<int64_t>(1, elapsed_us));
    while (window.size() > window_turns) window.pop_front();
    ShareRecord mine;
    for (const auto& [c, r] : window) {
      mine.concurrency_demand = std::max(mine.concurrency_demand, c);
      mine.rate_demand = std::max(mine.rate_demand, r);
    }
    mine.concurrency_demand = std::min(mine.concurrency_demand, limits.concurrency.value_or(0));
    mine.rate_demand = std::min(mine.rate_demand, limits.rate_per_second.value_or(0));
    std::vector<dispatch::ShareView> cviews, rviews;
    size_t self = 0;
    auto& nodes = shares[tenant.name];
    // This node's share as the others see it: what etcd holds under its current lease.
    const auto own = nodes.find(options_.node_name);
    const bool present = own != nodes.end() && published_.count(tenant.name) > 0;
    ShareRecord held = present ? own->second : ShareRecord{};
    nodes[options_.node_name] = held;
    for (const auto& [node, r] : nodes) {
      if (node == options_.node_name) {
        self = cviews.size();
        cviews.push_back({node, mine.concurrency_demand, held.concurrency});
        rviews.push_back({node, mine.rate_demand, held.rate});
      } else {
        cviews.push_back({node, r.concurrency_demand, r.concurrency});
        rviews.push_back({node, r.rate_demand, r.rate});
      }
    }
    dispatch::ShareStep cstep, rstep;
    if (limits.concurrency)
      cstep = dispatch::NextShare(*limits.concurrency, cviews, self, d.inflight);
    if (limits.rate_per_second)
      rstep = dispatch::NextShare(*limits.rate_per_second, rviews, self, 0);
    // Lower first: no call past the lower cap is admitted before the lower share is published.
    dispatcher_->SetShare(tenant.name, {cstep.cap, rstep.cap});
    mine.concurrency = cstep.publish;
    mine.rate = rstep.publish;
    if (cstep.raise || rstep.raise) {
      auto written = co_await etcd_.PutIfUnchangedSince(prefix + tenant.name + "/", read->revision,
                                                        key, ShareRecordJson(mine), lease_);
      if (!written.ok()) co_return written.status();
      if (!*written) continue;  // another node wrote first: read again next turn
      published_[tenant.name] = Published{mine, now_us};
      dispatcher_->SetShare(tenant.name, {cstep.raise ? cstep.publish : cstep.cap,
                                          rstep.raise ? rstep.publish : rstep.cap});
      continue;
    }
    auto was = published_.find(tenant.name);
    const bool changed = was == published_.end() ||
                         was->second.record.concurrency != mine.concurrency ||
                         was->second.record.rate != mine.rate;
    const bool demand_moved = was != published_.end() && was->second.record != mine &&
                              now_us - was->second.at_us >= kDemandRepublishUs;
    if (!changed && !demand_moved) continue;
    Status put = co_await etcd_.Put(key, ShareRecordJson(mine), lease_);
    if (!put.ok()) co_return put;
    published_[tenant.name] = Published{mine, now_us};
  }
  // Tenants whose limits were removed: their shares are given back.
  for (auto it = published_.begin(); it != published_.end();) {
    if (limited.count(it->first)) {
      ++it;
      continue;
    }
    Status gone = co_await etcd_.Delete(prefix + it->first + "/" + options_.node_name);
    if (!gone.ok()) co_return gone;
    window_.erase(it->first);
    it = published_.erase(it);
  }
  co_return Status::Ok();
}

}  // namespace thaw::cluster

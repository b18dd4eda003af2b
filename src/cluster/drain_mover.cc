#include "cluster/drain_mover.h"

#include <spdlog/spdlog.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "dispatch/drain_moves.h"

namespace thaw::cluster {
namespace {

namespace asio = boost::asio;

struct Found {
  std::shared_ptr<const registry::Version> version;
  bool latest = false;
};

// "function:version" in this node's registry.
std::optional<Found> Find(const registry::Registry& registry, const std::string& key) {
  const auto colon = key.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  auto info = registry.Get(key.substr(0, colon));
  if (!info.ok() || info->versions.empty()) return std::nullopt;
  for (const auto& v : info->versions) {
    if (std::to_string(v->version) == key.substr(colon + 1)) {
      return Found{v, v == info->versions.back()};
    }
  }
  return std::nullopt;
}

}  // namespace

void DrainMover::Turn() {
  const std::string& self = membership_->name();
  const bool draining = membership_->draining();
  dispatch::DrainMoves moves = dispatch::PlanDrainMoves(
      self, draining, membership_->ForPlacement(),
      [this](const std::string& key) -> std::optional<dispatch::PlacementRequest> {
        auto found = Find(*registry_, key);
        if (!found) return std::nullopt;
        dispatch::PlacementRequest r;
        r.version = key;
        for (const auto& m : found->version->manifest.models) r.models.push_back(m.digest);
        r.memory_mb = found->version->manifest.memory_mb;
        return r;
      });
  std::set<std::string> adopting;
  for (const std::string& key : moves.adopt) {
    auto found = Find(*registry_, key);
    if (!found) continue;
    if (!adopted_.count(key)) {
      spdlog::info("cluster: {} is warm only on a draining node: starting an instance here", key);
    }
    adopting.insert(key);
    pools_->WarmOne(found->version, found->latest);
  }
  adopted_ = std::move(adopting);
  std::set<std::string> releasable, released;
  for (const std::string& key : moves.release) {
    releasable.insert(key);
    if (!releasable_.count(key)) continue;
    auto found = Find(*registry_, key);
    if (!found) continue;
    if (!released_.count(key)) {
      spdlog::info("cluster: {} is warm on another node: its idle instances here stop", key);
    }
    released.insert(key);
    pools_->StopIdle(found->version->function, found->version->version);
  }
  released_ = std::move(released);
  releasable_ = std::move(releasable);
}

asio::awaitable<void> DrainMover::Run(const bool& stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopping) {
    timer.expires_after(std::chrono::milliseconds(kPeriodMs));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping) break;
    Turn();
  }
}

}  // namespace thaw::cluster

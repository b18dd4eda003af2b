#include "gateway/scheduler.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <set>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/tenant.h"
#include "gateway/invoker.h"
#include "queue/job_store.h"
#include "registry/registry.h"

namespace thaw::gateway {

namespace asio = boost::asio;

Scheduler::Scheduler(registry::Registry* registry, Invoker* invoker, queue::JobStore* store,
                     std::string region)
    : registry_(registry), invoker_(invoker), store_(store), region_(std::move(region)) {}

Scheduler::~Scheduler() = default;

void Scheduler::Start(asio::any_io_executor executor) {
  executor_ = executor;
  asio::co_spawn(
      executor,
      [this]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (;;) {
          Turn(WallNowMicros());
          timer.expires_after(std::chrono::seconds(1));
          boost::system::error_code ec;
          co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;
        }
      },
      asio::detached);
}

std::optional<int64_t> Scheduler::NextRun(const std::string& function) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<int64_t> best;
  for (auto it = entries_.lower_bound({function, ""});
       it != entries_.end() && it->first.first == function; ++it) {
    if (it->second.next_us && (!best || *it->second.next_us < *best)) best = it->second.next_us;
  }
  return best;
}

void Scheduler::Turn(int64_t now_us) {
  std::vector<std::pair<std::string, Entry>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::pair<std::string, std::string>> live;
    for (const auto& f : registry_->List()) {
      if (f.versions.empty()) continue;
      const registry::Manifest& m = f.versions.back()->manifest;
      for (size_t i = 0; i < m.schedules.size(); ++i) {
        const auto key = std::make_pair(f.name, m.schedules[i]);
        live.insert(key);
        if (entries_.count(key)) {
          entries_[key].index = static_cast<int>(i);
          continue;
        }
        auto parsed = queue::ParseSchedule(m.schedules[i]);
        if (!parsed.ok()) continue;  // checked at deploy
        Entry e;
        e.schedule = std::move(*parsed);
        e.index = static_cast<int>(i);
        auto state = store_->ScheduleState(f.name, m.schedules[i]);
        int64_t last = 0;
        if (state.ok() && state->first > 0) {
          e.anchor_us = state->first;
          last = state->second;
        } else {
          // First seen now: it starts counting from here.
          e.anchor_us = now_us;
          if (Status st = store_->SetScheduleState(f.name, m.schedules[i], now_us, 0); !st.ok()) {
            spdlog::error("schedule {} of {}: {}", m.schedules[i], f.name, st.message());
          }
        }
        queue::StartPlan plan =
            queue::PlanStart(e.schedule, last, e.anchor_us, now_us, m.catch_up && first_turn_);
        e.next_us = plan.next_us;
        if (plan.fire_now) due.emplace_back(f.name, e);
        entries_.emplace(key, std::move(e));
      }
    }
    std::erase_if(entries_, [&](const auto& kv) { return !live.count(kv.first); });
    first_turn_ = false;
    for (auto& [key, e] : entries_) {
      if (!e.next_us || *e.next_us > now_us) continue;
      due.emplace_back(key.first, e);
      e.next_us = queue::NextFire(e.schedule, now_us, e.anchor_us);
    }
  }
  for (const auto& [function, e] : due) Fire(function, e, now_us);
}

void Scheduler::Fire(const std::string& function, const Entry& entry, int64_t fire_us) {
  if (Status st =
          store_->SetScheduleState(function, entry.schedule.expression, entry.anchor_us, fire_us);
      !st.ok()) {
    spdlog::error("schedule {} of {}: {}", entry.schedule.expression, function, st.message());
  }
  const std::string tenant(TenantOfFunction(function));
  const std::string account = AccountOf(tenant);
  const std::string rule = "arn:aws:events:" + region_ + ":" + account + ":rule/thaw-" +
                           std::string(BareFunctionName(function)) + "-" +
                           std::to_string(entry.index);
  InvokeRequest req;
  req.function = function;
  req.request_id = NewRequestId();
  req.payload = queue::ScheduledEventPayload(req.request_id, account, region_, rule, fire_us);
  // The enqueue is committed by the queue's writer (group commit): awaited off this thread.
  asio::co_spawn(
      executor_,
      [invoker = invoker_, executor = executor_, req = std::move(req),
       expression = entry.schedule.expression, function]() mutable -> asio::awaitable<void> {
        if (Status st = co_await invoker->Enqueue(std::move(req), executor); !st.ok()) {
          spdlog::warn("schedule {} of {}: not fired: {}", expression, function, st.message());
        }
      },
      asio::detached);
}

}  // namespace thaw::gateway

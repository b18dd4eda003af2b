// GET /v1/functions/{name}/stats: a function's time series for the console's charts (and any
// other client): per bucket the calls, errors, throttles, cold starts (and every start by kind:
// warm, fork, full, or whatever other kind the ledger holds), duration p50/p99 and
// average concurrency, aggregated in SQL over the ledger (Meter::Series), and the instances by
// state and calls in flight from the live per-minute ring (metrics::StatsRing).
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "common/clock.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "gateway/scope.h"
#include "meter/meter.h"
#include "metrics/stats_ring.h"
#include "registry/registry.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {

namespace json = boost::json;

namespace {

struct Ledger {
  std::vector<meter::SeriesBucket> buckets;
  meter::SeriesBucket total;
  std::vector<meter::StartKindCount> kinds;        // per bucket
  std::vector<meter::StartKindCount> kind_totals;  // over the whole window
  int64_t last_called_us = 0;
};

json::value Millis(int64_t us) { return static_cast<double>(us) / 1000.0; }

}  // namespace

asio::awaitable<void> Api::Stats(const auth::Caller& caller, const std::string& name,
                                 const std::string& query, Response& res) {
  if (auto info = deps_.registry->Get(name); !info.ok()) co_return StatusBody(res, info.status());
  auto range = metrics::ParseStatsRange(QueryParam(query, "window"), QueryParam(query, "step"),
                                        WallNowMicros());
  if (!range.ok()) co_return StatusBody(res, range.status());
  const metrics::StatsRange r = *range;
  const int64_t step_us = r.step_s * 1'000'000;
  // SQLite queries: off the event loop.
  auto ledger = co_await asio::co_spawn(
      blocking_,
      [&]() -> asio::awaitable<StatusOr<Ledger>> {
        if (deps_.meter == nullptr) {
          co_return Unavailable("metering is off on this server (metering: false)");
        }
        Ledger l;
        auto buckets = deps_.meter->Series(name, r.from_us, r.to_us, step_us);
        if (!buckets.ok()) co_return buckets.status();
        l.buckets = std::move(*buckets);
        auto total = deps_.meter->Series(name, r.from_us, r.to_us, r.to_us - r.from_us);
        if (!total.ok()) co_return total.status();
        if (!total->empty()) l.total = total->front();
        auto kinds = deps_.meter->StartKinds(name, r.from_us, r.to_us, step_us);
        if (!kinds.ok()) co_return kinds.status();
        l.kinds = std::move(*kinds);
        auto kind_totals = deps_.meter->StartKinds(name, r.from_us, r.to_us, r.to_us - r.from_us);
        if (!kind_totals.ok()) co_return kind_totals.status();
        l.kind_totals = std::move(*kind_totals);
        auto last = deps_.meter->LastCalled(name);
        if (!last.ok()) co_return last.status();
        l.last_called_us = *last;
        co_return l;
      },
      asio::use_awaitable);
  if (!ledger.ok()) co_return StatusBody(res, ledger.status());

  const int64_t n = r.buckets();
  json::array t, calls, errors, throttles, cold, p50, p99, concurrency;
  for (int64_t i = 0; i < n; ++i) {
    t.push_back((r.from_us + i * step_us) / 1'000'000);
    calls.push_back(0);
    errors.push_back(0);
    throttles.push_back(0);
    cold.push_back(0);
    p50.push_back(nullptr);
    p99.push_back(nullptr);
    concurrency.push_back(0.0);
  }
  for (const auto& b : ledger->buckets) {
    if (b.index < 0 || b.index >= n) continue;
    const auto i = static_cast<size_t>(b.index);
    calls[i] = b.calls;
    errors[i] = b.errors;
    throttles[i] = b.throttles;
    cold[i] = b.cold_starts;
    p50[i] = Millis(b.p50_us);
    p99[i] = Millis(b.p99_us);
    concurrency[i] = static_cast<double>(b.duration_us) / static_cast<double>(step_us);
  }

  // Starts by kind: the three thaw makes today are always there (zeros), any other the ledger
  // holds is added as it comes.
  json::object starts, starts_total;
  for (const char* kind : {"warm", "fork", "full"}) {
    starts[kind] = json::array(static_cast<size_t>(n), json::value(0));
    starts_total[kind] = 0;
  }
  for (const auto& k : ledger->kinds) {
    if (k.index < 0 || k.index >= n) continue;
    if (!starts.contains(k.kind))
      starts[k.kind] = json::array(static_cast<size_t>(n), json::value(0));
    starts[k.kind].as_array()[static_cast<size_t>(k.index)] = k.count;
  }
  for (const auto& k : ledger->kind_totals) {
    if (!starts.contains(k.kind))
      starts[k.kind] = json::array(static_cast<size_t>(n), json::value(0));
    starts_total[k.kind] = k.count;
  }

  // Live figures: the most seen in any minute of each bucket; null where none was sampled
  // (before the server started, or in the future).
  const int64_t per_bucket = r.step_s / 60;
  const auto slots = deps_.live != nullptr
                         ? deps_.live->Range(name, r.from_us / 60'000'000, n * per_bucket)
                         : std::vector<metrics::LiveSlot>(static_cast<size_t>(n * per_bucket));
  json::array ready, busy, starting, stopping, inflight, queued;
  for (int64_t i = 0; i < n; ++i) {
    bool seen = false;
    metrics::LiveSample m;
    for (int64_t k = 0; k < per_bucket; ++k) {
      const auto& slot = slots[static_cast<size_t>(i * per_bucket + k)];
      if (slot.minute < 0) continue;
      seen = true;
      m.ready = std::max(m.ready, slot.max.ready);
      m.busy = std::max(m.busy, slot.max.busy);
      m.starting = std::max(m.starting, slot.max.starting);
      m.stopping = std::max(m.stopping, slot.max.stopping);
      m.inflight = std::max(m.inflight, slot.max.inflight);
      m.queued = std::max(m.queued, slot.max.queued);
    }
    auto put = [seen](json::array& a, int64_t v) {
      a.push_back(seen ? json::value(v) : json::value(nullptr));
    };
    put(ready, m.ready);
    put(busy, m.busy);
    put(starting, m.starting);
    put(stopping, m.stopping);
    put(inflight, m.inflight);
    put(queued, m.queued);
  }

  const meter::SeriesBucket& total = ledger->total;
  json::object totals{
      {"calls", total.calls},
      {"errors", total.errors},
      {"throttles", total.throttles},
      {"cold_starts", total.cold_starts},
      {"starts_by_kind", std::move(starts_total)},
      {"cold_start_percent", total.calls > 0 ? 100.0 * static_cast<double>(total.cold_starts) /
                                                   static_cast<double>(total.calls)
                                             : 0.0},
      {"p50_ms", total.calls > 0 ? Millis(total.p50_us) : json::value(nullptr)},
      {"p99_ms", total.calls > 0 ? Millis(total.p99_us) : json::value(nullptr)},
      {"last_called", ledger->last_called_us > 0 ? json::value(Iso8601(ledger->last_called_us))
                                                 : json::value(nullptr)}};
  JsonBody(res, http::status::ok,
           json::object{{"function", ShownName(caller, name)},
                        {"window_s", r.window_s},
                        {"step_s", r.step_s},
                        {"from", Iso8601(r.from_us)},
                        {"to", Iso8601(r.to_us)},
                        {"t", std::move(t)},
                        {"calls", std::move(calls)},
                        {"errors", std::move(errors)},
                        {"throttles", std::move(throttles)},
                        {"cold_starts", std::move(cold)},
                        {"starts", std::move(starts)},
                        {"p50_ms", std::move(p50)},
                        {"p99_ms", std::move(p99)},
                        {"concurrency_avg", std::move(concurrency)},
                        {"instances", json::object{{"ready", std::move(ready)},
                                                   {"busy", std::move(busy)},
                                                   {"starting", std::move(starting)},
                                                   {"stopping", std::move(stopping)}}},
                        {"inflight_max", std::move(inflight)},
                        {"queued_max", std::move(queued)},
                        {"totals", std::move(totals)}});
}

}  // namespace thaw::gateway

// The native API's usage and advice routes (GET /v1/usage, GET /v1/advice): the meter's totals
// for a window, summed in SQL (meter::Meter::Totals, over the shared ledger of every node) and
// priced in C++ from the integer sums (meter/cost.h, meter/advisor.h).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <ctime>
#include <map>

#include "common/clock.h"
#include "common/tenant.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "gateway/scope.h"
#include "meter/advisor.h"
#include "meter/cost.h"
#include "meter/meter.h"
#include "registry/registry.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {

namespace json = boost::json;

namespace {

// Accepts unix seconds or YYYY-MM-DD (UTC).
bool ParseTime(const std::string& text, int64_t& out_us) {
  if (text.empty()) return false;
  tm t{};
  if (strptime(text.c_str(), "%Y-%m-%d", &t) != nullptr && text.size() == 10) {
    out_us = static_cast<int64_t>(timegm(&t)) * 1'000'000;
    return true;
  }
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || v < 0) return false;
  out_us = v * 1'000'000;
  return true;
}

json::object PricesJson(const meter::PriceSheet& p) {
  return json::object{{"request_pico", p.request_pico},
                      {"gb_second_pico", p.gb_second_pico},
                      {"cpu_second_pico", p.cpu_second_pico},
                      {"peak_gb_second_pico", p.peak_gb_second_pico},
                      {"instance_hour_micro", p.instance_hour_micro},
                      {"gpu_second_pico", p.gpu_second_pico},
                      {"prompt_token_pico", p.prompt_token_pico},
                      {"completion_token_pico", p.completion_token_pico},
                      {"init_gb_second_pico", p.init_gb_second_pico}};
}

json::object CostJson(int64_t micro) {
  return json::object{{"micro", micro}, {"usd", meter::FormatDollars(micro)}};
}

// One usage row: the original per-function fields plus statuses, percentiles and both costs.
json::object UsageJson(const meter::Sums& s, int64_t p50_us, int64_t p99_us,
                       const meter::PriceSheet& prices) {
  const double n = s.invocations > 0 ? static_cast<double>(s.invocations) : 1.0;
  return json::object{{"invocations", s.invocations},
                      {"errors", s.error + s.timeout + s.crash},
                      {"throttles", s.throttled},
                      {"init_failures", s.init_failures},
                      {"cold_starts", s.cold_starts},
                      {"cold_starts_by_kind",
                       json::object{{"fork", s.fork_starts},
                                    {"restore", s.restore_starts},
                                    {"full", s.cold_starts - s.fork_starts - s.restore_starts}}},
                      {"template_inits", s.template_inits},
                      {"init_gb_s", static_cast<double>(s.init_mb_ms) / 1024.0 / 1000.0},
                      {"billed_ms", s.billed_ms},
                      {"gb_seconds", static_cast<double>(s.billed_mb_ms) / 1024.0 / 1000.0},
                      {"cpu_seconds", static_cast<double>(s.cpu_us) / 1e6},
                      {"gpu_seconds", static_cast<double>(s.gpu_us) / 1e6},
                      {"gpu_idle_seconds", static_cast<double>(s.gpu_idle_us) / 1e6},
                      {"peak_gb_seconds", static_cast<double>(s.peak_mb_us) / 1024.0 / 1e6},
                      {"avg_duration_ms", static_cast<double>(s.duration_us) / n / 1000.0},
                      {"p50_duration_ms", static_cast<double>(p50_us) / 1000.0},
                      {"p99_duration_ms", static_cast<double>(p99_us) / 1000.0},
                      {"cold_start_percent", 100.0 * static_cast<double>(s.cold_starts) / n},
                      {"prompt_tokens", s.prompt_tokens},
                      {"completion_tokens", s.completion_tokens},
                      {"batched_invocations", s.batched_calls},
                      {"mean_batch_size", meter::MeanBatchSize(s)},
                      {"by_status", json::object{{"success", s.success},
                                                 {"error", s.error},
                                                 {"timeout", s.timeout},
                                                 {"crash", s.crash},
                                                 {"throttled", s.throttled}}},
                      {"billed_mb_ms", s.billed_mb_ms},
                      {"cpu_us", s.cpu_us},
                      {"peak_mb_us", s.peak_mb_us},
                      {"cost_lambda", CostJson(meter::LambdaCostMicro(s, prices))},
                      {"cost_actual", CostJson(meter::ActualCostMicro(s, prices))}};
}

void BadParam(Response& res, const std::string& message) {
  ErrorBody(res, http::status::bad_request, "InvalidParameterValueException", message);
}

}  // namespace

asio::awaitable<void> Api::Usage(const auth::Caller& caller, const std::string& query,
                                 Response& res) {
  int64_t from = 0, to = WallNowMicros() + 1;
  std::string f = QueryParam(query, "from"), t = QueryParam(query, "to");
  if (!f.empty() && !ParseTime(f, from)) {
    co_return BadParam(res, "from: expected unix seconds or YYYY-MM-DD, got '" + f + "'");
  }
  if (!t.empty() && !ParseTime(t, to)) {
    co_return BadParam(res, "to: expected unix seconds or YYYY-MM-DD, got '" + t + "'");
  }
  std::string group_by = QueryParam(query, "group_by");
  if (group_by.empty()) group_by = "function";
  if (group_by != "function" && group_by != "day" && group_by != "tenant") {
    co_return BadParam(res, "group_by: expected function, tenant or day, got '" + group_by + "'");
  }
  std::string function = QueryParam(query, "function");
  if (!function.empty()) {
    auto scoped = ScopedName(caller, function);
    if (!scoped.ok()) co_return StatusBody(res, scoped.status());
    function = std::move(*scoped);
  }
  // A tenant key sees its own tenant's usage only; an admin any tenant's, or all.
  std::string tenant = QueryParam(query, "tenant");
  if (!caller.admin()) {
    if (!tenant.empty() && tenant != caller.tenant) {
      co_return StatusBody(res, NotFound("tenant not found: " + tenant));
    }
    tenant = caller.tenant;
  } else if (!tenant.empty()) {
    if (auto known = deps_.keys->GetTenant(tenant); !known.ok()) {
      co_return StatusBody(res, known.status());
    }
  }
  const bool by_day = group_by == "day";
  const bool by_tenant = group_by == "tenant";
  auto groups = co_await FetchTotals(
      by_day ? meter::GroupBy::kDay
             : (by_tenant ? meter::GroupBy::kTenant : meter::GroupBy::kFunction),
      function, tenant, from, to);
  if (!groups.ok()) co_return StatusBody(res, groups.status());
  // The total is priced from its own sums, not by adding rounded group costs; its percentiles
  // are over every invocation, so it is a query of its own.
  auto all = co_await FetchTotals(meter::GroupBy::kAll, function, tenant, from, to);
  if (!all.ok()) co_return StatusBody(res, all.status());
  const meter::PriceSheet prices = server::PriceSheetFrom(*deps_.config);
  json::array out;
  for (const auto& g : *groups) {
    json::object o{
        {by_day ? "day" : group_by, by_tenant || by_day ? g.key : ShownName(caller, g.key)}};
    for (auto& kv : UsageJson(g.sums, g.p50_duration_us, g.p99_duration_us, prices)) {
      o.emplace(kv.key(), kv.value());
    }
    out.push_back(std::move(o));
  }
  const meter::Group total = all->empty() ? meter::Group{} : all->front();
  JsonBody(res, http::status::ok,
           json::object{{"from", Iso8601(from)},
                        {"to", Iso8601(to)},
                        {"group_by", group_by},
                        {by_day ? "days" : (by_tenant ? "tenants" : "functions"), std::move(out)},
                        {"total", UsageJson(total.sums, total.p50_duration_us,
                                            total.p99_duration_us, prices)},
                        {"prices", PricesJson(prices)}});
}

asio::awaitable<void> Api::Advice(const auth::Caller& caller, const std::string& query,
                                  Response& res) {
  int64_t days = 7;
  if (std::string d = QueryParam(query, "days"); !d.empty()) {
    char* end = nullptr;
    days = std::strtoll(d.c_str(), &end, 10);
    if (*end != '\0' || days < 1 || days > 366) {
      co_return BadParam(res, "days: expected an integer between 1 and 366, got '" + d + "'");
    }
  }
  std::string function = QueryParam(query, "function");
  if (!function.empty()) {
    auto scoped = ScopedName(caller, function);
    if (!scoped.ok()) co_return StatusBody(res, scoped.status());
    function = std::move(*scoped);
  }
  const int64_t to = WallNowMicros() + 1;
  const int64_t window_us = days * 86'400'000'000;
  const int64_t from = to - window_us;
  auto groups = co_await FetchTotals(meter::GroupBy::kFunction, function, "", from, to);
  if (!groups.ok()) co_return StatusBody(res, groups.status());
  auto busiest = co_await asio::co_spawn(
      blocking_,
      [&]() -> asio::awaitable<StatusOr<std::map<std::string, int64_t>>> {
        co_return deps_.meter->BusiestHours(function, from, to);
      },
      asio::use_awaitable);
  if (!busiest.ok()) co_return StatusBody(res, busiest.status());
  // Every deployed function is advised on, with or without traffic.
  std::map<std::string, meter::Sums> by_function;
  std::map<std::string, int64_t> memory_mb, gpu_count;
  for (const auto& f : deps_.registry->List()) {
    if ((!function.empty() && f.name != function) || !Visible(caller, f.name)) continue;
    by_function[f.name];
    memory_mb[f.name] = f.versions.back()->manifest.memory_mb;
    gpu_count[f.name] = f.versions.back()->manifest.gpu.count;
  }
  for (const auto& g : *groups) {
    if (!Visible(caller, g.key)) continue;
    memory_mb[g.key] = std::max(memory_mb[g.key], g.max_memory_mb);
    by_function[g.key] = g.sums;
  }
  if (!function.empty() && by_function.empty()) {
    co_return StatusBody(res, NotFound("Function not found: " + function));
  }
  const meter::PriceSheet prices = server::PriceSheetFrom(*deps_.config);
  json::array out;
  for (const auto& [name, sums] : by_function) {
    meter::AdviceInput in;
    in.sums = sums;
    in.window_us = window_us;
    in.memory_mb = memory_mb[name];
    in.gpu_count = gpu_count[name];
    auto busy = busiest->find(name);
    in.busiest_hour_busy_us = busy == busiest->end() ? 0 : busy->second;
    meter::Advice a = meter::Advise(in, prices);
    out.push_back(json::object{{"function", ShownName(caller, name)},
                               {"recommendation", meter::RecommendationName(a.recommendation)},
                               {"advice", a.text},
                               {"reason", a.reason},
                               {"invocations", in.sums.invocations},
                               {"cold_start_percent", a.cold_start_percent},
                               {"mean_rps", a.mean_rps},
                               {"peak_concurrency", a.peak_concurrency},
                               {"instances", a.instances},
                               {"memory_mb", in.memory_mb},
                               {"gpu_count", in.gpu_count},
                               {"gpu_seconds", static_cast<double>(in.sums.gpu_us) / 1e6},
                               {"serverless_cost", CostJson(a.serverless_cost_micro)},
                               {"always_on_cost", CostJson(a.always_on_cost_micro)},
                               {"warm_cost", CostJson(a.warm_cost_micro)},
                               {"break_even_rps", a.break_even_rps}});
  }
  JsonBody(res, http::status::ok,
           json::object{{"from", Iso8601(from)},
                        {"to", Iso8601(to)},
                        {"days", days},
                        {"functions", std::move(out)},
                        {"prices", PricesJson(prices)}});
}

asio::awaitable<StatusOr<std::vector<meter::Group>>> Api::FetchTotals(meter::GroupBy by,
                                                                      const std::string& function,
                                                                      const std::string& tenant,
                                                                      int64_t from_us,
                                                                      int64_t to_us) {
  // A SQL aggregate: off the event loop.
  co_return co_await asio::co_spawn(
      blocking_,
      [&]() -> asio::awaitable<StatusOr<std::vector<meter::Group>>> {
        if (deps_.meter == nullptr) {
          co_return Unavailable("metering is off on this server (metering: false)");
        }
        co_return deps_.meter->Totals(by, function, tenant, from_us, to_us);
      },
      asio::use_awaitable);
}

}  // namespace thaw::gateway

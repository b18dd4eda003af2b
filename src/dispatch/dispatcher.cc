#include "dispatch/dispatcher.h"

#include <atomic>
#include <algorithm>
#include <utility>

#include "common/tenant.h"

namespace thaw::dispatch {

// Spend one thread accrued since the last merge, summed by tenant and month.
struct Dispatcher::SpendShard {
  struct Entry {
    std::string tenant;
    int64_t month = 0;
    int64_t start_us = 0;  // one start in `month`, for AddSpend
    int64_t pico = 0;
  };
  std::mutex mu;               // its thread and a merge
  std::vector<Entry> entries;  // guarded by mu; a handful: the tenants this thread served lately
  std::atomic<bool> dirty{false};  // entries is not empty: a merge may skip the lock otherwise
};

namespace {
std::atomic<uint64_t> next_dispatcher_id{1};
}  // namespace

Dispatcher::Dispatcher(LimitsSource limits)
    : limits_(std::move(limits)), id_(next_dispatcher_id.fetch_add(1)) {}

Dispatcher::~Dispatcher() = default;

Dispatcher::SpendShard& Dispatcher::ThisThreadsShard() {
  // (dispatcher id, its shard for this thread): ids are never reused, so an entry of a
  // destroyed dispatcher is never looked up again.
  thread_local std::vector<std::pair<uint64_t, SpendShard*>> cache;
  for (const auto& [id, shard] : cache) {
    if (id == id_) return *shard;
  }
  std::lock_guard lock(mu_);
  shards_.push_back(std::make_unique<SpendShard>());
  cache.emplace_back(id_, shards_.back().get());
  return *shards_.back();
}

void Dispatcher::AccrueSpend(std::string_view tenant, int64_t start_us, int64_t pico) {
  SpendShard& shard = ThisThreadsShard();
  const int64_t month = MonthIndex(start_us);
  std::lock_guard lock(shard.mu);
  for (auto& e : shard.entries) {
    if (e.month == month && e.tenant == tenant) {
      e.pico += pico;
      return;
    }
  }
  shard.entries.push_back({std::string(tenant), month, start_us, pico});
  shard.dirty.store(true, std::memory_order_release);
}

void Dispatcher::MergeSpendLocked() {
  for (const auto& shard : shards_) {
    if (!shard->dirty.load(std::memory_order_acquire)) continue;
    std::vector<SpendShard::Entry> entries;
    {
      std::lock_guard lock(shard->mu);
      entries.swap(shard->entries);
      shard->dirty.store(false, std::memory_order_relaxed);
    }
    for (auto& e : entries) {
      TenantCounters& counters = TenantLocked(e.tenant);
      counters = dispatch::AddSpend(std::move(counters), e.start_us, e.pico);
    }
  }
}

void Dispatcher::MergeSpend() {
  std::lock_guard lock(mu_);
  MergeSpendLocked();
}

Dispatcher::Slot::Slot(Slot&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      tenant_(std::move(other.tenant_)),
      function_(std::move(other.function_)),
      reserved_(other.reserved_) {}

Dispatcher::Slot& Dispatcher::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Reset();
    owner_ = std::exchange(other.owner_, nullptr);
    tenant_ = std::move(other.tenant_);
    function_ = std::move(other.function_);
    reserved_ = other.reserved_;
  }
  return *this;
}

Dispatcher::Slot::~Slot() { Reset(); }

void Dispatcher::Slot::Reset() {
  if (owner_ != nullptr) owner_->Release(*this);
  owner_ = nullptr;
}

auth::TenantLimits Dispatcher::LimitsOf(std::string_view tenant) const {
  return limits_ ? limits_(tenant) : auth::TenantLimits{};
}

TenantCounters& Dispatcher::TenantLocked(std::string_view tenant) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) it = tenants_.emplace(std::string(tenant), TenantCounters{}).first;
  return it->second;
}

Decision Dispatcher::Admit(std::string_view function, std::optional<int64_t> reserved_cap,
                           int64_t now_us, Slot& slot) {
  slot = Slot();  // gives back what it held first: Release takes mu_
  const std::string_view tenant = TenantOfFunction(function);
  AdmissionState state;
  state.limits = LimitsOf(tenant);
  state.reserved_cap = reserved_cap;
  std::lock_guard lock(mu_);
  if (state.limits.monthly_budget_micros || now_us - merged_us_ >= kSpendMergeUs) {
    MergeSpendLocked();
    if (!state.limits.monthly_budget_micros) merged_us_ = now_us;
  }
  TenantCounters& counters = TenantLocked(tenant);
  state.tenant = counters;
  if (reserved_cap) {
    auto r = reserved_.find(function);
    state.reserved_inflight = r == reserved_.end() ? 0 : r->second;
  }
  if (shares_enabled_) {
    auto sh = shares_.find(tenant);
    const Share share = sh == shares_.end() ? Share{} : sh->second;
    state.concurrency_share = share.concurrency;
    state.rate_share = share.rate;
  }
  Decision d = dispatch::Admit(state, CallRequest{tenant, function}, now_us);
  counters = d.tenant;
  if (d.reason != RejectReason::kTenantBudget) {
    auto dm = demand_.find(tenant);
    if (dm == demand_.end()) dm = demand_.emplace(std::string(tenant), Demand{}).first;
    ++dm->second.arrivals;
    if (d.reason == RejectReason::kTenantConcurrency) ++dm->second.refused_concurrency;
    dm->second.peak_inflight = std::max(dm->second.peak_inflight, counters.inflight);
  }
  if (!d.admitted()) return d;
  if (reserved_cap) {
    auto r = reserved_.find(function);
    if (r == reserved_.end()) r = reserved_.emplace(std::string(function), 0).first;
    r->second = d.reserved_inflight;
  }
  slot.owner_ = this;
  slot.tenant_ = std::string(tenant);
  slot.function_ = std::string(function);
  slot.reserved_ = reserved_cap.has_value();
  return d;
}

void Dispatcher::Release(const Slot& slot) {
  std::lock_guard lock(mu_);
  if (auto t = tenants_.find(slot.tenant_); t != tenants_.end() && t->second.inflight > 0) {
    --t->second.inflight;
  }
  if (!slot.reserved_) return;
  if (auto r = reserved_.find(slot.function_); r != reserved_.end() && --r->second <= 0) {
    reserved_.erase(r);
  }
}

Decision Dispatcher::CheckBudget(std::string_view tenant, int64_t now_us) {
  AdmissionState state;
  state.limits = LimitsOf(tenant);
  CallRequest call;
  call.tenant = tenant;
  call.budget_only = true;
  std::lock_guard lock(mu_);
  MergeSpendLocked();
  TenantCounters& counters = TenantLocked(tenant);
  state.tenant = counters;
  Decision d = dispatch::Admit(state, call, now_us);
  counters = d.tenant;
  return d;
}

void Dispatcher::AddSpend(std::string_view tenant, int64_t start_us, int64_t pico) {
  std::lock_guard lock(mu_);
  TenantCounters& counters = TenantLocked(tenant);
  counters = dispatch::AddSpend(std::move(counters), start_us, pico);
}

void Dispatcher::SetClusterSpend(std::string_view tenant, int64_t month, int64_t pico) {
  std::lock_guard lock(mu_);
  MergeSpendLocked();  // the ledger may hold what the accumulators still do: compare like with like
  TenantCounters& t = TenantLocked(tenant);
  if (month < t.month) return;
  if (month > t.month) {
    t.month = month;
    t.spent_pico = 0;
    t.warned = false;
  }
  t.spent_pico = std::max(t.spent_pico, pico);
}

void Dispatcher::EnableShares() {
  std::lock_guard lock(mu_);
  shares_enabled_ = true;
}

void Dispatcher::SetShare(std::string_view tenant, Share share) {
  std::lock_guard lock(mu_);
  auto it = shares_.find(tenant);
  if (it == shares_.end()) it = shares_.emplace(std::string(tenant), share).first;
  it->second = share;
}

std::map<std::string, Dispatcher::Demand, std::less<>> Dispatcher::TakeDemand() {
  std::lock_guard lock(mu_);
  std::map<std::string, Demand, std::less<>> out;
  for (const auto& [tenant, counters] : tenants_) {
    Demand& d = out[tenant];
    if (auto dm = demand_.find(tenant); dm != demand_.end()) d = dm->second;
    d.inflight = counters.inflight;
    d.peak_inflight = std::max(d.peak_inflight, counters.inflight);
  }
  demand_.clear();
  return out;
}

int64_t Dispatcher::SpentMicros(std::string_view tenant, int64_t now_us) {
  std::lock_guard lock(mu_);
  MergeSpendLocked();
  const TenantCounters& t = TenantLocked(tenant);
  // Spend of an earlier month is not this month's.
  return t.month == MonthIndex(now_us) ? t.spent_pico / 1'000'000 : 0;
}

int64_t Dispatcher::inflight(std::string_view tenant) {
  std::lock_guard lock(mu_);
  return TenantLocked(tenant).inflight;
}

int64_t Dispatcher::reserved_inflight(std::string_view function) {
  std::lock_guard lock(mu_);
  auto r = reserved_.find(function);
  return r == reserved_.end() ? 0 : r->second;
}

}  // namespace thaw::dispatch

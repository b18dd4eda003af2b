#include "dispatch/dispatcher.h"

#include <algorithm>
#include <atomic>
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
      TenantCounters& counters = TenantLocked(e.tenant).counters;
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
      tenant_(std::exchange(other.tenant_, nullptr)),
      function_(std::move(other.function_)),
      reserved_(other.reserved_) {}

Dispatcher::Slot& Dispatcher::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Reset();
    owner_ = std::exchange(other.owner_, nullptr);
    tenant_ = std::exchange(other.tenant_, nullptr);
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

TenantEntry& Dispatcher::TenantLocked(std::string_view tenant) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) it = tenants_.try_emplace(std::string(tenant)).first;
  return it->second;
}

TenantEntry& Dispatcher::TenantOfThread(std::string_view tenant) {
  struct Cached {
    uint64_t dispatcher = 0;
    std::string tenant;
    TenantEntry* entry = nullptr;
  };
  // Ids are never reused, so an entry of a destroyed dispatcher is never looked up again.
  thread_local std::vector<Cached> cache;
  for (const Cached& c : cache) {
    if (c.dispatcher == id_ && c.tenant == tenant) return *c.entry;
  }
  TenantEntry* entry;
  {
    std::lock_guard lock(mu_);
    entry = &TenantLocked(tenant);
  }
  if (cache.size() >= 64) cache.clear();  // a thread that served many tenants starts over
  cache.push_back({id_, std::string(tenant), entry});
  return *entry;
}

namespace {
void RaisePeak(std::atomic<int64_t>& peak, int64_t n) {
  int64_t seen = peak.load(std::memory_order_relaxed);
  while (n > seen && !peak.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
}
}  // namespace

bool Dispatcher::AdmitFast(TenantEntry& entry, const auth::TenantLimits& limits, int64_t now_us,
                           Decision& d) {
  if (limits.rate_per_second || limits.monthly_budget_micros) return false;
  if (shares_enabled_.load(std::memory_order_acquire)) return false;
  if (!entry.plain.load(std::memory_order_acquire)) return false;
  if (now_us - merged_us_.load(std::memory_order_relaxed) >= kSpendMergeUs) return false;
  int64_t n = entry.inflight.load(std::memory_order_relaxed);
  do {
    // At the limit: the mutex path refuses with its reason (or admits, if one was released).
    if (limits.concurrency && n >= *limits.concurrency) return false;
  } while (!entry.inflight.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed));
  entry.arrivals.fetch_add(1, std::memory_order_relaxed);
  RaisePeak(entry.peak_inflight, n + 1);
  d.kind = Decision::Kind::kAdmit;
  d.reason = RejectReason::kNone;
  d.tenant.inflight = n + 1;
  return true;
}

void Dispatcher::CommitLocked(TenantEntry& entry, const TenantCounters& counters) {
  entry.counters = counters;
  entry.plain.store(!counters.rate_seen && !counters.budget_seen, std::memory_order_release);
}

Decision Dispatcher::Admit(std::string_view function, std::optional<int64_t> reserved_cap,
                           int64_t now_us, Slot& slot, Scope scope) {
  slot = Slot();  // gives back what it held first
  const std::string_view tenant = TenantOfFunction(function);
  AdmissionState state;
  state.limits = LimitsOf(tenant);
  state.reserved_cap = reserved_cap;
  TenantEntry& entry = TenantOfThread(tenant);
  const bool held_here = scope != Scope::kForwarded;
  Decision d;
  if (!reserved_cap && held_here && AdmitFast(entry, state.limits, now_us, d)) {
    slot.owner_ = this;
    slot.tenant_ = &entry;
    return d;
  }
  std::lock_guard lock(mu_);
  if (state.limits.monthly_budget_micros ||
      now_us - merged_us_.load(std::memory_order_relaxed) >= kSpendMergeUs) {
    MergeSpendLocked();
    if (!state.limits.monthly_budget_micros) merged_us_.store(now_us, std::memory_order_relaxed);
  }
  std::map<std::string, int64_t, std::less<>>::iterator reserved = reserved_.end();
  if (reserved_cap) {
    reserved = reserved_.find(function);
    state.reserved_inflight = reserved == reserved_.end() ? 0 : reserved->second;
  }
  if (shares_enabled_.load(std::memory_order_relaxed)) {
    auto sh = shares_.find(tenant);
    const Share share = sh == shares_.end() ? Share{} : sh->second;
    state.concurrency_share = share.concurrency;
    state.rate_share = share.rate;
  }
  // The count may move under the mutex-free path: the decision is taken on one reading of it
  // and its increment committed only if the count is still that reading.
  const CallRequest call{
      .tenant = tenant, .function = function, .tenant_held_elsewhere = !held_here};
  int64_t n = entry.inflight.load(std::memory_order_acquire);
  for (;;) {
    state.tenant = entry.counters;
    state.tenant.inflight = n;
    d = dispatch::Admit(state, call, now_us);
    if (!d.admitted() || !held_here ||
        entry.inflight.compare_exchange_strong(n, n + 1, std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      break;
    }
  }
  CommitLocked(entry, d.tenant);
  // This node's demand: the calls its share holds, and (where they would run here) those it
  // refused.
  const bool demand = held_here && (d.admitted() || scope == Scope::kHere);
  if (demand && d.reason != RejectReason::kTenantBudget) {
    entry.arrivals.fetch_add(1, std::memory_order_relaxed);
    if (d.reason == RejectReason::kTenantConcurrency) {
      entry.refused_concurrency.fetch_add(1, std::memory_order_relaxed);
    }
    RaisePeak(entry.peak_inflight, d.admitted() ? n + 1 : n);
  }
  if (!d.admitted()) return d;
  if (reserved_cap) {
    if (reserved == reserved_.end()) reserved = reserved_.emplace(std::string(function), 0).first;
    reserved->second = d.reserved_inflight;
    slot.function_ = std::string(function);
  }
  if (!held_here && !reserved_cap) return d;  // it holds nothing here
  slot.owner_ = this;
  slot.tenant_ = held_here ? &entry : nullptr;
  slot.reserved_ = reserved_cap.has_value();
  return d;
}

void Dispatcher::Release(const Slot& slot) {
  if (slot.tenant_ != nullptr) slot.tenant_->inflight.fetch_sub(1, std::memory_order_acq_rel);
  if (!slot.reserved_) return;
  std::lock_guard lock(mu_);
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
  TenantEntry& entry = TenantLocked(tenant);
  state.tenant = entry.counters;
  state.tenant.inflight = entry.inflight.load(std::memory_order_relaxed);
  Decision d = dispatch::Admit(state, call, now_us);
  CommitLocked(entry, d.tenant);
  return d;
}

void Dispatcher::AddSpend(std::string_view tenant, int64_t start_us, int64_t pico) {
  std::lock_guard lock(mu_);
  TenantCounters& counters = TenantLocked(tenant).counters;
  counters = dispatch::AddSpend(std::move(counters), start_us, pico);
}

void Dispatcher::SetClusterSpend(std::string_view tenant, int64_t month, int64_t pico) {
  std::lock_guard lock(mu_);
  MergeSpendLocked();  // the ledger may hold what the accumulators still do: compare like with like
  TenantCounters& t = TenantLocked(tenant).counters;
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
  shares_enabled_.store(true, std::memory_order_release);
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
  for (auto& [tenant, entry] : tenants_) {
    Demand& d = out[tenant];
    d.arrivals = entry.arrivals.exchange(0, std::memory_order_relaxed);
    d.refused_concurrency = entry.refused_concurrency.exchange(0, std::memory_order_relaxed);
    d.peak_inflight = entry.peak_inflight.exchange(0, std::memory_order_relaxed);
    d.inflight = entry.inflight.load(std::memory_order_relaxed);
    d.peak_inflight = std::max(d.peak_inflight, d.inflight);
  }
  return out;
}

int64_t Dispatcher::SpentMicros(std::string_view tenant, int64_t now_us) {
  std::lock_guard lock(mu_);
  MergeSpendLocked();
  const TenantCounters& t = TenantLocked(tenant).counters;
  // Spend of an earlier month is not this month's.
  return t.month == MonthIndex(now_us) ? t.spent_pico / 1'000'000 : 0;
}

int64_t Dispatcher::inflight(std::string_view tenant) {
  std::lock_guard lock(mu_);
  return TenantLocked(tenant).inflight.load(std::memory_order_relaxed);
}

int64_t Dispatcher::reserved_inflight(std::string_view function) {
  std::lock_guard lock(mu_);
  auto r = reserved_.find(function);
  return r == reserved_.end() ? 0 : r->second;
}

}  // namespace thaw::dispatch

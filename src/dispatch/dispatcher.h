// Dispatcher: the owner of the node's admission counters, and the thin driver of the pure
// decision (admission.h). One object holds them all: each tenant's calls running at once, its
// rate bucket and its month's spend, and each function's calls running under its reserved
// concurrency. Tenant limits are not copied here: they are read from their one store (the key
// store, through LimitsSource) at each decision, so a changed limit applies to the next call
// without anyone keeping two copies in step. The per-version queue and instances stay with
// their pool (pool/pool.h), which runs the same decision on its own snapshot.
//
// Spend reaches the counters in two steps: AccrueSpend (each call's record, on the thread that
// finishes it) adds to that thread's own accumulator, and a merge sums the accumulators into the
// counters: at every admission decision of a tenant with a budget (so a budget refuses exactly as
// if spend were added per call), at others once per kSpendMergeUs of their `now` (the tick), and
// before SpentMicros answers. No lock is shared between threads per call for spend.
//
// Calls running at once are an atomic per tenant, not guarded by the mutex: a call of a tenant
// whose only limit is concurrency (no rate, no budget, no reserved concurrency, no cluster
// shares) and whose spend merge is not due is admitted by a compare-and-swap that increments
// the count only while it is below the limit, and given back by a decrement, without the
// mutex; the thread finds its tenant's counters in its own cache. Every other decision (and a
// call at the limit, refused with its reason) takes the mutex and commits its increment by the
// same compare-and-swap, deciding again if the count moved: never more admitted than the limit.
//
// Owned by the server (serve.cc); shared by the invoker and the admin API. Thread-safe: one
// mutex over the other counters, and one per thread's accumulator (taken by its thread and by
// a merge); limits are read outside them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatch/admission.h"

namespace thaw::dispatch {

// One tenant's counters in a Dispatcher.
struct TenantEntry {
  TenantCounters counters;  // guarded by the dispatcher's mutex; its `inflight` is not used
  std::atomic<int64_t> inflight{0};  // the admitted calls not yet released
  // The counters hold no rate bucket and no budget state: the mutex-free path may admit (a
  // rate or budget seen once goes through the mutex until it is forgotten there).
  std::atomic<bool> plain{true};
  // Demand since the last TakeDemand.
  std::atomic<int64_t> arrivals{0};
  std::atomic<int64_t> refused_concurrency{0};
  std::atomic<int64_t> peak_inflight{0};
};

class Dispatcher {
 public:
  // A tenant's limits as stored; absent limits are not enforced.
  using LimitsSource = std::function<auth::TenantLimits(std::string_view tenant)>;

  // A null `limits` enforces none (spend is still tracked).
  explicit Dispatcher(LimitsSource limits = nullptr);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // An admitted call's hold on its tenant slot (and its function's reserved slot): given back
  // when it is destroyed, however the call ends. Move-only.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    ~Slot();
    bool held() const { return owner_ != nullptr; }

   private:
    friend class Dispatcher;
    void Reset();
    Dispatcher* owner_ = nullptr;
    struct TenantEntry* tenant_ = nullptr;  // null: the tenant slot is held by another node
    std::string function_;                  // under a reservation only
    bool reserved_ = false;
  };

  // Which node holds a call's tenant slot, in a cluster that forwards calls between nodes.
  enum class Scope {
    kHere,  // the call was received here and runs here
    // Received here and about to be forwarded to another node: this node's share holds its
    // tenant slot while it runs there (pass no `reserved_cap`: that is the other node's). A
    // refusal is not counted as demand: the call then runs here and is decided again.
    kForwarding,
    // Forwarded here by the node that holds its tenant slot (CallRequest::
    // tenant_held_elsewhere): neither counted against this node's share nor in its demand.
    kForwarded,
  };
  // The gateway's half of admission for a call of `function` (internal name: its tenant is its
  // prefix), before a pool is chosen: budget, tenant concurrency and rate, then reserved
  // concurrency when `reserved_cap` is set. Once admitted, `slot` holds the call's slots.
  Decision Admit(std::string_view function, std::optional<int64_t> reserved_cap, int64_t now_us,
                 Slot& slot, Scope scope = Scope::kHere);
  // The budget alone (Event invocations are refused up front once it is spent).
  Decision CheckBudget(std::string_view tenant, int64_t now_us);

  // How often, in the `now` of admission decisions, accrued spend is merged for tenants
  // without a budget (whose spend only shows in SpentMicros, which merges anyway).
  static constexpr int64_t kSpendMergeUs = 100'000;

  // Adds spend to the counters at once (loading the month's records at start, tests).
  void AddSpend(std::string_view tenant, int64_t start_us, int64_t pico);
  // Adds spend to this thread's accumulator: the per-call path (the meter's observer). Seen by
  // the next decision of a tenant with a budget, by SpentMicros, and by every decision once
  // kSpendMergeUs has passed.
  void AccrueSpend(std::string_view tenant, int64_t start_us, int64_t pico);
  // Merges every thread's accrued spend into the counters now.
  void MergeSpend();
  // The month-to-date spend of `tenant` over the whole cluster, read from the shared ledger:
  // this node's total becomes the larger of it and what it counted itself (the ledger may not
  // yet hold this node's newest records).
  void SetClusterSpend(std::string_view tenant, int64_t month, int64_t pico);

  // In a cluster: from now on each tenant is bounded by this node's share of its concurrency and
  // rate limits (cluster/share_keeper.h), and a tenant whose share is not set yet admits nothing
  // under a limit it has.
  void EnableShares();
  struct Share {
    int64_t concurrency = 0;
    int64_t rate = 0;
  };
  void SetShare(std::string_view tenant, Share share);
  // What a tenant asked of this node since the last TakeDemand: the most calls it ran at once,
  // the calls refused at its concurrency share, and the calls that reached the limits at all.
  struct Demand {
    int64_t peak_inflight = 0;
    int64_t refused_concurrency = 0;
    int64_t arrivals = 0;
    int64_t inflight = 0;  // now
  };
  // Every tenant with counters, its demand reset.
  std::map<std::string, Demand, std::less<>> TakeDemand();
  int64_t SpentMicros(std::string_view tenant, int64_t now_us);
  int64_t inflight(std::string_view tenant);
  int64_t reserved_inflight(std::string_view function);

 private:
  auth::TenantLimits LimitsOf(std::string_view tenant) const;
  void Release(const Slot& slot);
  TenantEntry& TenantLocked(std::string_view tenant);
  // The tenant's entry through this thread's cache (the mutex on a miss only).
  TenantEntry& TenantOfThread(std::string_view tenant);
  // The mutex-free admission; false where the call needs the mutex path.
  bool AdmitFast(TenantEntry& entry, const auth::TenantLimits& limits, int64_t now_us, Decision& d);
  void CommitLocked(TenantEntry& entry, const TenantCounters& counters);
  struct SpendShard;
  SpendShard& ThisThreadsShard();
  void MergeSpendLocked();

  const LimitsSource limits_;
  const uint64_t id_;  // tells this dispatcher's shards apart in each thread's cache
  std::mutex mu_;
  // One accumulator per thread that has accrued spend; guarded by mu_ (the vector; each shard
  // has its own lock). Shards live as long as the dispatcher.
  std::vector<std::unique_ptr<SpendShard>> shards_;
  // The `now` of the last periodic merge: written under mu_, read by the mutex-free path.
  std::atomic<int64_t> merged_us_{0};
  // Guarded by mu_ (the map; each entry's atomics are not). Entries are never erased: a
  // pointer to one (a Slot's, a thread cache's) is valid as long as the dispatcher.
  std::map<std::string, TenantEntry, std::less<>> tenants_;
  // Calls running under a reservation, by function; absent: none.
  std::map<std::string, int64_t, std::less<>> reserved_;  // guarded by mu_
  std::atomic<bool> shares_enabled_{false};               // written under mu_
  std::map<std::string, Share, std::less<>> shares_;      // guarded by mu_
};

}  // namespace thaw::dispatch

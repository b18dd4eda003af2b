// Fair shares of a bounded queue (the asynchronous Event queue): one tenant, or one function,
// flooding it must not lock everyone else out. Pure: a decision over counts, table-tested.
//
// The rule (max-min fairness that keeps room for a newcomer): while the queue is less than half
// full anyone may add; past that, a tenant may add only while it holds less than its share,
// the capacity divided by the tenants holding slots plus one (the caller, when it holds none,
// or else the next tenant to come), and a function less than its tenant's share divided the
// same way among the tenant's functions. n tenants flooding hold at most n/(n+1) of the slots,
// so the next one always finds room.
#pragma once

#include <cstdint>

namespace thaw::dispatch {

struct ShareView {
  int64_t capacity = 0;          // slots in all
  int64_t total = 0;             // taken by everyone
  int64_t tenants = 0;           // tenants holding at least one slot
  int64_t tenant = 0;            // slots this tenant holds
  int64_t tenant_functions = 0;  // of this tenant's functions, those holding at least one
  int64_t function = 0;          // slots this function holds
};

enum class ShareDecision {
  kAdmit,
  kQueueFull,    // no slot at all
  kTenantShare,  // the tenant holds its share of a queue more than half full
  kFunctionShare,
};

ShareDecision AdmitToShare(const ShareView& view);

}  // namespace thaw::dispatch

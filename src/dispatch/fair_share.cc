#include "dispatch/fair_share.h"

#include <algorithm>
#include <cstdint>

namespace thaw::dispatch {

ShareDecision AdmitToShare(const ShareView& v) {
  if (v.total >= v.capacity) return ShareDecision::kQueueFull;
  if (v.total < v.capacity / 2) return ShareDecision::kAdmit;
  const int64_t tenant_share = std::max<int64_t>(1, v.capacity / (v.tenants + 1));
  if (v.tenant >= tenant_share) return ShareDecision::kTenantShare;
  const int64_t function_share = std::max<int64_t>(1, tenant_share / (v.tenant_functions + 1));
  if (v.function >= function_share) return ShareDecision::kFunctionShare;
  return ShareDecision::kAdmit;
}

}  // namespace thaw::dispatch

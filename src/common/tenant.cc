#include "common/tenant.h"

#include "common/sha256.h"

namespace thaw {

bool IsValidTenantName(std::string_view name) {
  if (name.empty() || name.size() > 32 || name.front() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

std::string InternalFunctionName(std::string_view tenant, std::string_view name) {
  if (tenant == kDefaultTenant) return std::string(name);
  std::string out;
  out.reserve(tenant.size() + 1 + name.size());
  out.append(tenant).append(".").append(name);
  return out;
}

std::string_view TenantOfFunction(std::string_view internal_name) {
  const size_t dot = internal_name.find('.');
  return dot == std::string_view::npos ? kDefaultTenant : internal_name.substr(0, dot);
}

std::string_view BareFunctionName(std::string_view internal_name) {
  const size_t dot = internal_name.find('.');
  return dot == std::string_view::npos ? internal_name : internal_name.substr(dot + 1);
}

std::string AccountOf(std::string_view tenant) {
  if (tenant == kDefaultTenant) return "000000000000";
  // 12 decimal digits from the name's digest; "0" first keeps them clear of real AWS ids.
  const std::string digest = Sha256Hex(tenant);
  std::string account = "0";
  for (size_t i = 0; account.size() < 12; ++i) account += static_cast<char>('0' + digest[i] % 10);
  return account;
}

}  // namespace thaw

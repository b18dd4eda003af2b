#include "gateway/scope.h"

#include "common/tenant.h"
#include "registry/manifest.h"

namespace thaw::gateway {
namespace {

Status NoSuchFunction(std::string_view name) {
  return NotFound("Function not found: " + std::string(name));
}

}  // namespace

Status RequireAdmin(const auth::Caller& caller) {
  if (caller.admin()) return Status::Ok();
  return Status(StatusCode::kPermissionDenied, "this route needs an admin key");
}

StatusOr<std::string> ScopedName(const auth::Caller& caller, const std::string& name) {
  if (caller.admin()) {
    // TENANT.NAME names tenant TENANT's function NAME, so "default.x" is the default tenant's
    // "x", stored as bare "x": one function, whichever spelling the admin uses.
    if (TenantOfFunction(name) == kDefaultTenant) return std::string(BareFunctionName(name));
    return name;
  }
  if (name.find('.') != std::string::npos) return NoSuchFunction(name);
  return InternalFunctionName(caller.tenant, name);
}

bool Visible(const auth::Caller& caller, std::string_view internal) {
  return caller.admin() || TenantOfFunction(internal) == caller.tenant;
}

std::string ShownName(const auth::Caller& caller, std::string_view internal) {
  return std::string(caller.admin() ? internal : BareFunctionName(internal));
}

StatusOr<std::string> ScopedLambdaName(const auth::Caller& caller, const lambda::FunctionRef& ref,
                                       const auth::KeyStore* keys) {
  if (ref.account.empty() || ref.account == AccountOf(caller.tenant)) {
    return InternalFunctionName(caller.tenant, ref.name);
  }
  if (caller.admin() && keys != nullptr) {
    for (const auth::Tenant& t : keys->ListTenants()) {
      if (AccountOf(t.name) == ref.account) return InternalFunctionName(t.name, ref.name);
    }
  }
  return NoSuchFunction(ref.name);
}

}  // namespace thaw::gateway

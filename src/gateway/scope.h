// Scope: how the function names a caller sends map to thaw's internal names, and back (see
// common/tenant.h). A tenant's key addresses only its own functions, by their bare names; a
// name it cannot address is "not found", never "forbidden", so no tenant learns what another
// has. Admin keys address every function by its internal name (TENANT.NAME). Pure functions.
#pragma once

#include <string>
#include <string_view>

#include "auth/keys.h"
#include "common/status.h"
#include "gateway/lambda_shapes.h"

namespace thaw::gateway {

// PermissionDenied unless `caller` holds an admin key.
Status RequireAdmin(const auth::Caller& caller);
// Native API: the internal name of `name` as `caller` sends it. An admin's "default.NAME" is
// "NAME" (the default tenant's functions are stored under their bare names).
StatusOr<std::string> ScopedName(const auth::Caller& caller, const std::string& name);
// Whether `caller` may see internal function `internal`.
bool Visible(const auth::Caller& caller, std::string_view internal);
// The name `caller` knows internal function `internal` by.
std::string ShownName(const auth::Caller& caller, std::string_view internal);
// Lambda API: an ARN's account picks the tenant (AccountOf); a tenant may only name its own
// account; an admin any tenant's.
StatusOr<std::string> ScopedLambdaName(const auth::Caller& caller, const lambda::FunctionRef& ref,
                                       const auth::KeyStore* keys);

}  // namespace thaw::gateway

// Tenant names and how a tenant's functions are named inside thaw. Each tenant has its own
// function namespace: tenant "acme"'s function "hello" is stored, pooled, logged and metered
// as "acme.hello" ('.' is not allowed in a function name, so the split is unambiguous). The
// "default" tenant's functions keep their bare names. Callers with a tenant key only ever see
// and send bare names; admins address any function by its internal name.
#pragma once

#include <string>
#include <string_view>

namespace thaw {

inline constexpr std::string_view kDefaultTenant = "default";

// 1-32 of [a-z0-9-], starting with a letter or digit.
bool IsValidTenantName(std::string_view name);
// "acme", "hello" -> "acme.hello"; "default", "hello" -> "hello".
std::string InternalFunctionName(std::string_view tenant, std::string_view name);
// "acme.hello" -> "acme"; "hello" -> "default".
std::string_view TenantOfFunction(std::string_view internal_name);
// "acme.hello" -> "hello"; "hello" -> "hello".
std::string_view BareFunctionName(std::string_view internal_name);
// The 12-digit AWS account id a tenant's ARNs carry: 000000000000 for "default", else
// derived from the name (tenants are accounts to AWS clients).
std::string AccountOf(std::string_view tenant);

}  // namespace thaw

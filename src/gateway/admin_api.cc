// The native API's tenant and key routes (admin only) and GET /v1/whoami.
#include <boost/json.hpp>

#include "auth/keys.h"
#include "common/clock.h"
#include "common/tenant.h"
#include "dispatch/dispatcher.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "gateway/scope.h"
#include "meter/cost.h"
#include "registry/registry.h"

namespace thaw::gateway {
namespace {

namespace json = boost::json;

StatusOr<json::object> BodyObject(const std::string& body) {
  if (body.empty()) return json::object();
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return InvalidArgument("request body must be a JSON object");
  return std::move(v.as_object());
}

// A limit field: absent (keeps `current`), null (no limit) or an integer >= `min`.
Status ReadLimit(const json::object& o, const char* field, int64_t min,
                 std::optional<int64_t>& current) {
  const json::value* v = o.if_contains(field);
  if (v == nullptr) return Status::Ok();
  if (v->is_null()) {
    current.reset();
    return Status::Ok();
  }
  if (!v->is_int64() || v->as_int64() < min) {
    return InvalidArgument(std::string(field) + ": expected an integer >= " + std::to_string(min) +
                           " or null");
  }
  current = v->as_int64();
  return Status::Ok();
}

Status ReadLimits(const json::object& o, auth::TenantLimits& limits,
                  std::initializer_list<std::string_view> also_allowed) {
  for (const auto& kv : o) {
    const std::string_view key = kv.key();
    if (key == "concurrency" || key == "rate_per_second" || key == "monthly_budget_micros") {
      continue;
    }
    if (std::find(also_allowed.begin(), also_allowed.end(), key) == also_allowed.end()) {
      return InvalidArgument(std::string(key) + ": unknown field");
    }
  }
  THAW_RETURN_IF_ERROR(ReadLimit(o, "concurrency", 1, limits.concurrency));
  THAW_RETURN_IF_ERROR(ReadLimit(o, "rate_per_second", 1, limits.rate_per_second));
  return ReadLimit(o, "monthly_budget_micros", 0, limits.monthly_budget_micros);
}

json::value OptionalJson(const std::optional<int64_t>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

json::object KeyJson(const auth::KeyInfo& k) {
  return json::object{{"id", k.id},
                      {"tenant", k.tenant},
                      {"role", auth::RoleName(k.role)},
                      {"description", k.description},
                      {"created", Iso8601(k.created_us)}};
}

json::object TenantJson(const auth::Tenant& t, int64_t spent_micros) {
  json::object o{{"name", t.name},
                 {"account", AccountOf(t.name)},
                 {"concurrency", OptionalJson(t.limits.concurrency)},
                 {"rate_per_second", OptionalJson(t.limits.rate_per_second)},
                 {"monthly_budget_micros", OptionalJson(t.limits.monthly_budget_micros)},
                 {"month_to_date_micros", spent_micros},
                 {"month_to_date_usd", meter::FormatDollars(spent_micros)},
                 {"created", Iso8601(t.created_us)}};
  if (t.limits.monthly_budget_micros) {
    o["monthly_budget_usd"] = meter::FormatDollars(*t.limits.monthly_budget_micros);
  }
  return o;
}

}  // namespace

void Api::Tenants(const auth::Caller& caller, const std::vector<std::string_view>& parts,
                  Request& req, Response& res) {
  if (Status st = RequireAdmin(caller); !st.ok()) return StatusBody(res, st);
  const http::verb m = req.method();
  const int64_t now = WallNowMicros();
  auto spent = [&](const std::string& name) { return deps_.dispatcher->SpentMicros(name, now); };
  if (parts.size() == 2) {
    if (m == http::verb::get) {
      json::array out;
      for (const auto& t : deps_.keys->ListTenants()) out.push_back(TenantJson(t, spent(t.name)));
      return JsonBody(res, http::status::ok, json::object{{"tenants", std::move(out)}});
    }
    if (m == http::verb::post) {
      auto body = BodyObject(req.body());
      if (!body.ok()) return StatusBody(res, body.status());
      const json::value* name = body->if_contains("name");
      if (name == nullptr || !name->is_string()) {
        return StatusBody(res, InvalidArgument("name: required, a string"));
      }
      auth::TenantLimits limits;
      if (Status st = ReadLimits(*body, limits, {"name"}); !st.ok()) return StatusBody(res, st);
      auto created = deps_.keys->CreateTenant(std::string(name->as_string()), limits);
      if (!created.ok()) return StatusBody(res, created.status());
      return JsonBody(res, http::status::created, TenantJson(*created, 0));
    }
  } else if (parts.size() == 3) {
    const std::string name(parts[2]);
    auto tenant = deps_.keys->GetTenant(name);
    if (!tenant.ok()) return StatusBody(res, tenant.status());
    if (m == http::verb::get)
      return JsonBody(res, http::status::ok, TenantJson(*tenant, spent(name)));
    if (m == http::verb::patch) {
      auto body = BodyObject(req.body());
      if (!body.ok()) return StatusBody(res, body.status());
      auth::TenantLimits limits = tenant->limits;
      if (Status st = ReadLimits(*body, limits, {}); !st.ok()) return StatusBody(res, st);
      if (Status st = deps_.keys->UpdateTenant(name, limits); !st.ok()) {
        return StatusBody(res, st);
      }
      tenant->limits = limits;
      return JsonBody(res, http::status::ok, TenantJson(*tenant, spent(name)));
    }
    if (m == http::verb::delete_) {
      for (const auto& f : deps_.registry->List()) {
        if (TenantOfFunction(f.name) == name) {
          return StatusBody(
              res, FailedPrecondition("tenant " + name + " still has functions (for example " +
                                      f.name + "): delete them first"));
        }
      }
      if (Status st = deps_.keys->DeleteTenant(name); !st.ok()) return StatusBody(res, st);
      res.result(http::status::no_content);
      return;
    }
  }
  MethodNotAllowed(req, res);
}

void Api::Keys(const auth::Caller& caller, const std::vector<std::string_view>& parts,
               const std::string& query, Request& req, Response& res) {
  if (Status st = RequireAdmin(caller); !st.ok()) return StatusBody(res, st);
  const http::verb m = req.method();
  if (parts.size() == 2 && m == http::verb::get) {
    json::array out;
    for (const auto& k : deps_.keys->ListKeys(QueryParam(query, "tenant")))
      out.push_back(KeyJson(k));
    return JsonBody(res, http::status::ok, json::object{{"keys", std::move(out)}});
  }
  if (parts.size() == 2 && m == http::verb::post) {
    auto body = BodyObject(req.body());
    if (!body.ok()) return StatusBody(res, body.status());
    std::string tenant(kDefaultTenant), role = "tenant", description;
    for (const auto& kv : *body) {
      if (!kv.value().is_string()) {
        return StatusBody(res, InvalidArgument(std::string(kv.key()) + ": expected a string"));
      }
      const std::string value(kv.value().as_string());
      if (kv.key() == "tenant") {
        tenant = value;
      } else if (kv.key() == "role") {
        role = value;
      } else if (kv.key() == "description") {
        description = value;
      } else {
        return StatusBody(res, InvalidArgument(std::string(kv.key()) + ": unknown field"));
      }
    }
    auto parsed_role = auth::ParseRole(role);
    if (!parsed_role) {
      return StatusBody(res, InvalidArgument("role: expected admin or tenant, got '" + role + "'"));
    }
    auto created = deps_.keys->CreateKey(tenant, *parsed_role, description);
    if (!created.ok()) return StatusBody(res, created.status());
    json::object o = KeyJson(created->first);
    o["secret"] = created->second;  // shown this once: thaw keeps only its hash
    return JsonBody(res, http::status::created, o);
  }
  if (parts.size() == 3 && m == http::verb::delete_) {
    if (Status st = deps_.keys->RevokeKey(parts[2]); !st.ok()) return StatusBody(res, st);
    res.result(http::status::no_content);
    return;
  }
  MethodNotAllowed(req, res);
}

void Api::WhoAmI(const auth::Caller& caller, Response& res) {
  json::object o{{"tenant", caller.tenant},
                 {"role", auth::RoleName(caller.role)},
                 {"key_id", caller.key_id},
                 {"account", AccountOf(caller.tenant)}};
  if (auto tenant = deps_.keys->GetTenant(caller.tenant); tenant.ok()) {
    o["limits"] =
        TenantJson(*tenant, deps_.dispatcher->SpentMicros(caller.tenant, WallNowMicros()));
  }
  JsonBody(res, http::status::ok, o);
}

}  // namespace thaw::gateway

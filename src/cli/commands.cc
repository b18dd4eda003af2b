#include "cli/commands.h"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/http_client.h"
#include "common/files.h"
#include "common/json_text.h"
#include "registry/archive.h"
#include "registry/manifest.h"

namespace thaw::cli {
namespace {

namespace json = boost::json;

int Fail(const std::string& message) {
  std::fprintf(stderr, "thaw: %s\n", message.c_str());
  return 1;
}

StatusOr<HttpResult> Call(const ClientOptions& o, const std::string& method,
                          const std::string& target, const std::string& body = "",
                          Headers headers = {}) {
  if (!o.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + o.api_key);
  return HttpCall(o.server, method, target, body, headers);
}

int FailResponse(const HttpResult& r);

// One request whose answer is a JSON object: -1 with `out` filled from a 200 answer, else the
// exit code of a command that is done (a failed call, an error answer, or --json, which prints
// the body as it came).
int CallForObject(const ClientOptions& o, const std::string& method, const std::string& target,
                  const std::string& body, json::object& out) {
  auto r = Call(o, method, target, body);
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 200) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  out = json::parse(r->body).as_object();
  return -1;
}
int CallForObject(const ClientOptions& o, const std::string& method, const std::string& target,
                  json::object& out) {
  return CallForObject(o, method, target, "", out);
}

// Turns a non-2xx response into the server's own error message.
int FailResponse(const HttpResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    std::string type, message;
    if (auto* t = o.if_contains("errorType"); t && t->is_string()) type = t->as_string().c_str();
    if (auto* m = o.if_contains("errorMessage"); m && m->is_string()) {
      message = m->as_string().c_str();
    }
    if (!message.empty())
      return Fail(type + ": " + message + " (HTTP " + std::to_string(r.status) + ")");
  }
  return Fail("HTTP " + std::to_string(r.status) + ": " + r.body);
}

std::string Str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (v == nullptr) return "";
  if (v->is_string()) return std::string(v->as_string());
  return JsonText(*v);
}

std::string HumanBytes(int64_t n) {
  char buf[32];
  if (n < 1024)
    std::snprintf(buf, sizeof(buf), "%ld B", static_cast<long>(n));
  else if (n < 1024 * 1024)
    std::snprintf(buf, sizeof(buf), "%.1f KB", n / 1024.0);
  else
    std::snprintf(buf, sizeof(buf), "%.1f MB", n / 1048576.0);
  return buf;
}

}  // namespace

int CmdDeploy(const ClientOptions& o, const std::string& dir, const std::string& name_flag) {
  namespace fs = std::filesystem;
  auto yaml = ReadFile(dir + "/thaw.yaml");
  if (!yaml.ok()) return Fail(dir + " has no thaw.yaml: " + yaml.status().message());
  std::string fallback = fs::path(dir).lexically_normal().filename().string();
  if (fallback.empty() || fallback == ".") fallback = fs::absolute(dir).filename().string();
  auto manifest = registry::ParseManifest(*yaml, name_flag.empty() ? fallback : name_flag);
  if (!manifest.ok()) return Fail(manifest.status().message());
  const std::string name = name_flag.empty() ? manifest->name : name_flag;
  auto archive = registry::PackDirectory(dir);
  if (!archive.ok()) return Fail(archive.status().message());
  auto r =
      Call(o, "PUT", "/v1/functions/" + name, *archive, {{"Content-Type", "application/gzip"}});
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 201) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  json::object f = json::parse(r->body).as_object();
  std::cout << "deployed " << name << " version " << Str(f, "version") << " (" << Str(f, "runtime")
            << ", " << HumanBytes(static_cast<int64_t>(archive->size())) << ", sha256 "
            << Str(f, "sha256").substr(0, 12) << ")\n"
            << "invoke:  thaw invoke " << name << " '{}'\n"
            << "   or:   curl -H \"Authorization: Bearer $(cat .thaw/admin.key)\" -d '{}' "
            << o.server << "/v1/functions/" << name << "/invoke\n";
  return 0;
}

int CmdInvoke(const ClientOptions& o, const std::string& name, const std::string& payload_arg,
              const std::string& qualifier) {
  std::string payload = payload_arg;
  if (payload_arg == "-") {
    payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::string target = "/v1/functions/" + name + "/invoke";
  if (!qualifier.empty()) target += "?qualifier=" + qualifier;
  auto r = Call(o, "POST", target, payload, {{"Content-Type", "application/json"}});
  if (!r.ok()) return Fail(r.status().message());
  const bool cold = r->Header("x-thaw-cold-start") == "true";
  if (o.json) {
    json::object out{
        {"status", r->status},
        {"requestId", r->Header("x-thaw-request-id")},
        {"version", r->Header("x-thaw-version")},
        {"coldStart", cold},
        {"initMs", std::strtod(r->Header("x-thaw-init-ms").c_str(), nullptr)},
        {"billedMs", std::strtoll(r->Header("x-thaw-billed-ms").c_str(), nullptr, 10)}};
    boost::system::error_code ec;
    json::value body = json::parse(r->body, ec);
    out["payload"] = ec ? json::value(r->body) : body;
    std::cout << JsonText(out) << "\n";
    return r->status == 200 ? 0 : 1;
  }
  if (r->status != 200) return FailResponse(*r);
  std::cout << r->body << "\n";
  std::fprintf(stderr, "cold start: %s%s, billed %s ms, request %s\n", cold ? "yes" : "no",
               cold ? (" (init " + r->Header("x-thaw-init-ms") + " ms)").c_str() : "",
               r->Header("x-thaw-billed-ms").c_str(), r->Header("x-thaw-request-id").c_str());
  return 0;
}

int CmdList(const ClientOptions& o) {
  json::object body;
  if (int done = CallForObject(o, "GET", "/v1/functions", body); done >= 0) return done;
  std::printf("%-24s %-8s %-9s %-7s %-10s %s\n", "NAME", "VERSION", "RUNTIME", "MEMORY",
              "INSTANCES", "UPDATED");
  for (const auto& f : body["functions"].as_array()) {
    const auto& fo = f.as_object();
    const auto& inst = fo.at("instances").as_object();
    int64_t live = 0;
    for (const auto& kv : inst) {
      if (kv.key() != "busy") live += kv.value().as_int64();  // busy ones are ready ones too
    }
    std::printf("%-24s %-8s %-9s %-7s %-10ld %s\n", Str(fo, "name").c_str(),
                Str(fo, "version").c_str(), Str(fo, "runtime").c_str(),
                (Str(fo, "memory_mb") + "MB").c_str(), static_cast<long>(live),
                Str(fo, "updated").c_str());
  }
  return 0;
}

int CmdGet(const ClientOptions& o, const std::string& name) {
  json::object f;
  if (int done = CallForObject(o, "GET", "/v1/functions/" + name, f); done >= 0) return done;
  for (const char* key :
       {"name", "version", "runtime", "handler", "memory_mb", "timeout_s", "concurrency",
        "min_instances", "max_instances", "idle_timeout_s", "keep_alive", "sha256", "code_size",
        "created", "updated", "instances", "queued", "inflight", "environment"}) {
    std::printf("%-15s %s\n", key, Str(f, key).c_str());
  }
  for (const char* key : {"on_success", "on_failure"}) {
    if (!Str(f, key).empty()) std::printf("%-15s %s\n", key, Str(f, key).c_str());
  }
  // Signs this function's webhook deliveries (X-Thaw-Signature); only its owner sees it.
  if (f.contains("webhook_secret")) {
    std::printf("%-15s %s\n", "webhook_secret", Str(f, "webhook_secret").c_str());
  }
  std::printf("%-15s %zu\n", "versions", f["versions"].as_array().size());
  if (f.contains("keep_alive_plan")) {  // what the adaptive keep-alive learnt so far
    json::object& k = f["keep_alive_plan"].as_object();
    std::printf("%-15s %s: pre-warm after %s s, keep %s s (%s idle times)\n", "keep_alive_now",
                Str(k, "basis").c_str(), Str(k, "prewarm_s").c_str(),
                Str(k, "keep_alive_s").c_str(), Str(k, "idle_samples").c_str());
  }
  // A function whose instances keep failing their init says so, with the last error.
  std::printf("%-15s %s\n", "state", Str(f, "state").c_str());
  if (f.contains("schedule")) {
    std::printf("%-15s %s\n", "schedule", Str(f, "schedule").c_str());
    std::printf("%-15s %s\n", "next_run",
                f.contains("next_run") ? Str(f, "next_run").c_str() : "-");
  }
  if (f.contains("init_failures_in_a_row")) {
    std::printf("%-15s %s in a row; last: %s\n", "init_failures",
                Str(f, "init_failures_in_a_row").c_str(), Str(f, "last_init_error").c_str());
  }
  return 0;
}

int CmdRemove(const ClientOptions& o, const std::string& name) {
  auto r = Call(o, "DELETE", "/v1/functions/" + name);
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 204) return FailResponse(*r);
  if (o.json)
    std::cout << JsonText(json::object{{"deleted", name}}) << "\n";
  else
    std::cout << "deleted " << name << "\n";
  return 0;
}

int CmdLogs(const ClientOptions& o, const std::string& name, bool follow, int64_t limit) {
  int64_t since = 0;
  for (;;) {
    auto r = Call(o, "GET",
                  "/v1/functions/" + name + "/logs?since=" + std::to_string(since) +
                      "&limit=" + std::to_string(limit));
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 200) return FailResponse(*r);
    json::object body = json::parse(r->body).as_object();
    for (const auto& l : body["lines"].as_array()) {
      const auto& lo = l.as_object();
      if (o.json) {
        std::cout << JsonText(lo) << "\n";
      } else if (Str(lo, "stream") == "platform") {
        std::cout << Str(lo, "time") << "\t" << Str(lo, "message") << "\n";
      } else {
        std::cout << Str(lo, "time") << "\t" << Str(lo, "requestId") << "\t" << Str(lo, "message")
                  << "\n";
      }
    }
    std::cout.flush();
    since = body["next"].as_int64();
    if (!follow) return 0;
    // Following polls: the server keeps no per-follower state.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

int CmdEventsList(const ClientOptions& o, const std::string& name, bool failed, int64_t limit) {
  std::string target = "/v1/functions/" + name + "/events?limit=" + std::to_string(limit);
  if (failed) target += "&state=failed";
  json::object body;
  if (int done = CallForObject(o, "GET", target, body); done >= 0) return done;
  std::printf("%-38s %-10s %-8s %-20s %s\n", "ID", "STATE", "TRIES", "CREATED", "ERROR");
  for (const auto& e : body["events"].as_array()) {
    const auto& eo = e.as_object();
    std::string why = Str(eo, "error");
    if (!Str(eo, "condition").empty() && Str(eo, "condition") != "Success") {
      why = Str(eo, "condition") + (why.empty() ? "" : ": " + why);
    }
    std::printf("%-38s %-10s %-8s %-20s %s\n", Str(eo, "id").c_str(), Str(eo, "state").c_str(),
                Str(eo, "attempts").c_str(), Str(eo, "created").c_str(), why.c_str());
  }
  if (!body["next"].is_null()) std::printf("(more: --json shows the next page's cursor)\n");
  return 0;
}

int CmdEventsRedrive(const ClientOptions& o, const std::string& name,
                     const std::vector<std::string>& ids) {
  json::array list;
  for (const auto& id : ids) list.push_back(json::value(id));
  json::object body;
  if (int done = CallForObject(o, "POST", "/v1/functions/" + name + "/events/redrive",
                               JsonText(json::object{{"ids", std::move(list)}}), body);
      done >= 0)
    return done;
  std::printf("%s dead letters of %s queued again\n", Str(body, "redriven").c_str(), name.c_str());
  return 0;
}

int CmdUsage(const ClientOptions& o, const std::string& function, const std::string& tenant,
             const std::string& from, const std::string& to, const std::string& group_by,
             bool csv) {
  std::string target = "/v1/usage?function=" + function + "&from=" + from + "&to=" + to;
  if (!tenant.empty()) target += "&tenant=" + tenant;
  if (!group_by.empty()) target += "&group_by=" + group_by;
  json::object body;
  if (int done = CallForObject(o, "GET", target, body); done >= 0) return done;
  const std::string grouped_by = Str(body, "group_by");
  const bool by_day = grouped_by == "day";
  const bool by_tenant = grouped_by == "tenant";
  const char* key = by_day ? "day" : (by_tenant ? "tenant" : "function");
  auto num = [](const json::object& u, const char* k) { return u.at(k).to_number<double>(); };
  auto cost = [](const json::object& u, const char* k) {
    return std::string(u.at(k).as_object().at("usd").as_string());
  };
  auto print = [&](const std::string& name, const json::object& u) {
    const auto& st = u.at("by_status").as_object();
    const char* fmt = csv ? "%s,%ld,%ld,%ld,%ld,%ld,%ld,%.3f,%.3f,%.2f,%.6f,%.6f,%.6f,%s,%s\n"
                          : "%-24s %8ld %6ld %6ld %6ld %6ld %6ld %9.3f %9.3f %6.2f %11.4f %10.4f "
                            "%10.4f %12s %12s\n";
    std::printf(fmt, name.c_str(), static_cast<long>(u.at("invocations").as_int64()),
                static_cast<long>(st.at("success").as_int64()),
                static_cast<long>(st.at("error").as_int64()),
                static_cast<long>(st.at("timeout").as_int64()),
                static_cast<long>(st.at("crash").as_int64()),
                static_cast<long>(st.at("throttled").as_int64()), num(u, "p50_duration_ms"),
                num(u, "p99_duration_ms"), num(u, "cold_start_percent"), num(u, "gb_seconds"),
                num(u, "cpu_seconds"), num(u, "peak_gb_seconds"), cost(u, "cost_lambda").c_str(),
                cost(u, "cost_actual").c_str());
  };
  if (csv) {
    std::printf(
        "%s,invocations,success,error,timeout,crash,throttled,p50_ms,p99_ms,cold_pct,"
        "gb_seconds,cpu_seconds,peak_gb_seconds,cost_lambda_usd,cost_actual_usd\n",
        key);
  } else {
    std::printf("%-24s %8s %6s %6s %6s %6s %6s %9s %9s %6s %11s %10s %10s %12s %12s\n",
                by_day ? "DAY" : (by_tenant ? "TENANT" : "FUNCTION"), "CALLS", "OK", "ERROR",
                "TIMEOUT", "CRASH", "THROTL", "P50_MS", "P99_MS", "COLD%", "GB_S", "CPU_S",
                "PEAK_GB_S", "LAMBDA", "ACTUAL");
  }
  for (const auto& row : body[by_day ? "days" : (by_tenant ? "tenants" : "functions")].as_array()) {
    print(Str(row.as_object(), key), row.as_object());
  }
  print("TOTAL", body.at("total").as_object());
  return 0;
}

int CmdAdvise(const ClientOptions& o, const std::string& function, int64_t days) {
  json::object body;
  if (int done = CallForObject(
          o, "GET", "/v1/advice?function=" + function + "&days=" + std::to_string(days), body);
      done >= 0)
    return done;
  std::printf("over the last %ld days (%s to %s)\n", static_cast<long>(days),
              Str(body, "from").c_str(), Str(body, "to").c_str());
  for (const auto& row : body["functions"].as_array()) {
    const auto& a = row.as_object();
    auto usd = [&](const char* k) {
      return std::string(a.at(k).as_object().at("usd").as_string());
    };
    std::printf("%s: %s\n  %s\n", Str(a, "function").c_str(), Str(a, "advice").c_str(),
                Str(a, "reason").c_str());
    std::printf(
        "  %ld calls, %.4f req/s mean, %.1f%% cold, peak concurrency %.3f -> %ld "
        "instance(s)\n",
        static_cast<long>(a.at("invocations").as_int64()), a.at("mean_rps").to_number<double>(),
        a.at("cold_start_percent").to_number<double>(),
        a.at("peak_concurrency").to_number<double>(),
        static_cast<long>(a.at("instances").as_int64()));
    std::printf("  serverless %s, always-on %s, warm %s; break-even %.4f req/s\n",
                usd("serverless_cost").c_str(), usd("always_on_cost").c_str(),
                usd("warm_cost").c_str(), a.at("break_even_rps").to_number<double>());
  }
  return 0;
}

// ---- Tenants and keys ----

namespace {

// "12.50" dollars as micro-dollars, exactly; nullopt unless digits with at most six decimals.
std::optional<int64_t> ParseDollars(const std::string& text) {
  std::string t = text.starts_with('$') ? text.substr(1) : text;
  const size_t dot = t.find('.');
  const std::string whole = t.substr(0, dot);
  const std::string frac = dot == std::string::npos ? "" : t.substr(dot + 1);
  auto digits = [](const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || whole.size() > 12 || frac.size() > 6 || !digits(whole) || !digits(frac)) {
    return std::nullopt;
  }
  return std::stoll(whole) * 1'000'000 +
         (frac.empty() ? 0 : std::stoll(frac + std::string(6 - frac.size(), '0')));
}

// Adds a limit flag's value to `body`: "none" clears it, a number sets it, empty leaves it.
bool AddLimit(json::object& body, const char* field, const std::string& flag,
              const std::string& value, bool dollars) {
  if (value.empty()) return true;
  if (value == "none") {
    body[field] = nullptr;
    return true;
  }
  std::optional<int64_t> n;
  if (dollars) {
    n = ParseDollars(value);
  } else if (!value.empty() && value.size() < 12 &&
             std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    n = std::stoll(value);
  }
  if (!n) {
    std::fprintf(stderr, "thaw: %s: expected %s or none, got '%s'\n", flag.c_str(),
                 dollars ? "dollars (like 25 or 12.50)" : "a whole number", value.c_str());
    return false;
  }
  body[field] = *n;
  return true;
}

std::string Limit(const json::object& t, const char* field) {
  const json::value* v = t.if_contains(field);
  return v == nullptr || v->is_null() ? "-" : JsonText(*v);
}

void PrintTenantRow(const json::object& t) {
  std::string budget = "-";
  if (const json::value* b = t.if_contains("monthly_budget_usd"); b && b->is_string()) {
    budget = std::string(b->as_string());
  }
  std::printf("%-20s %-13s %11s %6s %12s %12s\n", Str(t, "name").c_str(), Str(t, "account").c_str(),
              Limit(t, "concurrency").c_str(), Limit(t, "rate_per_second").c_str(), budget.c_str(),
              Str(t, "month_to_date_usd").c_str());
}

void PrintTenantHeader() {
  std::printf("%-20s %-13s %11s %6s %12s %12s\n", "TENANT", "ACCOUNT", "CONCURRENCY", "RATE/S",
              "BUDGET", "THIS_MONTH");
}

int PrintOk(const ClientOptions& o, const HttpResult& r, int want) {
  if (r.status != want) return FailResponse(r);
  if (o.json) {
    std::cout << r.body << "\n";
    return 0;
  }
  if (r.body.empty()) return 0;
  json::value v = json::parse(r.body);
  PrintTenantHeader();
  if (v.as_object().contains("tenants")) {
    for (const auto& t : v.as_object().at("tenants").as_array()) PrintTenantRow(t.as_object());
  } else {
    PrintTenantRow(v.as_object());
  }
  return 0;
}

}  // namespace

int CmdTenants(const ClientOptions& o, const TenantArgs& a) {
  json::object body;
  if (!AddLimit(body, "concurrency", "--concurrency", a.concurrency, false) ||
      !AddLimit(body, "rate_per_second", "--rate", a.rate, false) ||
      !AddLimit(body, "monthly_budget_micros", "--budget", a.budget, true)) {
    return 2;
  }
  StatusOr<HttpResult> r;
  int want = 200;
  if (a.action == "ls") {
    r = Call(o, "GET", "/v1/tenants");
  } else if (a.action == "get") {
    r = Call(o, "GET", "/v1/tenants/" + a.name);
  } else if (a.action == "create") {
    body["name"] = a.name;
    r = Call(o, "POST", "/v1/tenants", JsonText(body), {{"Content-Type", "application/json"}});
    want = 201;
  } else if (a.action == "set") {
    r = Call(o, "PATCH", "/v1/tenants/" + a.name, JsonText(body),
             {{"Content-Type", "application/json"}});
  } else {  // rm
    r = Call(o, "DELETE", "/v1/tenants/" + a.name);
    want = 204;
  }
  if (!r.ok()) return Fail(r.status().message());
  if (a.action == "rm" && r->status == 204) {
    std::cout << (o.json ? JsonText(json::object{{"deleted", a.name}}) : "deleted tenant " + a.name)
              << "\n";
    return 0;
  }
  return PrintOk(o, *r, want);
}

int CmdKeys(const ClientOptions& o, const KeyArgs& a) {
  if (a.action == "create") {
    json::object body{{"tenant", a.tenant}, {"role", a.role}, {"description", a.description}};
    auto r = Call(o, "POST", "/v1/keys", JsonText(body), {{"Content-Type", "application/json"}});
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 201) return FailResponse(*r);
    if (o.json) {
      std::cout << r->body << "\n";
      return 0;
    }
    json::object k = json::parse(r->body).as_object();
    std::printf("key id:  %s\nsecret:  %s\ntenant:  %s (%s)\n\n", Str(k, "id").c_str(),
                Str(k, "secret").c_str(), Str(k, "tenant").c_str(), Str(k, "role").c_str());
    std::printf(
        "The secret is shown only now. Use it as\n"
        "  THAW_API_KEY=%s                  (thaw CLI, Bearer)\n"
        "  AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s   (awscli, AWS SDKs)\n",
        Str(k, "secret").c_str(), Str(k, "id").c_str(), Str(k, "secret").c_str());
    return 0;
  }
  if (a.action == "revoke") {
    auto r = Call(o, "DELETE", "/v1/keys/" + a.id);
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 204) return FailResponse(*r);
    std::cout << (o.json ? JsonText(json::object{{"revoked", a.id}}) : "revoked " + a.id) << "\n";
    return 0;
  }
  auto r = Call(o, "GET", "/v1/keys" + (a.tenant.empty() ? "" : "?tenant=" + a.tenant));
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 200) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  std::printf("%-22s %-20s %-7s %-21s %s\n", "KEY ID", "TENANT", "ROLE", "CREATED", "DESCRIPTION");
  const json::value body = json::parse(r->body);
  for (const auto& v : body.as_object().at("keys").as_array()) {
    const auto& k = v.as_object();
    std::printf("%-22s %-20s %-7s %-21s %s\n", Str(k, "id").c_str(), Str(k, "tenant").c_str(),
                Str(k, "role").c_str(), Str(k, "created").c_str(), Str(k, "description").c_str());
  }
  return 0;
}

int CmdWhoAmI(const ClientOptions& o) {
  json::object w;
  if (int done = CallForObject(o, "GET", "/v1/whoami", w); done >= 0) return done;
  std::printf("tenant   %s\nrole     %s\nkey id   %s\naccount  %s\n", Str(w, "tenant").c_str(),
              Str(w, "role").c_str(), Str(w, "key_id").c_str(), Str(w, "account").c_str());
  return 0;
}

namespace {

// One line about a job for people: "ID  STATUS  ..." (ls) or the progress line.
std::string JobSummary(const json::object& job) {
  std::string line = Str(job, "status");
  if (const auto* m = job.if_contains("metrics"); m != nullptr && m->is_object()) {
    const auto& metrics = m->as_object();
    const std::string kind = Str(metrics, "start_kind");
    if (kind != "null" && !kind.empty()) line += ", " + kind + " start";
    line += ", queued " + Str(metrics, "queued_ms") + " ms, billed " + Str(metrics, "billed_ms") +
            " ms";
  }
  return line;
}

StatusOr<json::object> JobBody(const HttpResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec || !v.is_object()) return Internal("the server answered something not JSON: " + r.body);
  return std::move(v.as_object());
}

// Prints a finished (or current) job: its output on stdout, the rest on stderr.
int ShowJob(const ClientOptions& o, const json::object& job) {
  if (o.json) {
    std::cout << JsonText(job) << "\n";
  } else {
    const std::string status = Str(job, "status");
    if (const auto* out = job.if_contains("output"); out != nullptr && !out->is_null()) {
      std::cout << (out->is_string() ? std::string(out->as_string()) : JsonText(*out)) << "\n";
    }
    if (const auto* err = job.if_contains("error"); err != nullptr && err->is_object()) {
      std::fprintf(stderr, "error: %s: %s\n", Str(err->as_object(), "type").c_str(),
                   Str(err->as_object(), "message").c_str());
    }
    std::fprintf(stderr, "job %s: %s\n", Str(job, "id").c_str(), JobSummary(job).c_str());
  }
  const std::string status = Str(job, "status");
  return status == "succeeded" || status == "queued" || status == "running" ? 0 : 1;
}

}  // namespace

int CmdJobs(const ClientOptions& o, const JobArgs& args) {
  if (args.action == "run") {
    std::string input = args.input;
    if (input == "-") {
      input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(input, ec);
    if (ec) return Fail("INPUT must be JSON: " + ec.message());
    auto r =
        Call(o, "POST", "/v1/functions/" + args.name + "/jobs",
             JsonText(json::object{{"input", parsed}}), {{"Content-Type", "application/json"}});
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 201) return FailResponse(*r);
    auto job = JobBody(*r);
    if (!job.ok()) return Fail(job.status().message());
    if (!args.wait) {
      if (o.json) {
        std::cout << r->body << "\n";
      } else {
        std::cout << Str(*job, "id") << "\n";
      }
      return 0;
    }
    // Follow it: each GET answers when the job ends or after a second, so the progress line
    // moves on while nothing polls faster than the server answers.
    const std::string id = Str(*job, "id");
    const bool tty = isatty(STDERR_FILENO) == 1;
    const auto start = std::chrono::steady_clock::now();
    std::string last;
    for (;;) {
      const std::string status = Str(*job, "status");
      if (status != "queued" && status != "running") break;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      char line[160];
      std::snprintf(line, sizeof(line), "job %s: %s %.0fs", id.c_str(), status.c_str(), secs);
      if (tty) {
        std::fprintf(stderr, "\r%s\033[K", line);
      } else if (status != last) {
        std::fprintf(stderr, "%s\n", line);
      }
      last = status;
      auto g = Call(o, "GET", "/v1/jobs/" + id, "", {{"Prefer", "wait=1"}});
      if (!g.ok()) return Fail(g.status().message());
      if (g->status != 200) return FailResponse(*g);
      job = JobBody(*g);
      if (!job.ok()) return Fail(job.status().message());
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    return ShowJob(o, *job);
  }
  if (args.action == "get" || args.action == "cancel") {
    auto r = args.action == "get" ? Call(o, "GET", "/v1/jobs/" + args.id)
                                  : Call(o, "POST", "/v1/jobs/" + args.id + "/cancel");
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 200) return FailResponse(*r);
    auto job = JobBody(*r);
    if (!job.ok()) return Fail(job.status().message());
    if (args.action == "cancel") {
      if (o.json) {
        std::cout << r->body << "\n";
      } else {
        std::fprintf(stderr, "job %s: %s\n", args.id.c_str(), JobSummary(*job).c_str());
      }
      return 0;
    }
    return ShowJob(o, *job);
  }
  if (args.action == "ls") {
    auto r =
        Call(o, "GET", "/v1/functions/" + args.name + "/jobs?limit=" + std::to_string(args.limit));
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 200) return FailResponse(*r);
    if (o.json) {
      std::cout << r->body << "\n";
      return 0;
    }
    auto page = JobBody(*r);
    if (!page.ok()) return Fail(page.status().message());
    std::printf("%-36s  %-9s  %-24s  %s\n", "ID", "STATUS", "CREATED", "DETAILS");
    for (const auto& v : page->at("jobs").as_array()) {
      const auto& job = v.as_object();
      std::printf("%-36s  %-9s  %-24s  %s\n", Str(job, "id").c_str(), Str(job, "status").c_str(),
                  Str(job, "created_at").c_str(), JobSummary(job).c_str());
    }
    return 0;
  }
  return Fail("unknown jobs action " + args.action);
}

}  // namespace thaw::cli

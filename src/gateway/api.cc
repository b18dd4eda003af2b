#include "gateway/api.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <limits>
#include <tuple>

#include "auth/sigv4.h"
#include "cluster/artifact_fetcher.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "common/tenant.h"
#include "gateway/forwarder.h"
#include "gateway/function_url.h"
#include "gateway/internal_api.h"
#include "gateway/invoker.h"
#include "gateway/jobs_api.h"
#include "gateway/lambda_api.h"
#include "gateway/nodes_api.h"
#include "gateway/openai_api.h"
#include "gateway/responses.h"
#include "gateway/scheduler.h"
#include "gateway/scope.h"
#include "gateway/streaming.h"
#include "logs/log_store.h"
#include "meter/meter.h"
#include "metrics/metrics.h"
#include "models/store.h"
#include "pool/gpu_table.h"
#include "pool/pool.h"
#include "pool/response_sink.h"
#include "queue/event_queue.h"
#include "registry/registry.h"
#include "ui/assets.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {

std::pair<http::status, const char*> HttpFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return {http::status::bad_request, "InvalidParameterValueException"};
    case StatusCode::kUnauthenticated:
      return {http::status::unauthorized, "UnauthorizedException"};
    case StatusCode::kPermissionDenied:
      return {http::status::forbidden, "AccessDeniedException"};
    case StatusCode::kNotFound:
      return {http::status::not_found, "ResourceNotFoundException"};
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return {http::status::conflict, "ResourceConflictException"};
    case StatusCode::kPayloadTooLarge:
      return {http::status::payload_too_large, "RequestTooLargeException"};
    case StatusCode::kResourceExhausted:
      return {http::status::too_many_requests, "TooManyRequestsException"};
    case StatusCode::kQuotaExceeded:
      return {http::status::payment_required, "BudgetExceededException"};
    case StatusCode::kDeadlineExceeded:
      return {http::status::gateway_timeout, "Sandbox.Timedout"};
    case StatusCode::kUnavailable:
      return {http::status::service_unavailable, "ServiceException"};
    case StatusCode::kInsufficientStorage:
      return {http::status::insufficient_storage, "InsufficientStorageException"};
    case StatusCode::kOk:
    case StatusCode::kInternal:
      break;
  }
  return {http::status::internal_server_error, "ServiceException"};
}

namespace json = boost::json;

void JsonBody(Response& res, http::status status, const json::value& body) {
  res.result(status);
  res.set(http::field::content_type, "application/json");
  res.body() = JsonText(body);
}

void ErrorBody(Response& res, http::status status, const std::string& type,
               const std::string& message) {
  json::object o{{"errorType", type}, {"errorMessage", message}};
  auto rid = res["X-Thaw-Request-Id"];
  if (!rid.empty()) o["requestId"] = std::string(rid);
  JsonBody(res, status, o);
}

void StatusBody(Response& res, const Status& st) {
  auto [status, type] = HttpFor(st.code());
  ErrorBody(res, status, type, st.message());
}

void MethodNotAllowed(const Request& req, Response& res) {
  ErrorBody(res, http::status::method_not_allowed, "MethodNotAllowed",
            std::string(req.method_string()) + " is not allowed on " +
                std::string(req.target().substr(0, req.target().find('?'))));
}

std::string QueryParam(const std::string& query, const std::string& key) {
  if (query.empty()) return {};             // most calls: no parse, no copy
  const std::string target = "/?" + query;  // the view below points into it
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return {};
  for (auto p : url->params()) {
    if (p.key == key) return p.value;
  }
  return {};
}

std::string Iso8601(int64_t wall_us) {
  // By the calendar arithmetic of <chrono>, not gmtime_r + strftime: a listing of a thousand
  // functions writes three thousand of these.
  namespace chrono = std::chrono;
  const auto secs = chrono::floor<chrono::seconds>(
      chrono::sys_time<chrono::microseconds>(chrono::microseconds(wall_us)));
  const auto day = chrono::floor<chrono::days>(secs);
  const chrono::year_month_day date(day);
  const chrono::hh_mm_ss<chrono::seconds> time(secs - day);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02lld:%02lld:%02lldZ",
                static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                static_cast<unsigned>(date.day()), static_cast<long long>(time.hours().count()),
                static_cast<long long>(time.minutes().count()),
                static_cast<long long>(time.seconds().count()));
  return buf;
}

namespace {

// `name`: the function's name as the caller knows it. `sp`: where the object's memory comes from.
json::object FunctionJson(const std::string& name, const registry::FunctionInfo& f,
                          const std::vector<pool::PoolStats>& stats, const std::string& tmp_storage,
                          json::storage_ptr sp = {}) {
  const auto& latest = f.versions.back();
  json::object o = registry::ManifestToJsonObject(latest->manifest, sp);
  // How its /tmp is kept on this node: whether the size and the memory separation hold.
  o["ephemeral_storage"] =
      json::object({{"size_mb", latest->manifest.ephemeral_storage_mb}, {"kind", tmp_storage}}, sp);
  o["name"] = name;
  o["timeout_s"] = static_cast<double>(latest->manifest.timeout_ms) / 1000.0;
  o.erase("timeout_ms");
  o["version"] = f.latest;
  o["sha256"] = latest->sha256;
  o["code_size"] = latest->code_size;
  o["created"] = Iso8601(f.created_us);
  o["updated"] = Iso8601(f.updated_us);
  o["invoke_path"] = "/v1/functions/" + name + "/invoke";
  json::array versions(sp);
  versions.reserve(f.versions.size());
  for (const auto& v : f.versions) {
    versions.push_back(json::object(
        {{"version", v->version}, {"sha256", v->sha256}, {"created", Iso8601(v->created_us)}}, sp));
  }
  o["versions"] = std::move(versions);
  // busy: ready instances serving a call (a subset of ready).
  int64_t by_state[4] = {0, 0, 0, 0};  // starting, ready, busy, stopping
  constexpr std::string_view kStates[] = {"starting", "ready", "busy", "stopping"};
  json::array instance_list(sp);  // one entry per instance, forked ones too
  json::array templates(sp);
  int64_t queued = 0, inflight = 0;
  o["state"] = "active";
  const pool::PoolStats* planned = nullptr;
  for (const auto& s : stats) {
    // Failing: the newest version's instances keep failing init (restarts back off).
    if (s.init_failures_in_a_row > 0 && s.version == latest->version) {
      o["state"] = "failing";
      o["init_failures_in_a_row"] = s.init_failures_in_a_row;
      o["last_init_error"] = s.last_init_error;
    }
    // The keep-alive the newest version's busiest pool runs now (keep_alive.h).
    if (s.version == latest->version &&
        (planned == nullptr || planned->idle_samples < s.idle_samples)) {
      planned = &s;
    }
    for (const auto& [state, n] : s.instances_by_state) {
      for (size_t k = 0; k < std::size(kStates); ++k) {
        if (state == kStates[k]) by_state[k] += n;
      }
    }
    by_state[2] += s.busy;
    queued += s.queued;
    inflight += s.inflight;
    for (const auto& i : s.instances) {
      instance_list.push_back(json::object({{"id", i.id},
                                            {"version", s.version},
                                            {"pid", i.pid},
                                            {"state", i.state},
                                            {"start_kind", instance::StartKindName(i.start_kind)}},
                                           sp));
    }
    if (!s.template_state.empty()) {
      // Both pools of a version share its template: list it once.
      bool seen = false;
      for (const auto& other : templates) seen = seen || other.at("version") == s.version;
      if (seen) continue;
      json::object t({{"version", s.version}, {"state", s.template_state}, {"pid", s.template_pid}},
                     sp);
      if (!s.template_why.empty()) t["why"] = s.template_why;
      templates.push_back(std::move(t));
    }
  }
  if (planned != nullptr) {
    o["keep_alive_plan"] =
        json::object({{"basis", planned->keep_alive_basis},
                      {"prewarm_s", static_cast<double>(planned->prewarm_us) / 1e6},
                      {"keep_alive_s", static_cast<double>(planned->keep_alive_us) / 1e6},
                      {"idle_samples", planned->idle_samples}},
                     sp);
  }
  json::object instances(sp);
  for (size_t k = 0; k < std::size(kStates); ++k) instances[kStates[k]] = by_state[k];
  o["instances"] = std::move(instances);
  o["instance_list"] = std::move(instance_list);
  o["templates"] = std::move(templates);
  o["queued"] = queued;
  o["inflight"] = inflight;
  return o;
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  out.reserve(8);  // one allocation for any route thaw has (growing 1, 2, 4 was three per call)
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Api::Api(ApiDeps deps)
    : deps_(std::move(deps)),
      forwarder_(deps_.cluster != nullptr
                     ? std::make_unique<Forwarder>(deps_.cluster, deps_.registry, deps_.pools,
                                                   deps_.dispatcher, deps_.cluster_token)
                     : nullptr),
      invoker_(std::make_unique<Invoker>(
          deps_.registry, deps_.pools, deps_.meter, deps_.dispatcher,
          EventOptions{.queue = deps_.events,
                       .max_events = deps_.config->async_queue_events,
                       .max_function_events = deps_.config->max_queued_events,
                       .retry_base_ms = deps_.config->async_retry_base_ms,
                       .region = deps_.config->region,
                       .keys = deps_.keys,
                       .webhook_private_addresses = deps_.config->webhook_private_addresses},
          deps_.config->max_payload_bytes)),
      lambda_(std::make_unique<LambdaApi>(
          LambdaDeps{deps_.registry, deps_.pools, deps_.logs, deps_.config, deps_.admin_key,
                     deps_.keys, invoker_.get(), &blocking_, forwarder_.get()})),
      openai_(std::make_unique<OpenAiApi>(deps_.registry, invoker_.get(), deps_.meter,
                                          forwarder_.get())) {
  if (deps_.jobs != nullptr) {
    jobs_ = std::make_unique<JobsApi>(
        invoker_.get(), deps_.jobs, deps_.logs,
        JobsOptions{.retention_us = deps_.config->job_retention_hours * 3'600'000'000LL,
                    .retry_base_ms = deps_.config->async_retry_base_ms,
                    .max_unfinished = deps_.config->max_queued_events,
                    .webhook_secret =
                        [keys = deps_.keys](const std::string& function) {
                          return keys->WebhookSecret(function);
                        },
                    .webhook_private_addresses = deps_.config->webhook_private_addresses});
    schedules_ = std::make_unique<Scheduler>(deps_.registry, invoker_.get(), deps_.jobs,
                                             deps_.config->region);
  }
  // The config parser has checked it.
  if (auto ranges = ParseCidrList(deps_.config->trusted_proxies); ranges.ok()) {
    trusted_proxies_ = std::move(*ranges);
  }
}
Api::~Api() { blocking_.join(); }

Status Api::ResumeEvents(asio::any_io_executor executor) { return invoker_->Resume(executor); }

Status Api::ResumeJobs(asio::any_io_executor executor) {
  if (jobs_ == nullptr) return Status::Ok();
  THAW_RETURN_IF_ERROR(jobs_->Resume(executor));
  schedules_->Start(executor);
  return Status::Ok();
}

json::object Api::ShowFunction(const auth::Caller& caller, const std::string& name,
                               const registry::FunctionInfo& info, json::storage_ptr sp) const {
  json::object o = FunctionJson(ShownName(caller, name), info, deps_.pools->Stats(name),
                                deps_.tmp_storage, std::move(sp));
  if (schedules_ != nullptr) {
    if (auto next = schedules_->NextRun(name)) o["next_run"] = Iso8601(*next);
  }
  return o;
}

uint64_t Api::BodyLimit(const http::request_header<>& header) const {
  std::string_view target = header.target();
  if (LambdaApi::Owns(target.substr(0, target.find('?')))) return lambda_->BodyLimit(header);
  if (header.method() == http::verb::put && target.starts_with("/v1/functions/")) {
    return static_cast<uint64_t>(deps_.config->max_bundle_bytes);
  }
  // A model file: Screen refuses one over max_model_file_bytes by name (and one without a
  // Content-Length), and its upload refuses bytes past the declared length.
  if (header.method() == http::verb::put && target.starts_with("/v1/artifacts/_blobs/")) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(deps_.config->max_payload_bytes);
}

bool Api::IsUpload(const http::request_header<>& header) const {
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (LambdaApi::Owns(path)) return lambda_->IsUpload(header);
  if (header.method() != http::verb::put) return false;  // an invoke: no split per call
  auto parts = SplitPath(path);
  return header.method() == http::verb::put && parts.size() == 3 && parts[0] == "v1" &&
         parts[1] == "functions";
}

namespace {

void Unauthorized(Response& res, const std::string& message) {
  res.set(http::field::www_authenticate, "Bearer");
  ErrorBody(res, http::status::unauthorized, "UnauthorizedException", message);
}

constexpr char kNeedKey[] = "missing or invalid API key: send Authorization: Bearer <key>";
constexpr char kUrlNeedsKey[] =
    "this function URL needs Authorization: Bearer <key> (url_auth: key)";

}  // namespace

bool Api::Screen(const http::request_header<>& header, Response& res,
                 std::optional<auth::Caller>& caller) const {
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz" || path == "/ui" || path.starts_with("/ui/")) return true;
  if (path.starts_with("/v1/internal/")) return true;  // the cluster token, checked in Serve
  if (LambdaApi::Owns(path)) return lambda_->Screen(header, res, caller);
  if (path.starts_with("/fn/")) {
    std::string function, raw_path, raw_query;
    if (!ParseFunctionUrl(target, function, raw_path, raw_query)) return true;  // 404 later
    if (UrlAllowed(header, function)) return true;
    res.set("X-Thaw-Request-Id", NewRequestId());
    Unauthorized(res, kUrlNeedsKey);
    return false;
  }
  if ((caller = Authenticate(header))) {
    if (!StreamsBody(header)) return true;
    Status st = ScreenUpload(*caller, header);
    if (st.ok()) return true;
    res.set("X-Thaw-Request-Id", NewRequestId());
    StatusBody(res, st);
    return false;
  }
  res.set("X-Thaw-Request-Id", NewRequestId());
  if (OpenAiApi::Owns(path)) {
    res.set(http::field::www_authenticate, "Bearer");
    OpenAiError(res, http::status::unauthorized, "invalid_request_error",
                "Incorrect API key provided: send Authorization: Bearer <thaw key>", "",
                "invalid_api_key");
    return false;
  }
  Unauthorized(res, kNeedKey);
  return false;
}

void Api::Reject(http::status status, const std::string& why, Response& res) const {
  // The route is not known here: answer in both faces' shapes (native errorType/errorMessage,
  // and AWS's X-Amzn-ErrorType with Type/message).
  const char* type = "InvalidRequestContentException";
  if (status == http::status::payload_too_large) type = "RequestTooLargeException";
  if (status == http::status::too_many_requests) type = "TooManyRequestsException";
  if (static_cast<int>(status) >= 500 && status != http::status::not_implemented) {
    type = "ServiceException";
  }
  res.set("X-Amzn-ErrorType", type);
  const char* side = static_cast<int>(status) >= 500 ? "Service" : "User";
  JsonBody(
      res, status,
      json::object{{"errorType", type}, {"errorMessage", why}, {"Type", side}, {"message", why}});
}

std::optional<auth::Caller> Api::Authenticate(const http::request_header<>& req) const {
  if (!deps_.config->auth) return auth::Caller{};
  std::string_view header = req[http::field::authorization];
  constexpr std::string_view kBearer = "Bearer ";
  if (!header.starts_with(kBearer)) return std::nullopt;
  return deps_.keys->Bearer(header.substr(kBearer.size()));
}

std::optional<auth::Caller> Api::UrlCaller(const http::request_header<>& req,
                                           const std::string& function) const {
  auto caller = Authenticate(req);
  if (caller && Visible(*caller, function)) return caller;
  return std::nullopt;
}

bool Api::IsThawCredential(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.starts_with(kBearer)) {
    return deps_.keys->Bearer(authorization.substr(kBearer.size())).has_value();
  }
  auto sig = auth::ParseSigV4Authorization(authorization);
  return sig.ok() && deps_.keys->SigningKey(sig->access_key_id).has_value();
}

bool Api::UrlAllowed(const http::request_header<>& req, const std::string& function) const {
  auto version = deps_.registry->Resolve(function, "");
  // An unknown function is answered 404 once the request is read.
  if (!version.ok() || (*version)->manifest.url_public) return true;
  return UrlCaller(req, function).has_value();
}

asio::awaitable<void> Api::Handle(Request& req, Response& res) { return Serve(Peer{}, req, res); }

asio::awaitable<void> Api::Serve(const Peer& peer, Request& req, Response& res) {
  std::string_view target = req.target();
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string query = qpos == std::string_view::npos ? "" : std::string(target.substr(qpos + 1));

  if (path == "/healthz") {
    res.set("X-Thaw-Request-Id", NewRequestId());
    JsonBody(res, http::status::ok, json::object{{"status", "ok"}});
    co_return;
  }
  if (path == "/ui" || path.starts_with("/ui/")) {
    res.set("X-Thaw-Request-Id", NewRequestId());
    if (req.method() != http::verb::get) {
      co_return MethodNotAllowed(req, res);
    }
    co_return Console(path, res);
  }
  if (path.starts_with("/v1/internal/")) {
    res.set("X-Thaw-Request-Id", NewRequestId());
    co_return co_await ServeInternal(deps_, peer, path, req, res);
  }
  if (LambdaApi::Owns(path)) co_return co_await lambda_->Serve(peer, req, res);
  if (path.starts_with("/fn/")) co_return co_await FunctionUrl(peer, req, res);
  auto parts = SplitPath(path);
  const bool invoke =
      parts.size() == 4 && parts[0] == "v1" && parts[1] == "functions" && parts[3] == "invoke";
  if (!invoke) res.set("X-Thaw-Request-Id", NewRequestId());
  // Screen's, for this request: authenticated once.
  std::optional<auth::Caller> authenticated;
  const auth::Caller* caller = peer.caller;
  if (caller == nullptr && (authenticated = Authenticate(req))) caller = &*authenticated;
  if (caller == nullptr) {
    if (invoke) res.set("X-Thaw-Request-Id", NewRequestId());
    co_return Unauthorized(res, kNeedKey);
  }
  if (OpenAiApi::Owns(path)) co_return co_await openai_->Serve(*caller, peer.writer, req, res);
  const http::verb m = req.method();
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "functions") {
    co_return co_await Functions(*caller, std::move(parts), query, peer, req, res);
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "jobs" && jobs_ != nullptr) {
    co_return co_await jobs_->ServeJob(*caller, parts, req, res);
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "tenants") {
    co_return Tenants(*caller, parts, req, res);
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "artifacts") {
    co_return co_await Artifacts(*caller, parts, query, req, res);
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "keys") {
    co_return Keys(*caller, parts, query, req, res);
  }
  if (parts.size() >= 2 && parts[0] == "v1" && parts[1] == "nodes") {
    co_return co_await ServeNodes(deps_.cluster, *caller, parts, req, res);
  }
  if (path == "/v1/whoami" && m == http::verb::get) co_return WhoAmI(*caller, res);
  if (path == "/v1/usage" && m == http::verb::get) co_return co_await Usage(*caller, query, res);
  if (path == "/v1/advice" && m == http::verb::get) {
    co_return co_await Advice(*caller, query, res);
  }
  if (path == "/metrics" && m == http::verb::get) {
    // Per-function series would show tenants each other's functions.
    if (Status st = RequireAdmin(*caller); !st.ok()) co_return StatusBody(res, st);
    co_return Metrics(res);
  }
  if (path == "/v1/node" && m == http::verb::get) co_return Node(*caller, res);
  ErrorBody(res, http::status::not_found, "NotFound", "no route for " + std::string(path));
}

asio::awaitable<void> Api::Functions(const auth::Caller& caller,
                                     std::vector<std::string_view> parts, const std::string& query,
                                     const Peer& peer, Request& req, Response& res) {
  const http::verb m = req.method();
  if (parts.size() == 2 || (parts.size() == 3 && parts[2].empty())) {
    if (m == http::verb::get) co_return ListFunctions(caller, res);
  } else {
    auto scoped = ScopedName(caller, std::string(parts[2]));
    if (!scoped.ok()) co_return StatusBody(res, scoped.status());
    const std::string& name = *scoped;
    if (parts.size() == 3) {
      if (m == http::verb::put) co_return co_await Deploy(caller, name, req, res);
      if (m == http::verb::get) co_return GetFunction(caller, name, res);
      if (m == http::verb::delete_) co_return co_await DeleteFunction(name, res);
    } else if (parts.size() == 4 && parts[3] == "invoke") {
      if (m == http::verb::post) {
        const std::string qualifier = QueryParam(query, "qualifier");
        if (forwarder_ != nullptr &&
            co_await forwarder_->MaybeForward(name, qualifier, peer, req, res)) {
          co_return;
        }
        co_return co_await Invoke(name, qualifier, peer.writer, req, res);
      }
    } else if (parts.size() == 4 && parts[3] == "logs") {
      if (m == http::verb::get) co_return Logs(name, query, res);
    } else if (parts.size() == 4 && parts[3] == "stats") {
      if (m == http::verb::get) co_return co_await Stats(caller, name, query, res);
    } else if (parts.size() == 4 && (parts[3] == "jobs" || parts[3] == "webhook_secret") &&
               jobs_ != nullptr) {
      co_return co_await jobs_->ServeFunction(caller, name, parts[3], query, req, res);
    } else if (parts.size() == 4 && parts[3] == "events") {
      if (m == http::verb::get) co_return co_await ListEvents(name, query, res);
    } else if (parts.size() == 5 && parts[3] == "events" && parts[4] == "redrive") {
      if (m == http::verb::post) co_return co_await Redrive(name, req, res);
    } else {
      ErrorBody(res, http::status::not_found, "NotFound",
                "no route for " + std::string(req.target()));
      co_return;
    }
  }
  MethodNotAllowed(req, res);
}

asio::awaitable<void> Api::Deploy(const auth::Caller& caller, const std::string& name, Request& req,
                                  Response& res) {
  // An admin may deploy into any tenant (TENANT.NAME), but only one that exists.
  if (auto tenant = deps_.keys->GetTenant(TenantOfFunction(name)); !tenant.ok()) {
    co_return StatusBody(res, tenant.status());
  }
  if (req.body().empty()) {
    ErrorBody(res, http::status::bad_request, "InvalidRequestContentException",
              "request body must be a zip or tar.gz bundle with thaw.yaml at its root");
    co_return;
  }
  auto deployed = co_await asio::co_spawn(
      blocking_,
      [this, &name, &req]() -> asio::awaitable<StatusOr<std::shared_ptr<const registry::Version>>> {
        co_return deps_.registry->Deploy(name, req.body());
      },
      asio::use_awaitable);
  if (!deployed.ok()) co_return StatusBody(res, deployed.status());
  deps_.pools->OnDeployed(name, *deployed);
  json::object prefetched = co_await PrefetchModels(**deployed);
  auto info = deps_.registry->Get(name);
  if (!info.ok()) co_return StatusBody(res, info.status());
  json::object out =
      FunctionJson(ShownName(caller, name), *info, deps_.pools->Stats(name), deps_.tmp_storage);
  for (auto& kv : prefetched) out[kv.key()] = std::move(kv.value());
  JsonBody(res, http::status::created, out);
}

asio::awaitable<json::object> Api::PrefetchModels(const registry::Version& version) {
  json::object out;
  if (version.manifest.models.empty() || deps_.models == nullptr) co_return out;
  json::array models;
  int64_t total_us = 0;
  for (const registry::ModelRef& ref : version.manifest.models) {
    auto done = co_await asio::co_spawn(
        blocking_,
        [this, &ref]() -> asio::awaitable<StatusOr<models::Prefetched>> {
          co_return deps_.models->Prefetch(ref.digest);
        },
        asio::use_awaitable);
    json::object m{{"name", ref.name},
                   {"tag", ref.tag},
                   {"digest", "sha256:" + ref.digest},
                   {"mount", ref.mount}};
    if (done.ok()) {
      m["files"] = done->files;
      m["bytes"] = done->bytes;
      m["prefetch_ms"] = static_cast<double>(done->micros) / 1000.0;
      total_us += done->micros;
    } else {
      // The version is recorded; a failed read-ahead only costs its first load a disk read.
      m["prefetch_error"] = done.status().message();
    }
    models.push_back(std::move(m));
  }
  out["models"] = std::move(models);
  out["prefetch_ms"] = static_cast<double>(total_us) / 1000.0;
  co_return out;
}

void Api::GetFunction(const auth::Caller& caller, const std::string& name, Response& res) {
  auto info = deps_.registry->Get(name);
  if (!info.ok()) return StatusBody(res, info.status());
  json::object o = ShowFunction(caller, name, *info);
  // Only the function's owner (its tenant, or an admin) gets here: the name is scoped.
  o["webhook_secret"] = deps_.keys->WebhookSecret(name);
  JsonBody(res, http::status::ok, o);
}

asio::awaitable<void> Api::ListEvents(const std::string& name, const std::string& query,
                                      Response& res) {
  if (auto info = deps_.registry->Get(name); !info.ok()) co_return StatusBody(res, info.status());
  if (deps_.events == nullptr) {
    co_return ErrorBody(res, http::status::conflict, "ConflictException",
                        "this server keeps Event invocations in memory (durable_events: false)");
  }
  std::optional<queue::EventState> state;
  if (std::string s = QueryParam(query, "state"); !s.empty()) {
    state = queue::ParseState(s);
    if (!state) {
      co_return ErrorBody(
          res, http::status::bad_request, "InvalidParameterValueException",
          "state must be queued, running, succeeded, failed or forwarded, got '" + s + "'");
    }
  }
  int64_t limit = 100, before = 0;
  for (auto [key, out, lo, hi] : {std::tuple{"limit", &limit, int64_t{1}, int64_t{1000}},
                                  std::tuple{"before", &before, int64_t{1}, INT64_MAX}}) {
    const std::string v = QueryParam(query, key);
    if (v.empty()) continue;
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || n < lo || n > hi) {
      co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                          std::string(key) + " must be an integer from " + std::to_string(lo) +
                              (hi == INT64_MAX ? "" : " to " + std::to_string(hi)) + ", got '" + v +
                              "'");
    }
    *out = n;
  }
  auto page = co_await asio::co_spawn(
      blocking_,
      [&]() -> asio::awaitable<StatusOr<queue::EventPage>> {
        co_return deps_.events->List(name, state, before, static_cast<int>(limit));
      },
      asio::use_awaitable);
  if (!page.ok()) co_return StatusBody(res, page.status());
  json::array events;
  for (const queue::Event& e : page->events) {
    json::object o{{"id", e.request_id},
                   {"state", queue::StateName(e.state)},
                   {"qualifier", e.qualifier.empty() ? "$LATEST" : e.qualifier},
                   {"attempts", e.attempts},
                   {"created", Iso8601(e.created_us)},
                   {"created_us", e.created_us},
                   {"payload_bytes", static_cast<int64_t>(e.payload.size())}};
    if (!e.condition.empty()) o["condition"] = e.condition;
    if (!e.error.empty()) o["error"] = e.error;
    events.push_back(std::move(o));
  }
  json::object body{{"events", std::move(events)}};
  body["next"] = page->next > 0 ? json::value(std::to_string(page->next)) : json::value(nullptr);
  JsonBody(res, http::status::ok, body);
}

asio::awaitable<void> Api::Redrive(const std::string& name, Request& req, Response& res) {
  if (auto info = deps_.registry->Get(name); !info.ok()) co_return StatusBody(res, info.status());
  std::vector<std::string> ids;
  if (!req.body().empty()) {
    boost::system::error_code ec;
    json::value body = json::parse(req.body(), ec);
    const json::value* list =
        !ec && body.is_object() ? body.as_object().if_contains("ids") : nullptr;
    if (ec || !body.is_object() || (list != nullptr && !list->is_array())) {
      co_return ErrorBody(res, http::status::bad_request, "InvalidRequestContentException",
                          "the body must be a JSON object {\"ids\": [request id, ...]}");
    }
    if (list != nullptr) {
      for (const json::value& v : list->as_array()) {
        if (!v.is_string() || v.as_string().empty()) {
          co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                              "ids must be request ids (strings)");
        }
        ids.emplace_back(v.as_string());
      }
    }
  }
  auto executor = co_await asio::this_coro::executor;
  auto n = co_await asio::co_spawn(
      blocking_,
      [&]() -> asio::awaitable<StatusOr<int64_t>> {
        co_return invoker_->Redrive(name, ids, executor);
      },
      asio::use_awaitable);
  if (!n.ok()) co_return StatusBody(res, n.status());
  JsonBody(res, http::status::ok, json::object{{"redriven", *n}});
}

void Api::ListFunctions(const auth::Caller& caller, Response& res) {
  // A thousand functions make some 40,000 JSON values: one arena for them all, freed at once.
  json::monotonic_resource arena;
  json::storage_ptr sp(&arena);
  json::object body(sp);
  json::array& fns = body["functions"].emplace_array();
  for (const auto& f : deps_.registry->List()) {
    if (!Visible(caller, f.name)) continue;
    fns.push_back(ShowFunction(caller, f.name, f, sp));
  }
  // Room for as much as the last listing took: a megabyte grown by doubling is copied twice.
  std::string text = JsonText(body, listing_bytes_.load(std::memory_order_relaxed) * 9 / 8);
  listing_bytes_.store(text.size(), std::memory_order_relaxed);
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(text);
}

asio::awaitable<void> Api::DeleteFunction(const std::string& name, Response& res) {
  Status st = co_await asio::co_spawn(
      blocking_,
      [this, &name]() -> asio::awaitable<Status> { co_return deps_.registry->Delete(name); },
      asio::use_awaitable);
  if (!st.ok()) co_return StatusBody(res, st);
  // Its instances drain: in-flight and queued requests still finish.
  deps_.pools->OnDeployed(name, nullptr);
  res.result(http::status::no_content);
}

asio::awaitable<void> Api::Invoke(const std::string& name, const std::string& qualifier,
                                  ResponseWriter* writer, Request& req, Response& res) {
  InvokeRequest ir{name, qualifier, std::move(req.body()),
                   std::string(req["X-Thaw-Client-Context"]), NewRequestId()};
  ir.streams = writer != nullptr;
  ir.forwarded = forwarder_ != nullptr && forwarder_->FromNode(req);
  res.set("X-Thaw-Request-Id", ir.request_id);
  const std::string request_id = ir.request_id;
  auto outcome = co_await invoker_->Invoke(std::move(ir));
  if (!outcome.ok()) co_return StatusBody(res, outcome.status());
  pool::Result& r = outcome->result;
  SetInvokeHeaders(*outcome, res);
  using Kind = pool::Result::Kind;
  switch (r.kind) {
    case Kind::kOk:
      res.result(http::status::ok);
      if (r.sink) {
        // Streamed: the bytes as the runtime writes them, figures known at the end as trailers.
        const std::string& type = r.sink->content_type();
        res.set(http::field::content_type, type.empty() ? "application/octet-stream" : type);
        co_return co_await ForwardChunked(*r.sink, *writer, res);
      }
      res.set(http::field::content_type, "application/json");
      res.body() = std::move(r.body);
      co_return;
    case Kind::kFunctionError: {
      json::object o{{"errorType", r.error_type},
                     {"errorMessage", r.error_message},
                     {"requestId", request_id}};
      boost::system::error_code ec;
      json::value runtime_body = json::parse(r.body, ec);
      if (!ec && runtime_body.is_object()) {
        if (auto* trace = runtime_body.as_object().if_contains("stackTrace")) {
          o["stackTrace"] = *trace;
        }
      }
      co_return JsonBody(res, http::status::bad_gateway, o);
    }
    case Kind::kTimeout:
      co_return ErrorBody(res, http::status::gateway_timeout, r.error_type, r.error_message);
    case Kind::kExitError:
    case Kind::kInitError:
    case Kind::kCanceled:
      co_return ErrorBody(res, http::status::bad_gateway, r.error_type, r.error_message);
    case Kind::kThrottled:
      co_return ErrorBody(res, RefusalStatus(*outcome, res), r.error_type, r.error_message);
    case Kind::kUnavailable:
      co_return ErrorBody(res, http::status::service_unavailable, r.error_type, r.error_message);
  }
}

void Api::Logs(const std::string& name, const std::string& query, Response& res) {
  if (auto info = deps_.registry->Get(name); !info.ok()) return StatusBody(res, info.status());
  int64_t since = 0, limit = 1000;
  std::string s = QueryParam(query, "since"), l = QueryParam(query, "limit");
  if (!s.empty()) since = std::strtoll(s.c_str(), nullptr, 10);
  if (!l.empty()) limit = std::clamp<int64_t>(std::strtoll(l.c_str(), nullptr, 10), 1, 10000);
  json::array lines;
  int64_t next = since;
  for (const auto& line : deps_.logs->Read(name, since, static_cast<size_t>(limit))) {
    lines.push_back(json::object{{"seq", line.seq},
                                 {"time", Iso8601(line.ts_us)},
                                 {"ts_us", line.ts_us},
                                 {"requestId", line.request_id},
                                 {"stream", line.stream},
                                 {"message", line.text}});
    next = line.seq;
  }
  JsonBody(res, http::status::ok, json::object{{"lines", std::move(lines)}, {"next", next}});
}

void Api::Console(std::string_view path, Response& res) {
  if (path == "/ui") {
    res.result(http::status::moved_permanently);
    res.set(http::field::location, "/ui/");
    return;
  }
  const ui::Asset* asset = ui::FindAsset(path.substr(4));  // after "/ui/"
  if (asset == nullptr) {
    return ErrorBody(res, http::status::not_found, "NotFound",
                     "no console file " + std::string(path));
  }
  // The console's own files only: no inline script or style, no other origin, no framing. The
  // key lives in the tab's sessionStorage, which only these scripts can read.
  res.set("Content-Security-Policy",
          "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  res.set(http::field::cache_control, "no-cache");
  res.result(http::status::ok);
  res.set(http::field::content_type, asset->content_type);
  res.body() = std::string(asset->body);
}

void Api::Node(const auth::Caller& caller, Response& res) {
  json::object o{
      {"isolation", deps_.isolation}, {"listen", deps_.config->listen}, {"gpus", NodeGpusJson()}};
  if (caller.admin()) {
    // The whole node's load: an admin's view (a tenant would learn of others' traffic).
    json::object instances{{"starting", 0}, {"ready", 0}, {"busy", 0}, {"stopping", 0}};
    int64_t queued = 0, inflight = 0;
    for (const auto& s : deps_.pools->Stats("")) {
      for (const auto& [state, n] : s.instances_by_state) {
        instances[state] = instances[state].as_int64() + n;
      }
      instances["busy"] = instances["busy"].as_int64() + s.busy;
      queued += s.queued;
      inflight += s.inflight;
    }
    o["instances"] = std::move(instances);
    o["inflight"] = inflight;
    o["queued"] = queued;
    o["memory_mb"] = json::object{{"reserved", deps_.pools->reserved_memory_mb()},
                                  {"budget", deps_.pools->memory_budget_mb()}};
    int64_t events = 0;
    if (deps_.events != nullptr) {
      if (auto depths = deps_.events->Depths(); depths.ok()) {
        for (const auto& [_, depth] : *depths) events += depth.events;
      }
    }
    o["events_queued"] = events;
  }
  JsonBody(res, http::status::ok, o);
}

json::object Api::NodeGpusJson() const {
  json::array devices;
  if (deps_.gpus == nullptr) return json::object{{"source", "none"}, {"devices", devices}};
  for (const auto& row : deps_.gpus->Snapshot()) {
    json::object d{{"index", row.device.index},
                   {"minor", row.device.minor},
                   {"uuid", row.device.uuid},
                   {"name", row.device.name},
                   {"memory_bytes", row.device.memory_bytes},
                   {"holder", row.holder.empty() ? json::value(nullptr) : json::value(row.holder)}};
    if (row.sample.memory_used_bytes >= 0) {
      d["memory_used_bytes"] = row.sample.memory_used_bytes;
    }
    if (row.sample.utilization_percent >= 0) {
      d["utilization_percent"] = row.sample.utilization_percent;
    }
    devices.push_back(std::move(d));
  }
  return json::object{{"source", deps_.gpus->source()},
                      {"device_dir", deps_.gpus->dev_dir()},
                      {"devices", std::move(devices)}};
}

void Api::Metrics(Response& res) {
  metrics::Gauges gauges;
  for (const auto& stats : deps_.pools->Stats("")) {
    for (const auto& [state, n] : stats.instances_by_state) {
      gauges.instances[{stats.function, state}] += n;
    }
    gauges.queued[stats.function] += stats.queued;
    gauges.failing[stats.function] += stats.init_failures_in_a_row;
  }
  gauges.meter_pending = deps_.meter != nullptr ? deps_.meter->pending() : 0;
  if (deps_.events != nullptr) {
    if (auto depths = deps_.events->Depths(); depths.ok()) {
      const int64_t now = WallNowMicros();
      for (const auto& [function, depth] : *depths) {
        gauges.events_queued[function] = depth.events;
        gauges.events_oldest_age_s[function] =
            static_cast<double>(now - depth.oldest_created_us) / 1e6;
      }
    }
  }
  if (deps_.logs != nullptr) {
    const logs::DroppedLines dropped = deps_.logs->Dropped();
    gauges.log_lines_dropped_queue_full = dropped.queue_full;
    gauges.log_lines_dropped_write_failed = dropped.write_failed;
  }
  if (deps_.gpus != nullptr) {
    for (const auto& row : deps_.gpus->Snapshot()) {
      gauges.gpus.push_back({row.device.index, row.device.name, row.holder,
                             row.sample.memory_used_bytes, row.sample.utilization_percent});
    }
  }
  res.result(http::status::ok);
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = deps_.metrics->Render(gauges);
}

asio::awaitable<void> Api::FunctionUrl(const Peer& peer, Request& req, Response& res) {
  const std::string request_id = NewRequestId();
  res.set("X-Thaw-Request-Id", request_id);
  UrlRequest url;
  if (!ParseFunctionUrl(req.target(), url.function, url.raw_path, url.raw_query)) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "a function URL is /fn/{name}/{path}");
  }
  auto version = deps_.registry->Resolve(url.function, "");
  if (!version.ok()) co_return StatusBody(res, version.status());
  // Each function says whether its URL needs the key (url_auth: key, the default) or is public.
  const bool url_public = (*version)->manifest.url_public;
  url.caller = url_public ? std::nullopt : UrlCaller(req, url.function);
  if (!url_public && !url.caller) co_return Unauthorized(res, kUrlNeedsKey);
  // thaw's credentials never reach the function: the key it checked, or any other thaw key.
  url.strip_credentials = !url_public || IsThawCredential(req[http::field::authorization]);
  const std::string peer_ip = peer.address.to_string();
  // A call a node of this cluster forwarded (it shows the cluster token): that node is a
  // trusted proxy, so the function sees the client that node saw, not the node.
  const bool from_node = forwarder_ != nullptr && forwarder_->FromNode(req);
  std::vector<Cidr> with_node;
  if (from_node) {
    with_node = trusted_proxies_;
    if (auto node = ParseCidrList(peer_ip); node.ok()) {
      with_node.insert(with_node.end(), node->begin(), node->end());
    }
  }
  url.forwarded =
      ResolveForwarded(req, peer_ip, peer.local_port, from_node ? with_node : trusted_proxies_);
  if (forwarder_ != nullptr) {
    // Run where the version is warm, like an invoke; what this node resolved about the client
    // goes along.
    req.set("X-Forwarded-For", url.forwarded.for_chain);
    req.set("X-Forwarded-Proto", url.forwarded.proto);
    req.set("X-Forwarded-Port", url.forwarded.port);
    if (co_await forwarder_->MaybeForward(url.function, "", peer, req, res)) co_return;
  }
  url.request_id = request_id;
  url.time_epoch_ms = WallNowMicros() / 1000;
  InvokeRequest ir{url.function, "", BuildUrlEvent(req, url), "", request_id};
  ir.streams = peer.writer != nullptr;
  ir.forwarded = from_node;
  auto outcome = co_await invoker_->Invoke(std::move(ir));
  if (!outcome.ok()) co_return StatusBody(res, outcome.status());
  pool::Result& r = outcome->result;
  SetInvokeHeaders(*outcome, res);
  using Kind = pool::Result::Kind;
  switch (r.kind) {
    case Kind::kOk:
      if (r.sink) co_return co_await StreamUrlResult(*r.sink, *peer.writer, res);
      co_return ApplyUrlResult(r.body, res);
    case Kind::kThrottled:
      co_return ErrorBody(res, RefusalStatus(*outcome, res), r.error_type, r.error_message);
    case Kind::kTimeout:
      co_return ErrorBody(res, http::status::gateway_timeout, r.error_type, r.error_message);
    case Kind::kUnavailable:
      co_return ErrorBody(res, http::status::service_unavailable, r.error_type, r.error_message);
    default:
      co_return ErrorBody(res, http::status::bad_gateway, r.error_type, r.error_message);
  }
}

}  // namespace thaw::gateway

#include "gateway/lambda_api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <cstdio>

#include "auth/sigv4.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "gateway/api.h"
#include "gateway/forwarder.h"
#include "gateway/invoker.h"
#include "gateway/lambda_shapes.h"
#include "gateway/scope.h"
#include "gateway/streaming.h"
#include "logs/log_store.h"
#include "pool/pool.h"
#include "queue/event_queue.h"
#include "registry/registry.h"

namespace thaw::gateway {
namespace {

namespace json = boost::json;
using lambda::FunctionRef;

constexpr size_t kLogTailBytes = 4096;
constexpr size_t kMaxClientContextBytes = 3583;  // Lambda's limit on the encoded header
constexpr int64_t kCodeUrlLifetimeS = 600;       // as an S3 presigned URL from Lambda
constexpr std::string_view kCodePrefix = "/v1/code/";

void AwsError(Response& res, http::status status, std::string_view type, const std::string& message,
              std::string_view reason = {}) {
  res.result(status);
  res.set("X-Amzn-ErrorType", type);
  res.set(http::field::content_type, "application/json");
  json::object o{{"Type", static_cast<int>(status) >= 500 ? "Service" : "User"},
                 {"message", message}};
  if (!reason.empty()) o["Reason"] = reason;
  res.body() = JsonText(o);
}

void AwsStatus(Response& res, const Status& st) {
  auto [status, type] = HttpFor(st.code());
  if (st.code() == StatusCode::kResourceExhausted) res.set(http::field::retry_after, "1");
  AwsError(res, status, type, st.message());
}

void Json(Response& res, http::status status, const json::value& body) {
  res.result(status);
  res.set(http::field::content_type, "application/json");
  res.body() = JsonText(body);
}

template <typename F>
asio::awaitable<std::invoke_result_t<F>> OnBlocking(asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F>;
  co_return co_await asio::co_spawn(
      pool, [f = std::move(f)]() mutable -> asio::awaitable<R> { co_return f(); },
      asio::use_awaitable);
}

}  // namespace

// One request as the routes see it: decoded path segments and query parameters.
struct LambdaApi::Call {
  Request& req;
  std::vector<std::string> segments;
  std::map<std::string, std::string> params;
  std::string request_id;
  auth::Caller caller;
  ResponseWriter* writer = nullptr;  // the connection, for streamed answers

  std::string Param(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
};

LambdaApi::LambdaApi(LambdaDeps deps) : deps_(std::move(deps)) {}

bool LambdaApi::Owns(std::string_view path) {
  return path.starts_with("/2015-03-31/") || path.starts_with("/2017-10-31/") ||
         path.starts_with("/2019-09-30/") || path.starts_with("/2021-11-15/") ||
         path.starts_with("/2019-09-25/") || path.starts_with(kCodePrefix);
}

bool LambdaApi::IsUpload(const http::request_header<>& header) const {
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  const auto m = header.method();
  return (m == http::verb::post &&
          (path == "/2015-03-31/functions" || path == "/2015-03-31/functions/")) ||
         (m == http::verb::put && path.ends_with("/code"));
}

bool LambdaApi::Screen(const http::request_header<>& header, Response& res,
                       std::optional<auth::Caller>& caller) const {
  if (!deps_.config->auth) return true;
  std::string_view target = header.target();
  if (target.starts_with(kCodePrefix)) return true;  // signed URLs: checked by ServeCode
  const std::string request_id = NewRequestId();
  res.set("X-Thaw-Request-Id", request_id);
  res.set("X-Amzn-RequestId", request_id);
  std::string_view authorization = header[http::field::authorization];
  if (authorization.empty()) {
    AwsError(res, http::status::forbidden, "MissingAuthenticationTokenException",
             "Missing Authentication Token: sign the request (AWS SigV4) or send "
             "Authorization: Bearer <key>");
    return false;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.starts_with(kBearer)) {
    if ((caller = deps_.keys->Bearer(authorization.substr(kBearer.size())))) return true;
  } else {
    auto sig = auth::ParseSigV4Authorization(authorization);
    if (!sig.ok()) {
      AwsError(res, http::status::forbidden, "IncompleteSignatureException",
               sig.status().message());
      return false;
    }
    if (deps_.keys->SigningKey(sig->access_key_id)) return true;
  }
  AwsError(res, http::status::forbidden, "UnrecognizedClientException",
           "The security token included in the request is invalid.");
  return false;
}

uint64_t LambdaApi::BodyLimit(const http::request_header<>& header) const {
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  const uint64_t payload = static_cast<uint64_t>(deps_.config->max_payload_bytes);
  if (IsUpload(header)) {
    // A base64 zip inside JSON.
    return static_cast<uint64_t>(deps_.config->max_bundle_bytes) / 3 * 4 + (1 << 20);
  }
  if (path.ends_with("/invocations") &&
      boost::beast::iequals(header["X-Amz-Invocation-Type"], "Event")) {
    return std::min(payload, kEventPayloadBytes);
  }
  return payload;
}

std::optional<auth::Caller> LambdaApi::Authenticate(const Request& req, Response& res) const {
  if (!deps_.config->auth) return auth::Caller{};
  std::string_view header = req[http::field::authorization];
  if (header.empty()) {
    AwsError(res, http::status::forbidden, "MissingAuthenticationTokenException",
             "Missing Authentication Token: sign the request (AWS SigV4) or send "
             "Authorization: Bearer <key>");
    return std::nullopt;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (header.starts_with(kBearer)) {
    if (auto caller = deps_.keys->Bearer(header.substr(kBearer.size()))) return caller;
    AwsError(res, http::status::forbidden, "UnrecognizedClientException",
             "The security token included in the request is invalid.");
    return std::nullopt;
  }
  auto sig = auth::ParseSigV4Authorization(header);
  if (!sig.ok()) {
    AwsError(res, http::status::forbidden, "IncompleteSignatureException", sig.status().message());
    return std::nullopt;
  }
  auto key = deps_.keys->SigningKey(sig->access_key_id);
  if (!key) {
    AwsError(res, http::status::forbidden, "UnrecognizedClientException",
             "The security token included in the request is invalid.");
    return std::nullopt;
  }
  auth::SigV4Request signed_request{req.method_string(), req.target(), {}, req.body()};
  for (const auto& field : req) {
    signed_request.headers.emplace_back(std::string(field.name_string()),
                                        std::string(field.value()));
  }
  auto check = auth::VerifySigV4(signed_request, *sig, key->second, WallNowMicros() / 1'000'000);
  switch (check.outcome) {
    case auth::SigV4Outcome::kOk:
      return std::move(key->first);
    case auth::SigV4Outcome::kMalformed:
      AwsError(res, http::status::forbidden, "IncompleteSignatureException", check.message);
      return std::nullopt;
    case auth::SigV4Outcome::kMismatch:
    case auth::SigV4Outcome::kExpired:
      break;
  }
  AwsError(res, http::status::forbidden, "InvalidSignatureException", check.message);
  return std::nullopt;
}

asio::awaitable<void> LambdaApi::Serve(const Peer& peer, Request& req, Response& res) {
  const std::string target(req.target());
  auto url = boost::urls::parse_origin_form(target);
  Call c{req, {}, {}, NewRequestId(), {}, peer.writer};
  res.set("X-Thaw-Request-Id", c.request_id);
  res.set("X-Amzn-RequestId", c.request_id);
  if (!url) {
    AwsError(res, http::status::bad_request, "InvalidRequestContentException",
             "malformed request target");
    co_return;
  }
  for (auto seg : url->segments()) c.segments.push_back(seg);
  if (!c.segments.empty() && c.segments.back().empty()) c.segments.pop_back();  // trailing '/'
  for (auto p : url->params()) c.params[p.key] = p.value;
  if (std::string_view(target).starts_with(kCodePrefix)) {
    // Authenticated by its signature, like an S3 presigned URL.
    if (c.segments.size() == 3 && req.method() == http::verb::get) {
      co_return co_await ServeCode(c, c.segments[2], res);
    }
    AwsError(res, http::status::not_found, "ResourceNotFoundException", "no such code");
    co_return;
  }
  if (peer.caller != nullptr) {
    c.caller = std::move(*peer.caller);  // Screen's Bearer caller, for this request
  } else {
    auto caller = Authenticate(req, res);
    if (!caller) co_return;
    c.caller = std::move(*caller);
  }
  co_await Route(c, res);
}

StatusOr<std::string> LambdaApi::FunctionOf(Call& c, std::string_view segment) const {
  auto ref = lambda::ParseFunctionRef(std::string(segment));
  if (!ref.ok()) return ref.status();
  auto qualifier = lambda::MergeQualifier(*ref, c.Param("Qualifier"));
  if (!qualifier.ok()) return qualifier.status();
  c.params["Qualifier"] = *qualifier;
  return ScopedLambdaName(c.caller, *ref, deps_.keys);
}

asio::awaitable<void> LambdaApi::Route(Call& c, Response& res) {
  const auto& s = c.segments;
  const http::verb m = c.req.method();
  const size_t n = s.size();
  const bool stream_invoke =
      n == 4 && s[0] == "2021-11-15" && s[3] == "response-streaming-invocations";
  if (n >= 2 && s[1] == "functions") {
    if (s[0] == "2015-03-31" || stream_invoke) {
      if (n == 2) {
        if (m == http::verb::get) co_return ListFunctions(c, res);
        if (m == http::verb::post) co_return co_await CreateFunction(c, res);
      }
      if (n >= 3) {
        auto scoped = FunctionOf(c, s[2]);
        if (!scoped.ok()) co_return AwsStatus(res, scoped.status());
        const std::string& fn = *scoped;
        if (n == 3) {
          if (m == http::verb::get) co_return GetFunction(c, fn, false, res);
          if (m == http::verb::delete_) co_return co_await DeleteFunction(c, fn, res);
        } else if (stream_invoke) {
          if (m == http::verb::post) co_return co_await Invoke(c, fn, true, res);
        } else if (n == 4 && s[3] == "invocations") {
          if (m == http::verb::post) co_return co_await Invoke(c, fn, false, res);
        } else if (n == 4 && s[3] == "configuration") {
          if (m == http::verb::get) co_return GetFunction(c, fn, true, res);
          if (m == http::verb::put) co_return co_await UpdateConfiguration(c, fn, res);
        } else if (n == 4 && s[3] == "code") {
          if (m == http::verb::put) co_return co_await UpdateCode(c, fn, res);
        } else if (n == 4 && s[3] == "versions") {
          if (m == http::verb::get) co_return ListVersions(c, fn, res);
          if (m == http::verb::post) co_return co_await PublishVersion(c, fn, res);
        } else if (n == 4 && s[3] == "aliases") {
          if (m == http::verb::get) co_return ListAliases(c, fn, res);
          if (m == http::verb::post) co_return co_await PutAlias(c, fn, "", res);
        } else if (n == 5 && s[3] == "aliases") {
          if (m == http::verb::get) co_return GetAlias(c, fn, s[4], res);
          if (m == http::verb::put) co_return co_await PutAlias(c, fn, s[4], res);
          if (m == http::verb::delete_) co_return co_await DeleteAlias(c, fn, s[4], res);
        }
      }
    } else if (s[0] == "2019-09-25" && n >= 4 && s[3] == "event-invoke-config" &&
               (n == 4 || (n == 5 && s[4] == "list"))) {
      auto scoped = FunctionOf(c, s[2]);
      if (!scoped.ok()) co_return AwsStatus(res, scoped.status());
      co_return co_await EventInvokeConfig(c, *scoped, n == 5, res);
    } else if (n == 4 && s[3] == "concurrency") {
      auto ref = lambda::ParseFunctionRef(s[2]);
      if (!ref.ok()) co_return AwsStatus(res, ref.status());
      auto scoped = ScopedLambdaName(c.caller, *ref, deps_.keys);
      if (!scoped.ok()) co_return AwsStatus(res, scoped.status());
      if (s[0] == "2017-10-31" && m == http::verb::put) {
        co_return co_await PutConcurrency(c, *scoped, false, res);
      }
      if (s[0] == "2017-10-31" && m == http::verb::delete_) {
        co_return co_await PutConcurrency(c, *scoped, true, res);
      }
      if (s[0] == "2019-09-30" && m == http::verb::get) co_return GetConcurrency(c, *scoped, res);
    }
  }
  AwsError(res, http::status::not_found, "UnknownOperationException",
           "thaw does not implement " + std::string(c.req.method_string()) + " " +
               std::string(c.req.target()));
}

// ---- Invoke ----

asio::awaitable<void> LambdaApi::Invoke(Call& c, const std::string& function, bool streaming,
                                        Response& res) {
  Request& req = c.req;
  std::string type(req["X-Amz-Invocation-Type"]);
  if (type.empty()) type = "RequestResponse";
  if (streaming && type == "Event") {
    co_return AwsError(res, http::status::bad_request, "InvalidParameterValueException",
                       "InvokeWithResponseStream: X-Amz-Invocation-Type must be RequestResponse "
                       "or DryRun");
  }
  if (type != "RequestResponse" && type != "Event" && type != "DryRun") {
    co_return AwsError(
        res, http::status::bad_request, "InvalidParameterValueException",
        "X-Amz-Invocation-Type: expected RequestResponse, Event or DryRun, got '" + type + "'");
  }
  const std::string log_type(req["X-Amz-Log-Type"]);
  if (!log_type.empty() && log_type != "None" && log_type != "Tail") {
    co_return AwsError(res, http::status::bad_request, "InvalidParameterValueException",
                       "X-Amz-Log-Type: expected None or Tail, got '" + log_type + "'");
  }
  // Lambda hands runtimes the client context decoded (they JSON-parse the header); it is
  // re-serialized so that no newline from the caller's JSON reaches a header.
  std::string client_context;
  if (std::string_view encoded = req["X-Amz-Client-Context"]; !encoded.empty()) {
    auto decoded = Base64Decode(encoded);
    boost::system::error_code ec;
    json::value doc;
    if (decoded) doc = json::parse(*decoded, ec);
    if (encoded.size() > kMaxClientContextBytes || !decoded || ec || !doc.is_object()) {
      co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                         "X-Amz-Client-Context: must be a base64-encoded JSON object of at most " +
                             std::to_string(kMaxClientContextBytes) + " bytes encoded");
    }
    client_context = JsonText(doc);
  }
  if (!req.body().empty() && !lambda::IsJson(req.body())) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       "Could not parse request body into json: the payload is not valid JSON");
  }
  // Another node may hold it warm: the call goes there as it came (Event calls stay: the queue
  // runs them here).
  if (type == "RequestResponse" && deps_.forwarder != nullptr) {
    Peer peer;
    peer.writer = c.writer;
    if (co_await deps_.forwarder->MaybeForward(function, c.Param("Qualifier"), peer, req, res)) {
      co_return;
    }
  }
  InvokeRequest ir{function, c.Param("Qualifier"), std::move(req.body()), std::move(client_context),
                   c.request_id};
  ir.streams = streaming && c.writer != nullptr;
  ir.forwarded =
      type == "RequestResponse" && deps_.forwarder != nullptr && deps_.forwarder->FromNode(req);
  if (type == "DryRun") {
    auto resolved = deps_.registry->Resolve(ir.function, ir.qualifier, 0.0);
    if (!resolved.ok()) co_return AwsStatus(res, resolved.status());
    res.result(http::status::no_content);
    co_return;
  }
  if (type == "Event") {
    Status st = co_await deps_.invoker->Enqueue(std::move(ir), co_await asio::this_coro::executor);
    if (!st.ok()) co_return AwsStatus(res, st);
    res.result(http::status::accepted);
    co_return;
  }
  const bool ir_streams = ir.streams;
  auto outcome = co_await deps_.invoker->Invoke(std::move(ir));
  if (!outcome.ok()) co_return AwsStatus(res, outcome.status());
  pool::Result& r = outcome->result;
  res.set("X-Amz-Executed-Version",
          outcome->latest ? std::string("$LATEST") : std::to_string(r.version));
  SetInvokeHeaders(*outcome, res);
  using Kind = pool::Result::Kind;
  if (r.kind == Kind::kThrottled) {
    co_return AwsError(res, RefusalStatus(*outcome, res), r.error_type, r.error_message,
                       outcome->throttle_reason);
  }
  if (r.kind == Kind::kUnavailable) {
    co_return AwsError(res, http::status::service_unavailable, "ServiceException", r.error_message);
  }
  if (ir_streams) {
    // 200 and an event stream, whatever happens from here: errors end it (InvokeComplete).
    res.result(http::status::ok);
    std::function<std::string()> log_tail;
    if (log_type == "Tail") {
      log_tail = [this, function, id = c.request_id] {
        return Base64Encode(lambda::LogTail(deps_.logs->ReadRequest(function, id), kLogTailBytes));
      };
    }
    co_return co_await ForwardEventStream(r.sink.get(), r, *c.writer, res, std::move(log_tail));
  }
  // By now the pool has logged this call's END and REPORT lines (before completing it).
  if (log_type == "Tail") {
    res.set("X-Amz-Log-Result",
            Base64Encode(
                lambda::LogTail(deps_.logs->ReadRequest(function, c.request_id), kLogTailBytes)));
  }
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/json");
  if (r.kind == Kind::kOk) {
    res.body() = std::move(r.body);
    co_return;
  }
  // Function errors, timeouts and runtime failures: 200 with X-Amz-Function-Error, and the
  // error document the runtime posted (or one in the same shape).
  res.set("X-Amz-Function-Error", "Unhandled");
  if (r.kind == Kind::kFunctionError) {
    boost::system::error_code ec;
    json::value doc = json::parse(r.body, ec);
    if (!ec && doc.is_object()) {
      res.body() = std::move(r.body);
      co_return;
    }
  }
  std::string message = r.error_message;
  if (r.kind == Kind::kTimeout) message = "RequestId: " + c.request_id + " Error: " + message;
  res.body() = JsonText(json::object{{"errorType", r.error_type}, {"errorMessage", message}});
}

// ---- Functions ----

void LambdaApi::ListFunctions(Call& c, Response& res) {
  auto page = lambda::ParsePage(c.Param("MaxItems"), c.Param("Marker"));
  if (!page.ok()) return AwsStatus(res, page.status());
  std::vector<registry::FunctionInfo> functions = deps_.registry->List();
  std::erase_if(functions, [&](const auto& f) { return !Visible(c.caller, f.name); });
  Json(res, http::status::ok,
       lambda::ListPage(functions, c.Param("FunctionVersion") == "ALL", *page, "Functions",
                        deps_.config->region));
}

asio::awaitable<void> LambdaApi::CreateFunction(Call& c, Response& res) {
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  auto create = lambda::ParseCreateFunction(*body);
  if (!create.ok()) co_return AwsStatus(res, create.status());
  *body = json::object();  // the zip now lives decoded in `create` only
  c.req.body().clear();
  auto name = ScopedLambdaName(c.caller, create->ref, deps_.keys);
  if (!name.ok()) co_return AwsStatus(res, name.status());
  registry::Manifest manifest;
  manifest.name = *name;
  if (Status st = lambda::ApplyFunctionFields(create->fields, manifest); !st.ok()) {
    co_return AwsStatus(res, st);
  }
  auto deployed = co_await OnBlocking(*deps_.blocking, [&] {
    return deps_.registry->DeployWithManifest(*name, create->zip, manifest, true, create->publish);
  });
  if (!deployed.ok()) co_return AwsStatus(res, deployed.status());
  deps_.pools->OnDeployed(*name, *deployed);
  auto info = deps_.registry->Get(*name);
  if (!info.ok()) co_return AwsStatus(res, info.status());
  Json(res, http::status::created,
       lambda::FunctionConfiguration(
           *info, **deployed, create->publish ? std::to_string((*deployed)->version) : "$LATEST",
           deps_.config->region));
}

void LambdaApi::GetFunction(Call& c, const std::string& function, bool configuration_only,
                            Response& res) {
  auto info = deps_.registry->Get(function);
  if (!info.ok()) return AwsStatus(res, info.status());
  auto version = lambda::VersionFor(*info, c.Param("Qualifier"));
  if (!version.ok()) return AwsStatus(res, version.status());
  json::object config =
      lambda::FunctionConfiguration(*info, *version->version, version->label, deps_.config->region);
  if (configuration_only) return Json(res, http::status::ok, config);
  json::object code{{"RepositoryType", "S3"}};
  if (std::string url = CodeUrl(c, version->version->sha256); !url.empty()) code["Location"] = url;
  json::object body{
      {"Configuration", std::move(config)}, {"Code", std::move(code)}, {"Tags", json::object()}};
  if (info->reserved_concurrency) {
    body["Concurrency"] =
        json::object{{"ReservedConcurrentExecutions", *info->reserved_concurrency}};
  }
  Json(res, http::status::ok, body);
}

asio::awaitable<void> LambdaApi::DeleteFunction(Call& c, const std::string& function,
                                                Response& res) {
  const std::string qualifier = c.Param("Qualifier");
  if (!qualifier.empty()) {
    auto v = lambda::ParseFunctionVersion(qualifier, "Qualifier");
    if (!v.ok() || *v == 0) {
      co_return AwsError(res, http::status::bad_request, "InvalidParameterValueException",
                         "Qualifier: only a published version number can be deleted on its "
                         "own; got '" +
                             qualifier + "'");
    }
    Status st = co_await OnBlocking(*deps_.blocking,
                                    [&] { return deps_.registry->Unpublish(function, *v); });
    if (!st.ok()) co_return AwsStatus(res, st);
    res.result(http::status::no_content);
    co_return;
  }
  Status st =
      co_await OnBlocking(*deps_.blocking, [&] { return deps_.registry->Delete(function); });
  if (!st.ok()) co_return AwsStatus(res, st);
  deps_.pools->OnDeployed(function, nullptr);  // in-flight and queued calls still finish
  res.result(http::status::no_content);
}

asio::awaitable<void> LambdaApi::UpdateCode(Call& c, const std::string& function, Response& res) {
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  auto update = lambda::ParseUpdateCode(*body);
  if (!update.ok()) co_return AwsStatus(res, update.status());
  *body = json::object();
  c.req.body().clear();
  auto deployed = co_await OnBlocking(*deps_.blocking, [&] {
    return deps_.registry->UpdateCode(function, update->zip, update->publish);
  });
  if (!deployed.ok()) co_return AwsStatus(res, deployed.status());
  deps_.pools->OnDeployed(function, *deployed);
  auto info = deps_.registry->Get(function);
  if (!info.ok()) co_return AwsStatus(res, info.status());
  Json(res, http::status::ok,
       lambda::FunctionConfiguration(
           *info, **deployed, update->publish ? std::to_string((*deployed)->version) : "$LATEST",
           deps_.config->region));
}

asio::awaitable<void> LambdaApi::UpdateConfiguration(Call& c, const std::string& function,
                                                     Response& res) {
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  auto fields = lambda::ParseFunctionFields(*body);
  if (!fields.ok()) co_return AwsStatus(res, fields.status());
  auto deployed = co_await OnBlocking(*deps_.blocking, [&] {
    return deps_.registry->UpdateConfig(
        function, [&](registry::Manifest& m) { return lambda::ApplyFunctionFields(*fields, m); });
  });
  if (!deployed.ok()) co_return AwsStatus(res, deployed.status());
  deps_.pools->OnDeployed(function, *deployed);
  auto info = deps_.registry->Get(function);
  if (!info.ok()) co_return AwsStatus(res, info.status());
  Json(res, http::status::ok,
       lambda::FunctionConfiguration(*info, **deployed, "$LATEST", deps_.config->region));
}

// ---- Versions and aliases ----

asio::awaitable<void> LambdaApi::PublishVersion(Call& c, const std::string& function,
                                                Response& res) {
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  auto sha = lambda::ParsePublishSha256(*body);
  if (!sha.ok()) co_return AwsStatus(res, sha.status());
  std::string description;
  if (auto* d = body->if_contains("Description"); d && d->is_string()) {
    description = std::string(d->as_string());
  }
  auto published = co_await OnBlocking(
      *deps_.blocking, [&] { return deps_.registry->Publish(function, description, *sha); });
  if (!published.ok()) co_return AwsStatus(res, published.status());
  auto info = deps_.registry->Get(function);
  if (!info.ok()) co_return AwsStatus(res, info.status());
  auto version = lambda::VersionFor(*info, std::to_string(published->version));
  if (!version.ok()) co_return AwsStatus(res, version.status());
  Json(res, http::status::created,
       lambda::FunctionConfiguration(*info, *version->version, version->label,
                                     deps_.config->region));
}

void LambdaApi::ListVersions(Call& c, const std::string& function, Response& res) {
  auto page = lambda::ParsePage(c.Param("MaxItems"), c.Param("Marker"));
  if (!page.ok()) return AwsStatus(res, page.status());
  auto info = deps_.registry->Get(function);
  if (!info.ok()) return AwsStatus(res, info.status());
  Json(res, http::status::ok,
       lambda::ListPage({*info}, true, *page, "Versions", deps_.config->region));
}

asio::awaitable<void> LambdaApi::PutAlias(Call& c, const std::string& function,
                                          const std::string& alias, Response& res) {
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  const bool create = alias.empty();
  registry::Alias base;
  if (!create) {
    auto info = deps_.registry->Get(function);
    if (!info.ok()) co_return AwsStatus(res, info.status());
    auto it = info->aliases.find(alias);
    if (it == info->aliases.end()) {
      co_return AwsError(
          res, http::status::not_found, "ResourceNotFoundException",
          "Alias not found: " + lambda::FunctionArn(deps_.config->region, function, alias));
    }
    base = it->second;
  }
  auto parsed = lambda::ParseAlias(*body, create ? nullptr : &base);
  if (!parsed.ok()) co_return AwsStatus(res, parsed.status());
  auto stored = co_await OnBlocking(
      *deps_.blocking, [&] { return deps_.registry->PutAlias(function, *parsed, create); });
  if (!stored.ok()) co_return AwsStatus(res, stored.status());
  Json(res, create ? http::status::created : http::status::ok,
       lambda::AliasConfiguration(deps_.config->region, function, *stored));
}

void LambdaApi::GetAlias(Call& c, const std::string& function, const std::string& alias,
                         Response& res) {
  auto info = deps_.registry->Get(function);
  if (!info.ok()) return AwsStatus(res, info.status());
  auto it = info->aliases.find(alias);
  if (it == info->aliases.end()) {
    return AwsError(
        res, http::status::not_found, "ResourceNotFoundException",
        "Alias not found: " + lambda::FunctionArn(deps_.config->region, function, alias));
  }
  Json(res, http::status::ok,
       lambda::AliasConfiguration(deps_.config->region, function, it->second));
}

void LambdaApi::ListAliases(Call& c, const std::string& function, Response& res) {
  auto info = deps_.registry->Get(function);
  if (!info.ok()) return AwsStatus(res, info.status());
  const std::string only = c.Param("FunctionVersion");
  json::array out;
  for (const auto& [name, alias] : info->aliases) {
    const std::string version = alias.version == 0 ? "$LATEST" : std::to_string(alias.version);
    if (!only.empty() && only != version) continue;
    out.push_back(lambda::AliasConfiguration(deps_.config->region, function, alias));
  }
  Json(res, http::status::ok, json::object{{"Aliases", std::move(out)}});
}

asio::awaitable<void> LambdaApi::DeleteAlias(Call& c, const std::string& function,
                                             const std::string& alias, Response& res) {
  Status st = co_await OnBlocking(*deps_.blocking,
                                  [&] { return deps_.registry->DeleteAlias(function, alias); });
  if (!st.ok()) co_return AwsStatus(res, st);
  res.result(http::status::no_content);
}

// ---- Concurrency ----

asio::awaitable<void> LambdaApi::PutConcurrency(Call& c, const std::string& function, bool remove,
                                                Response& res) {
  std::optional<int64_t> reserved;
  if (!remove) {
    auto body = lambda::ParseJsonBody(c.req.body());
    if (!body.ok()) {
      co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                         body.status().message());
    }
    auto n = lambda::ParseReservedConcurrency(*body);
    if (!n.ok()) co_return AwsStatus(res, n.status());
    reserved = *n;
  }
  Status st = co_await OnBlocking(
      *deps_.blocking, [&] { return deps_.registry->SetReservedConcurrency(function, reserved); });
  if (!st.ok()) co_return AwsStatus(res, st);
  if (remove) {
    res.result(http::status::no_content);
    co_return;
  }
  Json(res, http::status::ok, json::object{{"ReservedConcurrentExecutions", *reserved}});
}

void LambdaApi::GetConcurrency(Call& c, const std::string& function, Response& res) {
  auto info = deps_.registry->Get(function);
  if (!info.ok()) return AwsStatus(res, info.status());
  json::object body;
  if (info->reserved_concurrency) {
    body["ReservedConcurrentExecutions"] = *info->reserved_concurrency;
  }
  Json(res, http::status::ok, body);
}

// ---- Event invoke configs ----

asio::awaitable<void> LambdaApi::EventInvokeConfig(Call& c, const std::string& function, bool list,
                                                   Response& res) {
  queue::EventQueue* events = deps_.invoker->event_queue();
  if (events == nullptr) {
    co_return AwsError(res, http::status::not_found, "UnknownOperationException",
                       "this server keeps no event queue");
  }
  auto info = deps_.registry->Get(function);
  if (!info.ok()) co_return AwsStatus(res, info.status());
  const http::verb m = c.req.method();
  std::string qualifier = c.Param("Qualifier");
  if (qualifier.empty()) qualifier = "$LATEST";
  const std::string arn = lambda::FunctionArn(deps_.config->region, function, qualifier);
  if (list) {
    if (m != http::verb::get) {
      co_return AwsError(res, http::status::method_not_allowed, "UnknownOperationException",
                         "expected GET");
    }
    auto configs =
        co_await OnBlocking(*deps_.blocking, [&] { return events->ListConfigs(function); });
    if (!configs.ok()) co_return AwsStatus(res, configs.status());
    json::array items;
    for (const auto& [q, config] : *configs) {
      items.push_back(lambda::EventInvokeConfigJson(
          deps_.config->region, lambda::FunctionArn(deps_.config->region, function, q), config));
    }
    co_return Json(res, http::status::ok, json::object{{"FunctionEventInvokeConfigs", items}});
  }
  if (m == http::verb::get || m == http::verb::delete_) {
    if (m == http::verb::delete_) {
      Status st = co_await OnBlocking(*deps_.blocking,
                                      [&] { return events->DeleteConfig(function, qualifier); });
      if (!st.ok()) co_return AwsStatus(res, st);
      res.result(http::status::no_content);
      co_return;
    }
    auto config = co_await OnBlocking(*deps_.blocking,
                                      [&] { return events->GetConfig(function, qualifier); });
    if (!config.ok()) co_return AwsStatus(res, config.status());
    co_return Json(res, http::status::ok,
                   lambda::EventInvokeConfigJson(deps_.config->region, arn, *config));
  }
  if (m != http::verb::put && m != http::verb::post) {
    co_return AwsError(res, http::status::method_not_allowed, "UnknownOperationException",
                       "expected GET, PUT, POST or DELETE");
  }
  auto body = lambda::ParseJsonBody(c.req.body());
  if (!body.ok()) {
    co_return AwsError(res, http::status::bad_request, "InvalidRequestContentException",
                       body.status().message());
  }
  // Put replaces the config; Update (POST) changes only the fields it names.
  auto stored = co_await OnBlocking(*deps_.blocking, [&]() -> StatusOr<queue::InvokeConfig> {
    auto current = events->GetConfig(function, qualifier);
    if (m == http::verb::put || current.status().code() == StatusCode::kNotFound) {
      return queue::InvokeConfig{};
    }
    return current;
  });
  if (!stored.ok()) co_return AwsStatus(res, stored.status());
  // A destination function must exist, in the function's own account.
  auto resolve = [&](const std::string& text) -> StatusOr<std::string> {
    auto d = ResolveDestination(text, function);
    if (!d.ok() || queue::IsWebhook(*d)) return d;
    if (!deps_.registry->Get(d->substr(0, d->find(':'))).ok()) {
      return InvalidArgument("function " + text + " not found");
    }
    return d;
  };
  auto config = lambda::ParseEventInvokeConfig(*body, resolve, *stored);
  if (!config.ok()) co_return AwsStatus(res, config.status());
  config->updated_us = WallNowMicros();
  Status st = co_await OnBlocking(*deps_.blocking,
                                  [&] { return events->PutConfig(function, qualifier, *config); });
  if (!st.ok()) co_return AwsStatus(res, st);
  Json(res, http::status::ok, lambda::EventInvokeConfigJson(deps_.config->region, arn, *config));
}

// ---- Code downloads ----

std::string LambdaApi::CodeSignature(const std::string& sha256, const std::string& expires) const {
  const std::string data = "code:" + sha256 + ":" + expires;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), deps_.admin_key.data(), static_cast<int>(deps_.admin_key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

std::string LambdaApi::CodeUrl(const Call& c, const std::string& sha256) const {
  std::string host(c.req[http::field::host]);
  if (host.empty()) return {};  // nowhere to point: Location is left out
  const std::string expires = std::to_string(WallNowMicros() / 1'000'000 + kCodeUrlLifetimeS);
  return "http://" + host + std::string(kCodePrefix) + sha256 + "?expires=" + expires +
         "&signature=" + CodeSignature(sha256, expires);
}

asio::awaitable<void> LambdaApi::ServeCode(Call& c, const std::string& sha256, Response& res) {
  const std::string expires = c.Param("expires"), signature = c.Param("signature");
  const std::string want = CodeSignature(sha256, expires);
  char* end = nullptr;
  const long long expiry = std::strtoll(expires.c_str(), &end, 10);
  const bool valid = !expires.empty() && *end == '\0' && signature.size() == want.size() &&
                     CRYPTO_memcmp(signature.data(), want.data(), want.size()) == 0;
  if (!valid || expiry < WallNowMicros() / 1'000'000) {
    co_return AwsError(res, http::status::forbidden, "AccessDeniedException",
                       "the code URL is invalid or has expired: ask GetFunction for a new one");
  }
  bool hex = sha256.size() == 64;
  for (char ch : sha256) hex = hex && std::isxdigit(static_cast<unsigned char>(ch));
  if (!hex)
    co_return AwsError(res, http::status::not_found, "ResourceNotFoundException", "no such code");
  auto data = co_await OnBlocking(
      *deps_.blocking, [&] { return ReadFile(deps_.registry->data_dir() + "/blobs/" + sha256); });
  if (!data.ok())
    co_return AwsError(res, http::status::not_found, "ResourceNotFoundException", "no such code");
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/zip");
  res.body() = std::move(*data);
}

}  // namespace thaw::gateway

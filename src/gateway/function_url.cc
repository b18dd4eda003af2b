#include "gateway/function_url.h"

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <ctime>

#include "common/base64.h"
#include "common/json_text.h"
#include "common/tenant.h"

namespace thaw::gateway {
namespace {

namespace json = boost::json;

// Bodies with these types travel as text; anything else is base64, as AWS does.
bool IsTextual(std::string_view content_type) {
  return content_type.empty() || content_type.starts_with("text/") ||
         content_type.find("json") != std::string_view::npos ||
         content_type.find("xml") != std::string_view::npos ||
         content_type.find("javascript") != std::string_view::npos ||
         content_type.starts_with("application/x-www-form-urlencoded");
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string AwsTime(int64_t epoch_ms) {
  time_t secs = static_cast<time_t>(epoch_ms / 1000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%d/%b/%Y:%H:%M:%S +0000", &t);
  return buf;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Headers that carry thaw's credentials (or sign with them).
bool IsCredentialHeader(const std::string& lower_name) {
  return lower_name == "authorization" || lower_name == "x-amz-date" ||
         lower_name == "x-amz-security-token" || lower_name == "x-amz-content-sha256";
}

// Lambda's IAM authorizer block, naming the key but never its secret.
json::object Authorizer(const auth::Caller& caller) {
  const std::string account = AccountOf(caller.tenant);
  return json::object{
      {"iam", json::object{{"accessKey", caller.key_id},
                           {"accountId", account},
                           {"callerId", caller.key_id},
                           {"cognitoIdentity", nullptr},
                           {"principalOrgId", nullptr},
                           {"userArn", "arn:aws:iam::" + account + ":user/" + caller.key_id},
                           {"userId", caller.key_id}}},
      {"thaw", json::object{{"tenant", caller.tenant},
                            {"keyId", caller.key_id},
                            {"role", auth::RoleName(caller.role)}}}};
}

}  // namespace

Forwarded ResolveForwarded(const http::request_header<>& req, const std::string& peer_ip,
                           uint16_t local_port, const std::vector<Cidr>& trusted) {
  Forwarded f{peer_ip, peer_ip, "http", std::to_string(local_port)};
  if (!CidrContains(trusted, peer_ip)) return f;
  std::vector<std::string_view> chain;
  auto [first, last] = req.equal_range("X-Forwarded-For");
  for (auto it = first; it != last; ++it) {
    std::string_view v = it->value();
    for (size_t start = 0; start <= v.size();) {
      size_t end = std::min(v.find(',', start), v.size());
      if (auto item = Trim(v.substr(start, end - start)); !item.empty()) chain.push_back(item);
      start = end + 1;
    }
  }
  if (chain.empty()) return f;
  f.for_chain.clear();
  for (auto item : chain) f.for_chain.append(item).append(", ");
  f.for_chain += peer_ip;
  // The nearest address that no trusted proxy vouches for is the client.
  f.source_ip = std::string(chain.front());
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if (!CidrContains(trusted, *it)) {
      f.source_ip = std::string(*it);
      break;
    }
  }
  if (auto proto = Trim(req["X-Forwarded-Proto"]); !proto.empty()) f.proto = std::string(proto);
  if (auto port = Trim(req["X-Forwarded-Port"]); !port.empty()) f.port = std::string(port);
  return f;
}

bool ParseFunctionUrl(std::string_view target, std::string& function, std::string& raw_path,
                      std::string& raw_query) {
  constexpr std::string_view kPrefix = "/fn/";
  if (!target.starts_with(kPrefix)) return false;
  auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  raw_query = q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
  std::string_view rest = path.substr(kPrefix.size());
  auto slash = rest.find('/');
  function = std::string(rest.substr(0, slash));
  raw_path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  return !function.empty();
}

std::string BuildUrlEvent(const Request& req, const UrlRequest& url) {
  json::object headers;
  json::array cookies;
  for (const auto& field : req) {
    std::string name = Lower(field.name_string());
    std::string value(field.value());
    if (url.strip_credentials && IsCredentialHeader(name)) continue;
    // The secret nodes of a cluster show each other: never the function's to see.
    if (name == "x-thaw-cluster-token") continue;
    // Set below from what the connection knows.
    if (name == "x-forwarded-for" || name == "x-forwarded-proto" || name == "x-forwarded-port") {
      continue;
    }
    if (name == "cookie") {
      // One entry per cookie, as the 2.0 format carries them.
      size_t start = 0;
      while (start < value.size()) {
        size_t end = value.find(';', start);
        if (end == std::string::npos) end = value.size();
        std::string c = value.substr(start, end - start);
        while (!c.empty() && c.front() == ' ') c.erase(0, 1);
        if (!c.empty()) cookies.push_back(json::string(c));
        start = end + 1;
      }
      continue;
    }
    if (auto* existing = headers.if_contains(name)) {
      *existing = json::string(std::string(existing->as_string()) + "," + value);
    } else {
      headers[name] = value;
    }
  }
  headers["x-forwarded-for"] = url.forwarded.for_chain;
  headers["x-forwarded-proto"] = url.forwarded.proto;
  headers["x-forwarded-port"] = url.forwarded.port;
  json::object query;
  if (!url.raw_query.empty()) {
    const std::string target = "/?" + url.raw_query;  // the view below points into it
    if (auto parsed = boost::urls::parse_origin_form(target)) {
      for (auto p : parsed->params()) {
        if (auto* existing = query.if_contains(p.key)) {
          *existing = json::string(std::string(existing->as_string()) + "," + p.value);
        } else {
          query[p.key] = p.value;
        }
      }
    }
  }
  const std::string content_type = Lower(req[boost::beast::http::field::content_type]);
  const bool base64 = !req.body().empty() && !IsTextual(content_type);
  json::object http{{"method", std::string(req.method_string())},
                    {"path", url.raw_path},
                    {"protocol", "HTTP/1.1"},
                    {"sourceIp", url.forwarded.source_ip},
                    {"userAgent", std::string(req[boost::beast::http::field::user_agent])}};
  json::object context{{"accountId", url.caller ? AccountOf(url.caller->tenant) : "anonymous"},
                       {"apiId", url.function},
                       {"domainName", std::string(req[boost::beast::http::field::host])},
                       {"domainPrefix", url.function},
                       {"http", std::move(http)},
                       {"requestId", url.request_id},
                       {"routeKey", "$default"},
                       {"stage", "$default"},
                       {"time", AwsTime(url.time_epoch_ms)},
                       {"timeEpoch", url.time_epoch_ms}};
  if (url.caller) context["authorizer"] = Authorizer(*url.caller);
  json::object event{{"version", "2.0"},
                     {"routeKey", "$default"},
                     {"rawPath", url.raw_path},
                     {"rawQueryString", url.raw_query},
                     {"headers", std::move(headers)},
                     {"requestContext", std::move(context)},
                     {"isBase64Encoded", base64}};
  if (!cookies.empty()) event["cookies"] = std::move(cookies);
  if (!query.empty()) event["queryStringParameters"] = std::move(query);
  if (!req.body().empty()) {
    event["body"] = base64 ? Base64Encode(req.body()) : std::string(req.body());
  }
  return JsonText(event);
}

namespace {

// statusCode, headers and cookies of an answer or a streamed answer's prelude; false (and a
// 502 in `res`) when the status is not one.
bool ApplyUrlHead(const json::object& o, Response& res) {
  namespace http = boost::beast::http;
  const json::value* status = o.if_contains("statusCode");
  int code = status == nullptr    ? 200
             : status->is_int64() ? static_cast<int>(status->as_int64())
                                  : 0;
  if (code < 100 || code > 599) {
    res.result(http::status::bad_gateway);
    res.set(http::field::content_type, "application/json");
    res.body() = R"({"message":"the function answered with an invalid statusCode"})";
    return false;
  }
  res.result(static_cast<unsigned>(code));
  if (auto* headers = o.if_contains("headers"); headers && headers->is_object()) {
    for (const auto& kv : headers->as_object()) {
      const json::value& hv = kv.value();
      res.set(kv.key(), hv.is_string() ? std::string(hv.as_string()) : JsonText(hv));
    }
  }
  if (auto* cookies = o.if_contains("cookies"); cookies && cookies->is_array()) {
    for (const auto& c : cookies->as_array()) {
      if (c.is_string()) res.insert(http::field::set_cookie, std::string(c.as_string()));
    }
  }
  return true;
}

}  // namespace

bool ApplyUrlPrelude(std::string_view prelude, Response& res) {
  boost::system::error_code ec;
  json::value v = json::parse(prelude, ec);
  if (ec || !v.is_object()) {
    res.result(boost::beast::http::status::bad_gateway);
    res.set(boost::beast::http::field::content_type, "application/json");
    res.body() = R"({"message":"the function's stream began with a malformed prelude"})";
    return false;
  }
  return ApplyUrlHead(v.as_object(), res);
}

void ApplyUrlResult(const std::string& answer, Response& res) {
  namespace http = boost::beast::http;
  boost::system::error_code ec;
  json::value v = json::parse(answer, ec);
  if (ec || !v.is_object() || !v.as_object().contains("statusCode")) {
    res.result(http::status::ok);
    res.set(http::field::content_type, "application/json");
    res.body() = answer;
    return;
  }
  const json::object& o = v.as_object();
  if (!ApplyUrlHead(o, res)) return;
  std::string body;
  if (auto* b = o.if_contains("body"); b != nullptr) {
    body = b->is_string() ? std::string(b->as_string()) : JsonText(*b);
  }
  const json::value* b64 = o.if_contains("isBase64Encoded");
  if (b64 != nullptr && b64->is_bool() && b64->as_bool()) {
    auto decoded = Base64Decode(body);
    if (!decoded) {
      res.result(http::status::bad_gateway);
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"message":"the function's body is not valid base64"})";
      return;
    }
    body = std::move(*decoded);
  }
  res.body() = std::move(body);
}

}  // namespace thaw::gateway

// Function URLs: `/fn/{name}/{path...}` turns any HTTP request into a Lambda function-URL
// event (payload format 2.0) and the function's answer back into an HTTP response, as AWS
// Lambda function URLs do. Pure translation both ways; the route lives in api.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "common/cidr.h"
#include "gateway/http_server.h"

namespace thaw::gateway {

// Where a request came from, as AWS's function URLs tell it: the client's address and the
// X-Forwarded-* headers the function sees.
struct Forwarded {
  std::string source_ip;
  std::string for_chain;  // X-Forwarded-For: the client's chain (if trusted), then the peer
  std::string proto;      // X-Forwarded-Proto
  std::string port;       // X-Forwarded-Port
};

// A client's own X-Forwarded-* headers are believed only when its peer address is in
// `trusted`; sourceIp is then the right-most address in the chain that is not a trusted proxy.
Forwarded ResolveForwarded(const http::request_header<>& req, const std::string& peer_ip,
                           uint16_t local_port, const std::vector<Cidr>& trusted);

struct UrlRequest {
  std::string function;
  std::string raw_path;   // the path after /fn/{name}, starting with '/'
  std::string raw_query;  // after '?', as sent
  std::string request_id;
  int64_t time_epoch_ms = 0;
  std::optional<auth::Caller> caller;  // who called (url_auth: key); none for public URLs
  bool strip_credentials = false;      // drop Authorization and SigV4 headers from the event
  Forwarded forwarded;
};

// Splits "/fn/{name}/{rest}?q" into the function name and the rest; false if it is not one.
bool ParseFunctionUrl(std::string_view target, std::string& function, std::string& raw_path,
                      std::string& raw_query);

// The event the function receives.
std::string BuildUrlEvent(const Request& req, const UrlRequest& url);

// Fills `res` from the function's successful answer: a {statusCode, headers, cookies, body,
// isBase64Encoded} object is used as such; any other JSON value is the body of a 200 JSON
// response, as AWS infers it.
void ApplyUrlResult(const std::string& function_answer, Response& res);

// A streamed answer (RESPONSE_STREAM) whose content type is kUrlPreludeType begins with a JSON
// prelude {statusCode, headers, cookies}, then 8 NUL bytes, then the body, as Lambda's
// awslambda.HttpResponseStream.from writes it. Fills `res`'s status and headers from the
// prelude; false (with a 502 in `res`) when it is malformed.
inline constexpr std::string_view kUrlPreludeType =
    "application/vnd.awslambda.http-integration-response";
inline constexpr std::string_view kUrlPreludeEnd{"\0\0\0\0\0\0\0\0", 8};
bool ApplyUrlPrelude(std::string_view prelude, Response& res);

}  // namespace thaw::gateway

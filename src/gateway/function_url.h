// Function URLs: `/fn/{name}/{path...}` turns any HTTP request into a Lambda function-URL
// event (payload format 2.0) and the function's answer back into an HTTP response, as AWS
// Lambda function URLs do. Pure translation both ways; the route lives in api.cc.
#pragma once

#include <cstdint>
#include <string>

#include "gateway/http_server.h"

namespace thaw::gateway {

struct UrlRequest {
  std::string function;
  std::string raw_path;   // the path after /fn/{name}, starting with '/'
  std::string raw_query;  // after '?', as sent
  std::string request_id;
  int64_t time_epoch_ms = 0;
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

}  // namespace thaw::gateway

// Responses: the native API's JSON answers and error bodies ({"errorType", "errorMessage",
// "requestId"}), shared by the route files (api.cc, admin_api.cc). Defined in api.cc.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "gateway/http_server.h"

namespace thaw::gateway {

void JsonBody(Response& res, http::status status, const boost::json::value& body);
void ErrorBody(Response& res, http::status status, const std::string& type,
               const std::string& message);
// HttpFor's status and type, with the Status's message.
void StatusBody(Response& res, const Status& st);
// 405 naming the method and the path.
void MethodNotAllowed(const Request& req, Response& res);
// `query` is the part after '?'; the value comes back percent-decoded (empty when absent).
std::string QueryParam(const std::string& query, const std::string& key);
// "2026-11-28T17:45:00Z"
std::string Iso8601(int64_t wall_us);

}  // namespace thaw::gateway

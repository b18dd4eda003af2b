#include "queue/destination.h"

#include <boost/json.hpp>
#include <ctime>

#include "common/base64.h"
#include "common/hmac.h"
#include "common/json_text.h"

namespace thaw::queue {
namespace {

namespace json = boost::json;

std::string Timestamp(int64_t wall_us) {
  const time_t secs = static_cast<time_t>(wall_us / 1'000'000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(wall_us / 1000 % 1000));
  return buf;
}

}  // namespace

std::string InvocationRecord(const RecordInput& in) {
  json::object request{{"requestId", in.request_id},
                       {"functionArn", in.function_arn},
                       {"condition", in.condition},
                       {"approximateInvokeCount", in.invoke_count}};
  json::object response{{"statusCode", in.status_code}, {"executedVersion", in.executed_version}};
  if (!in.function_error.empty()) response["functionError"] = in.function_error;
  json::object record{{"version", "1.0"},
                      {"timestamp", Timestamp(in.timestamp_us)},
                      {"requestContext", std::move(request)},
                      {"requestPayload", JsonOrString(in.payload)},
                      {"responseContext", std::move(response)},
                      {"responsePayload", JsonOrString(in.response)}};
  return JsonText(record);
}

std::string WebhookSignature(std::string_view secret, std::string_view body) {
  return "sha256=" + HmacSha256Hex(secret, body);
}

}  // namespace thaw::queue

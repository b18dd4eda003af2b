// Destinations of Event invocations: the invocation record Lambda sends an event's OnSuccess or
// OnFailure destination, and the signature a webhook destination's request carries. Pure
// functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace thaw::queue {

// What the record says about one event's last try.
struct RecordInput {
  std::string request_id;
  std::string function_arn;  // qualified as the event was invoked ($LATEST when unqualified)
  std::string condition;     // Success, RetriesExhausted, EventAgeExceeded
  int64_t invoke_count = 0;  // tries made
  std::string payload;       // the event as sent (JSON, else kept as a string)
  int status_code = 200;     // of the last try: 200 when the function ran
  std::string executed_version;
  std::string function_error;  // "Unhandled" after a function error; empty otherwise
  std::string response;        // the function's answer, or its error document (JSON)
  int64_t timestamp_us = 0;    // wall clock
};

// Lambda's invocation record: {version, timestamp, requestContext{requestId, functionArn,
// condition, approximateInvokeCount}, requestPayload, responseContext{statusCode,
// executedVersion[, functionError]}, responsePayload}, as compact JSON.
std::string InvocationRecord(const RecordInput& in);

// The X-Thaw-Signature value of `body`: "sha256=" + hex HMAC-SHA256(secret, body).
std::string WebhookSignature(std::string_view secret, std::string_view body);

}  // namespace thaw::queue

// Outgoing webhooks: one signed HTTP POST of a JSON body, awaited on the caller's executor with
// a deadline (no thread waits). Heavy (Beast): include only from .cc files. Thread-safe (no
// shared state).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>

#include "common/status.h"

namespace thaw::gateway {

// InvalidArgument unless `url` is http://HOST[:PORT][/PATH] (https is not supported yet).
Status ValidateWebhookUrl(const std::string& url);

// POSTs `body` (application/json) to `url` with X-Thaw-Signature: sha256=HMAC(secret, body)
// and X-Thaw-Webhook-Event: `event`. The HTTP status, or Unavailable when none came back
// within `timeout_ms`.
boost::asio::awaitable<StatusOr<int>> PostWebhook(std::string url, std::string body,
                                                  std::string secret, std::string event,
                                                  int64_t timeout_ms);

}  // namespace thaw::gateway

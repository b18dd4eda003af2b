// A small blocking HTTP/1.1 client for the CLI and the tests. One connection per call.
// Thread-safe (no shared state).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace thaw::cli {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// `server` is http://host:port (a trailing slash is fine). Fails only when no HTTP response
// came back (connection refused, reset, timeout); HTTP error statuses are results.
StatusOr<HttpResult> HttpCall(const std::string& server, const std::string& method,
                              const std::string& target, const std::string& body,
                              const Headers& headers, int timeout_ms = 0);

// PUT with the file at `path` as the body, streamed from disk (Content-Length: its size);
// `progress(sent, total)` is called after each piece.
StatusOr<HttpResult> HttpPutFile(const std::string& server, const std::string& target,
                                 const std::string& path, const Headers& headers,
                                 const std::function<void(int64_t, int64_t)>& progress);

// GET `target`, handing a 200 answer's body to `sink` piece by piece as it arrives (never held
// whole); another status's body is kept in the result (its first 64 KiB). A read that waits
// longer than `idle_timeout_ms` fails (Unavailable); so does a body cut short. A sink that fails
// stops the transfer, and its status is returned.
StatusOr<HttpResult> HttpGetTo(const std::string& server, const std::string& target,
                               const Headers& headers, int idle_timeout_ms,
                               const std::function<Status(std::string_view)>& sink);

}  // namespace thaw::cli

// Streamed invocation answers, shared by the faces: collecting a sink into one body for
// callers that want one, forwarding it chunked with the X-Thaw-* figures known only at the
// end as trailers, and AWS's event-stream framing for Lambda's InvokeWithResponseStream.
// Each forwarder runs on the caller's connection coroutine; a caller that goes away cancels
// the sink, which ends the invocation (response_sink.h).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/http_server.h"
#include "pool/pool.h"

namespace thaw::pool {
class ResponseSink;
}

namespace thaw::gateway {

// Trailers a chunked streamed answer ends with: the billed time, and on a mid-stream error its
// type and message.
inline constexpr std::string_view kStreamTrailers =
    "X-Thaw-Billed-Ms, X-Thaw-Function-Error, X-Thaw-Error";

// The trailers (kStreamTrailers) for a stream that ended with `end`.
void StreamEndTrailers(const pool::Result& end, http::fields& trailers);

// Reads `sink` to its end into `body` of its final Result. Past `max_bytes` the sink is
// cancelled (which ends the call) and the Result is a Function.ResponseSizeTooLarge error.
asio::awaitable<pool::Result> CollectSink(std::shared_ptr<pool::ResponseSink> sink,
                                          int64_t max_bytes);

// Sends `head` (status and headers set by the face; Trailer is added) and then `first` and
// every chunk of `sink` as it arrives, and ends with kStreamTrailers.
asio::awaitable<void> ForwardChunked(pool::ResponseSink& sink, ResponseWriter& writer,
                                     Response& head, std::string first = {});

// A function URL's streamed answer: status and headers from the prelude when the function sent
// one (function_url.h), else 200 with the runtime's content type; then the body as it comes.
asio::awaitable<void> StreamUrlResult(pool::ResponseSink& sink, ResponseWriter& writer,
                                      Response& res);

// CRC-32 (IEEE 802.3, as zlib and AWS's event stream use), continuing from `crc`.
uint32_t Crc32(std::string_view data, uint32_t crc = 0);

// One message of AWS's event-stream encoding: the prelude (total and headers length, CRC), the
// headers (all strings), the payload and the message CRC.
std::string EventStreamMessage(const std::vector<std::pair<std::string, std::string>>& headers,
                               std::string_view payload);

// Lambda's InvokeWithResponseStream answer: `head` (its status and headers), then a PayloadChunk
// event per chunk of `sink` (or of `whole`, for a function that did not stream: null sink), then
// InvokeComplete with ErrorCode/ErrorDetails when it failed, and LogResult from `log_tail` (once
// the call is over) when set.
asio::awaitable<void> ForwardEventStream(pool::ResponseSink* sink, const pool::Result& whole,
                                         ResponseWriter& writer, Response& head,
                                         std::function<std::string()> log_tail);

}  // namespace thaw::gateway

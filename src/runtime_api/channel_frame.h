// The native channel's frames: what thaw and its own runtimes (python3, nodejs, the C++ SDK)
// write on the socketpair an instance inherits as THAW_CHANNEL_FD, instead of the HTTP Runtime
// API. Pure encoding and decoding; no state, any thread.
//
// A frame is `u32 size` (little-endian: the bytes after it), a type byte, then the type's
// fields, each `u32 length` + bytes:
//   runtime -> thaw
//     'N' ready for an event                      (no fields)
//     'R' response, and ready for the next event  request id, body
//     'E' error, and ready for the next event     request id, error type, body (JSON)
//     'I' init error (the runtime then exits)     error type, body (JSON)
//   thaw -> runtime
//     'V' event      request id, deadline (epoch ms, decimal), invoked function ARN, trace id,
//                    client context (JSON or empty), cognito identity (JSON or empty), payload
// Streamed responses go over the HTTP Runtime API (Lambda's streaming mode: chunks and error
// trailers), followed by an 'N'. A runtime that sees EOF on the channel exits: its instance
// is being stopped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace thaw::runtime_api {

inline constexpr char kFrameNext = 'N';
inline constexpr char kFrameResponse = 'R';
inline constexpr char kFrameError = 'E';
inline constexpr char kFrameInitError = 'I';
inline constexpr char kFrameEvent = 'V';
inline constexpr size_t kFrameHeaderBytes = 5;  // size + type

// How many fields a frame of `type` carries; -1 for an unknown type.
int FrameFieldCount(char type);

// Appends a u32 little-endian.
void AppendU32(std::string& out, uint32_t v);
uint32_t ReadU32(const char* p);

struct Frame {
  char type = 0;
  std::vector<std::string_view> fields;  // views into the buffer that was parsed
};

enum class ParseResult { kFrame, kNeedMore, kMalformed };

// Parses the frame at the start of `buf`. kFrame: `out` holds it and `*consumed` its length;
// kNeedMore: `*consumed` is the whole frame's length when its header is in (else 0), so the
// caller knows how much to read; kMalformed: an unknown type, or fields that do not add up to
// the frame's size.
ParseResult ParseFrame(std::string_view buf, Frame& out, size_t* consumed);

// The bytes of an event frame before its payload (the payload's own u32 length included), so
// the payload can follow in the same writev without a copy.
std::string EncodeEventHead(std::string_view request_id, int64_t deadline_ms,
                            std::string_view invoked_arn, std::string_view trace_id,
                            std::string_view client_context, std::string_view cognito_identity,
                            size_t payload_size);

// A whole frame of `type` with `fields` (the runtime's side; tests).
std::string EncodeFrame(char type, const std::vector<std::string_view>& fields);

}  // namespace thaw::runtime_api

// HTTP/1.1 bytes for the connection's hot path, without Beast's parser and serializer: the head
// of a plain request parsed from the bytes read so far, and a whole response's head written into
// a caller's reused buffer. Pure functions, no state; callable from any thread. Heavy (Beast
// types): include only from .cc files.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace thaw::gateway {

// Appends `head`'s status line, fields and the blank line to `out`: the same bytes Beast's
// serializer sends before the body (fields in their order, names as stored, the reason as set
// or the standard one). For a response whose framing is settled (prepare_payload was called and
// it is not chunked): its body, if any, follows as it is.
void AppendResponseHead(const boost::beast::http::response_header<>& head, std::string& out);

// What ParseRequestHead made of the bytes at the start of a connection's buffer.
struct RequestHead {
  enum class Outcome {
    kComplete,    // a plain request's head: `out` holds it, head_bytes long
    kIncomplete,  // no whole head yet, nor more bytes than one may have
    kDecline,     // anything else: Beast's parser decides (and refuses what is malformed)
  };
  Outcome outcome = Outcome::kDecline;
  size_t head_bytes = 0;        // the request line, fields and blank line
  uint64_t content_length = 0;  // its body's length (0 without a Content-Length)
};

// Parses the head of the request at the start of `bytes` into `out` (its method, target,
// version and fields, in order, values trimmed as Beast's parser trims them; `out` is cleared
// first; on kDecline it holds a part). Only the common case is taken, and it is taken exactly as
// Beast's parser would: HTTP/1.0 or 1.1, CRLF line ends, token methods and field names, visible
// ASCII targets and values, at most one Content-Length of plain digits, a Connection of
// keep-alive or close, and no Transfer-Encoding, Expect, Upgrade or Proxy-Connection, in a head
// under `header_limit` bytes. Everything else (obs-fold, other bytes, framing the connection
// handles on Beast's path) is declined, so Beast still answers each malformed request as before.
RequestHead ParseRequestHead(std::string_view bytes, size_t header_limit,
                             boost::beast::http::request_header<>& out);

}  // namespace thaw::gateway

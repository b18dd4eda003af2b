#include "gateway/streaming.h"

#include <array>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "gateway/function_url.h"
#include "pool/response_sink.h"

namespace thaw::gateway {
namespace json = boost::json;

void StreamEndTrailers(const pool::Result& end, http::fields& trailers) {
  trailers.set("X-Thaw-Billed-Ms", std::to_string(end.billed_ms));
  if (end.kind != pool::Result::Kind::kOk || !end.error_type.empty()) {
    trailers.set("X-Thaw-Function-Error", end.error_type);
    // Trailer values are one line of visible text.
    std::string message = end.error_message;
    for (char& c : message) {
      if (c == '\r' || c == '\n' || static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    trailers.set("X-Thaw-Error", message);
  }
}

asio::awaitable<pool::Result> CollectSink(std::shared_ptr<pool::ResponseSink> sink,
                                          int64_t max_bytes) {
  std::string body;
  for (;;) {
    pool::ResponseSink::Piece piece = co_await sink->Read(asio::use_awaitable);
    if (piece.end) break;
    if (static_cast<int64_t>(body.size() + piece.bytes.size()) > max_bytes) {
      sink->Cancel();
      pool::Result r;
      r.kind = pool::Result::Kind::kFunctionError;
      r.error_type = "Function.ResponseSizeTooLarge";
      r.error_message = "Response payload size exceeded maximum allowed payload size (" +
                        std::to_string(max_bytes) + " bytes).";
      r.body = json::serialize(
          json::object{{"errorMessage", r.error_message}, {"errorType", r.error_type}});
      co_return r;
    }
    body += piece.bytes;
  }
  pool::Result r = sink->result();
  if (r.kind == pool::Result::Kind::kOk) r.body = std::move(body);
  co_return r;
}

asio::awaitable<void> ForwardChunked(pool::ResponseSink& sink, ResponseWriter& writer,
                                     Response& head, std::string first) {
  head.erase("X-Thaw-Billed-Ms");  // known at the end: a trailer
  head.set(http::field::trailer, kStreamTrailers);
  bool ok = co_await writer.Begin(head);
  if (ok && !first.empty()) ok = co_await writer.Write(first);
  while (ok) {
    pool::ResponseSink::Piece piece = co_await sink.Read(asio::use_awaitable);
    if (piece.end) break;
    ok = co_await writer.Write(piece.bytes);
  }
  if (!ok) {
    sink.Cancel();
    co_return;
  }
  http::fields trailers;
  StreamEndTrailers(sink.result(), trailers);
  (void)co_await writer.End(trailers);
}

uint32_t Crc32(std::string_view data, uint32_t crc) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : data) crc = kTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

namespace {

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

}  // namespace

std::string EventStreamMessage(const std::vector<std::pair<std::string, std::string>>& headers,
                               std::string_view payload) {
  constexpr uint8_t kStringType = 7;
  std::string h;
  for (const auto& [name, value] : headers) {
    h.push_back(static_cast<char>(name.size()));
    h += name;
    h.push_back(static_cast<char>(kStringType));
    h.push_back(static_cast<char>((value.size() >> 8) & 0xFF));
    h.push_back(static_cast<char>(value.size() & 0xFF));
    h += value;
  }
  const uint32_t total = static_cast<uint32_t>(12 + h.size() + payload.size() + 4);
  std::string out;
  out.reserve(total);
  PutU32(out, total);
  PutU32(out, static_cast<uint32_t>(h.size()));
  PutU32(out, Crc32(out));
  out += h;
  out += payload;
  PutU32(out, Crc32(out));
  return out;
}

namespace {

// Outside the coroutine: GCC 12 cannot take braced string-literal arrays across a co_await.
std::string ChunkEvent(std::string_view bytes) {
  return EventStreamMessage({{":event-type", "PayloadChunk"},
                             {":content-type", "application/octet-stream"},
                             {":message-type", "event"}},
                            bytes);
}

std::string CompleteEvent(std::string_view json_payload) {
  return EventStreamMessage({{":event-type", "InvokeComplete"},
                             {":content-type", "application/json"},
                             {":message-type", "event"}},
                            json_payload);
}

}  // namespace

asio::awaitable<void> ForwardEventStream(pool::ResponseSink* sink, const pool::Result& whole,
                                         ResponseWriter& writer, Response& head,
                                         std::function<std::string()> log_tail) {
  head.erase("X-Thaw-Billed-Ms");
  head.set(http::field::content_type, "application/vnd.amazon.eventstream");
  head.set(http::field::trailer, kStreamTrailers);
  bool ok = co_await writer.Begin(head);
  const pool::Result* end = &whole;
  if (sink == nullptr) {
    if (ok && whole.kind == pool::Result::Kind::kOk && !whole.body.empty()) {
      ok = co_await writer.Write(ChunkEvent(whole.body));
    }
  } else {
    while (ok) {
      pool::ResponseSink::Piece piece = co_await sink->Read(asio::use_awaitable);
      if (piece.end) break;
      ok = co_await writer.Write(ChunkEvent(piece.bytes));
    }
    if (!ok) {
      sink->Cancel();
      co_return;
    }
    end = &sink->result();
  }
  if (!ok) co_return;
  json::object complete;
  if (end->kind != pool::Result::Kind::kOk) {
    complete["ErrorCode"] = end->error_type;
    complete["ErrorDetails"] = end->error_message;
  }
  if (log_tail) complete["LogResult"] = log_tail();
  const std::string last = CompleteEvent(json::serialize(complete));
  ok = co_await writer.Write(last);
  http::fields trailers;
  StreamEndTrailers(*end, trailers);
  if (ok) (void)co_await writer.End(trailers);
}

}  // namespace thaw::gateway

namespace thaw::gateway {

asio::awaitable<void> StreamUrlResult(pool::ResponseSink& sink, ResponseWriter& writer,
                                      Response& res) {
  constexpr size_t kMaxPreludeBytes = 64 * 1024;
  std::string first;
  if (sink.content_type() != kUrlPreludeType) {
    res.result(http::status::ok);
    const std::string& type = sink.content_type();
    res.set(http::field::content_type, type.empty() ? "application/octet-stream" : type);
    co_return co_await ForwardChunked(sink, writer, res);
  }
  std::string head;
  for (;;) {
    if (size_t end = head.find(kUrlPreludeEnd); end != std::string::npos) {
      first = head.substr(end + kUrlPreludeEnd.size());
      head.resize(end);
      break;
    }
    if (head.size() > kMaxPreludeBytes) {
      sink.Cancel();
      res.result(http::status::bad_gateway);
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"message":"the function's stream prelude has no end"})";
      co_return;
    }
    pool::ResponseSink::Piece piece = co_await sink.Read(asio::use_awaitable);
    if (piece.end) {
      // Over before its body began: an error, or a prelude with an empty body.
      const pool::Result& r = sink.result();
      if (r.kind != pool::Result::Kind::kOk) {
        res.result(r.kind == pool::Result::Kind::kTimeout ? http::status::gateway_timeout
                                                          : http::status::bad_gateway);
        res.set(http::field::content_type, "application/json");
        res.body() = json::serialize(json::object{
            {"Type", "User"}, {"errorType", r.error_type}, {"message", r.error_message}});
        res.set("X-Thaw-Billed-Ms", std::to_string(r.billed_ms));
        co_return;
      }
      if (ApplyUrlPrelude(head, res)) res.set("X-Thaw-Billed-Ms", std::to_string(r.billed_ms));
      co_return;
    }
    head += piece.bytes;
  }
  if (!ApplyUrlPrelude(head, res)) {
    sink.Cancel();
    co_return;
  }
  co_await ForwardChunked(sink, writer, res, std::move(first));
}

}  // namespace thaw::gateway

#include "runtime_api/channel_frame.h"

#include <cstring>

namespace thaw::runtime_api {

int FrameFieldCount(char type) {
  switch (type) {
    case kFrameNext:
      return 0;
    case kFrameResponse:
      return 2;
    case kFrameError:
      return 3;
    case kFrameInitError:
      return 2;
    case kFrameEvent:
      return 7;
    default:
      return -1;
  }
}

void AppendU32(std::string& out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                         static_cast<char>((v >> 16) & 0xff), static_cast<char>(v >> 24)};
  out.append(bytes, 4);
}

uint32_t ReadU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | static_cast<uint32_t>(u[1]) << 8 |
         static_cast<uint32_t>(u[2]) << 16 | static_cast<uint32_t>(u[3]) << 24;
}

ParseResult ParseFrame(std::string_view buf, Frame& out, size_t* consumed) {
  *consumed = 0;
  if (buf.size() < kFrameHeaderBytes) return ParseResult::kNeedMore;
  const size_t size = ReadU32(buf.data());
  const size_t total = 4 + size;
  if (size < 1) return ParseResult::kMalformed;
  const int count = FrameFieldCount(buf[4]);
  if (count < 0) return ParseResult::kMalformed;
  if (buf.size() < total) {
    *consumed = total;
    return ParseResult::kNeedMore;
  }
  out.type = buf[4];
  out.fields.clear();
  out.fields.reserve(static_cast<size_t>(count));
  size_t at = kFrameHeaderBytes;
  for (int i = 0; i < count; ++i) {
    if (total - at < 4) return ParseResult::kMalformed;
    const size_t len = ReadU32(buf.data() + at);
    at += 4;
    if (total - at < len) return ParseResult::kMalformed;
    out.fields.emplace_back(buf.data() + at, len);
    at += len;
  }
  if (at != total) return ParseResult::kMalformed;
  *consumed = total;
  return ParseResult::kFrame;
}

namespace {

void AppendField(std::string& out, std::string_view field) {
  AppendU32(out, static_cast<uint32_t>(field.size()));
  out.append(field);
}

}  // namespace

std::string EncodeEventHead(std::string_view request_id, int64_t deadline_ms,
                            std::string_view invoked_arn, std::string_view trace_id,
                            std::string_view client_context, std::string_view cognito_identity,
                            size_t payload_size) {
  const std::string deadline = std::to_string(deadline_ms);
  std::string out;
  out.reserve(64 + request_id.size() + invoked_arn.size() + trace_id.size() +
              client_context.size() + cognito_identity.size());
  AppendU32(out, 0);  // the size, set below
  out.push_back(kFrameEvent);
  for (std::string_view f : {request_id, std::string_view(deadline), invoked_arn, trace_id,
                             client_context, cognito_identity}) {
    AppendField(out, f);
  }
  AppendU32(out, static_cast<uint32_t>(payload_size));
  const uint32_t size = static_cast<uint32_t>(out.size() - 4 + payload_size);
  std::string head;
  AppendU32(head, size);
  std::memcpy(out.data(), head.data(), 4);
  return out;
}

std::string EncodeFrame(char type, const std::vector<std::string_view>& fields) {
  std::string out;
  AppendU32(out, 0);
  out.push_back(type);
  for (std::string_view f : fields) AppendField(out, f);
  std::string head;
  AppendU32(head, static_cast<uint32_t>(out.size() - 4));
  std::memcpy(out.data(), head.data(), 4);
  return out;
}

}  // namespace thaw::runtime_api

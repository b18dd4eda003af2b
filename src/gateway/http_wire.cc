#include "gateway/http_wire.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>

namespace thaw::gateway {

namespace http = boost::beast::http;

void AppendResponseHead(const http::response_header<>& head, std::string& out) {
  const unsigned version = head.version();
  const unsigned code = head.result_int();
  // "HTTP/X.Y ### " as Beast writes it (its status codes are three digits).
  char line[13] = {'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', '0', '0', '0', ' '};
  line[5] = static_cast<char>('0' + version / 10);
  line[7] = static_cast<char>('0' + version % 10);
  line[9] = static_cast<char>('0' + code / 100);
  line[10] = static_cast<char>('0' + (code / 10) % 10);
  line[11] = static_cast<char>('0' + code % 10);
  out.append(line, sizeof(line));
  const auto reason = head.reason();
  out.append(reason.data(), reason.size());
  out.append("\r\n", 2);
  for (const auto& f : head) {
    const auto name = f.name_string();
    const auto value = f.value();
    out.append(name.data(), name.size());
    out.append(": ", 2);
    out.append(value.data(), value.size());
    out.append("\r\n", 2);
  }
  out.append("\r\n", 2);
}

namespace {

// RFC 9110 tchar: the bytes of methods and field names.
constexpr bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// Visible ASCII: the bytes of the targets taken (Beast takes more; those it decides).
constexpr bool IsVisible(unsigned char c) { return c > 0x20 && c < 0x7f; }

}  // namespace

RequestHead ParseRequestHead(std::string_view bytes, size_t header_limit,
                             http::request_header<>& out) {
  using Outcome = RequestHead::Outcome;
  RequestHead head;
  out = http::request_header<>();
  const size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    head.outcome = bytes.size() + 4 < header_limit ? Outcome::kIncomplete : Outcome::kDecline;
    return head;
  }
  // Near the limit Beast's own accounting decides.
  if (end + 8 > header_limit) return head;
  const char* p = bytes.data();
  const char* const last = p + end + 2;  // past the CRLF that ends the last line
  auto byte = [](const char* at) { return static_cast<unsigned char>(*at); };

  // request-line = method SP request-target SP HTTP-version CRLF
  const char* const method = p;
  while (p < last && IsTokenChar(byte(p))) ++p;
  if (p == method || p == last || *p != ' ') return head;
  const std::string_view method_string(method, static_cast<size_t>(p - method));
  const char* const target = ++p;
  while (p < last && IsVisible(byte(p))) ++p;
  if (p == target || p == last || *p != ' ') return head;
  const std::string_view target_string(target, static_cast<size_t>(p - target));
  ++p;
  if (last - p < 10 || std::string_view(p, 7) != "HTTP/1." || (p[7] != '0' && p[7] != '1') ||
      p[8] != '\r' || p[9] != '\n') {
    return head;
  }
  const unsigned version = p[7] == '1' ? 11 : 10;
  p += 10;
  const http::verb verb = http::string_to_verb(method_string);
  if (verb != http::verb::unknown) {
    out.method(verb);
  } else {
    out.method_string(method_string);
  }
  out.target(target_string);
  out.version(version);

  bool has_length = false;
  // header-field = field-name ":" OWS field-value OWS CRLF, with no obs-fold
  while (p < last) {
    const char* const name = p;
    while (p < last && IsTokenChar(byte(p))) ++p;
    if (p == name || p == last || *p != ':') return head;
    const std::string_view name_string(name, static_cast<size_t>(p - name));
    ++p;
    while (p < last && (*p == ' ' || *p == '\t')) ++p;
    const char* const value = p;
    while (p < last && (IsVisible(byte(p)) || *p == ' ' || *p == '\t')) ++p;
    if (last - p < 2 || p[0] != '\r' || p[1] != '\n') return head;
    const char* value_end = p;
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
    const std::string_view value_string(value, static_cast<size_t>(value_end - value));
    p += 2;
    const http::field f = http::string_to_field(name_string);
    switch (f) {
      case http::field::content_length: {
        if (has_length || value_string.empty() || value_string.size() > 18) return head;
        uint64_t n = 0;
        for (char c : value_string) {
          if (c < '0' || c > '9') return head;
          n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        has_length = true;
        head.content_length = n;
        break;
      }
      case http::field::connection:
        if (!boost::beast::iequals(value_string, "keep-alive") &&
            !boost::beast::iequals(value_string, "close")) {
          return head;
        }
        break;
      case http::field::transfer_encoding:
      case http::field::expect:
      case http::field::upgrade:
      case http::field::proxy_connection:
        return head;
      default:
        break;
    }
    out.insert(f, name_string, value_string);
  }
  head.outcome = Outcome::kComplete;
  head.head_bytes = end + 4;
  return head;
}

}  // namespace thaw::gateway

#include "common/json_text.h"

#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <string_view>

namespace thaw {
namespace {

// `s` as a JSON string, escaped as boost::json::serialize escapes it: the quote, the backslash
// and control characters; other bytes (UTF-8 included) as they are.
void AppendString(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t plain = 0;  // start of the run not yet copied
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    out.push_back('\\');
    switch (c) {
      case '"':
      case '\\':
        out.push_back(static_cast<char>(c));
        break;
      case '\b':
        out.push_back('b');
        break;
      case '\t':
        out.push_back('t');
        break;
      case '\n':
        out.push_back('n');
        break;
      case '\f':
        out.push_back('f');
        break;
      case '\r':
        out.push_back('r');
        break;
      default:
        out += "u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
  }
  out.append(s.data() + plain, s.size() - plain);
  out.push_back('"');
}

template <typename Int>
void AppendInteger(Int x, std::string& out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x);
  out.append(buf, end);
}

void Append(const boost::json::value& v, std::string& out) {
  switch (v.kind()) {
    case boost::json::kind::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out.push_back(',');
        first = false;
        AppendString(kv.key(), out);
        out.push_back(':');
        Append(kv.value(), out);
      }
      out.push_back('}');
      return;
    }
    case boost::json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& item : v.get_array()) {
        if (!first) out.push_back(',');
        first = false;
        Append(item, out);
      }
      out.push_back(']');
      return;
    }
    case boost::json::kind::string:
      AppendString(v.get_string(), out);
      return;
    case boost::json::kind::int64:
      AppendInteger(v.get_int64(), out);
      return;
    case boost::json::kind::uint64:
      AppendInteger(v.get_uint64(), out);
      return;
    case boost::json::kind::double_:
      out += JsonNumber(v.get_double());
      return;
    case boost::json::kind::bool_:
      out += v.get_bool() ? "true" : "false";
      return;
    case boost::json::kind::null:
      out += "null";
      return;
  }
}

}  // namespace

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  if (x == 0) return "0";  // also -0, as JSON.stringify writes it
  char buf[64];
  // Fixed notation for integral values keeps 1e20 as twenty-one digits; 1e21 and above (and
  // every fraction) take the shortest round-trip form, which may use an exponent.
  const auto format = std::trunc(x) == x && std::fabs(x) < 1e21 ? std::chars_format::fixed
                                                                : std::chars_format::general;
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x, format);
  if (ec != std::errc()) return "null";  // 64 bytes hold any double: never happens
  return std::string(buf, end);
}

std::string JsonText(const boost::json::value& v, size_t reserve) {
  std::string out;
  out.reserve(reserve);
  Append(v, out);
  return out;
}

boost::json::value JsonOrString(const std::string& text) {
  if (text.empty()) return nullptr;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec) return boost::json::value(text);
  return v;
}

}  // namespace thaw

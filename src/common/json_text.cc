#include "common/json_text.h"

#include <boost/json.hpp>
#include <charconv>
#include <cmath>

namespace thaw {
namespace {

void Append(const boost::json::value& v, std::string& out) {
  switch (v.kind()) {
    case boost::json::kind::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out.push_back(',');
        first = false;
        out += boost::json::serialize(kv.key());
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
    case boost::json::kind::double_:
      out += JsonNumber(v.get_double());
      return;
    default:  // strings, integers, booleans and null: boost writes them as JSON does
      out += boost::json::serialize(v);
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

std::string JsonText(const boost::json::value& v) {
  std::string out;
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

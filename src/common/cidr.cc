#include "common/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace thaw {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ParseAddress(std::string_view text, Cidr& out) {
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), out.bytes.data()) == 1) {
    out.v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.bytes.data()) != 1) return false;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(out.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
    std::memmove(out.bytes.data(), out.bytes.data() + 12, 4);
    out.v6 = false;
  } else {
    out.v6 = true;
  }
  return true;
}

bool PrefixMatches(const Cidr& range, const Cidr& address) {
  if (range.v6 != address.v6) return false;
  int bits = range.prefix;
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((range.bytes[i] & mask) != (address.bytes[i] & mask)) return false;
  }
  return true;
}

}  // namespace

StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view text) {
  std::vector<Cidr> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.find(',', start), text.size());
    std::string_view item = Trim(text.substr(start, end - start));
    start = end + 1;
    if (item.empty()) continue;
    Cidr c;
    auto slash = item.find('/');
    if (!ParseAddress(item.substr(0, slash), c)) {
      return InvalidArgument("'" + std::string(item) + "' is not an IP address or ADDRESS/BITS");
    }
    const int max_bits = c.v6 ? 128 : 32;
    c.prefix = max_bits;
    if (slash != std::string_view::npos) {
      const std::string bits(item.substr(slash + 1));
      char* stop = nullptr;
      long n = std::strtol(bits.c_str(), &stop, 10);
      if (bits.empty() || *stop != '\0' || n < 0 || n > max_bits) {
        return InvalidArgument("'" + std::string(item) + "': prefix length must be 0-" +
                               std::to_string(max_bits));
      }
      c.prefix = static_cast<int>(n);
    }
    out.push_back(c);
  }
  return out;
}

bool CidrContains(const std::vector<Cidr>& ranges, std::string_view address) {
  Cidr a;
  if (!ParseAddress(Trim(address), a)) return false;
  for (const Cidr& r : ranges) {
    if (PrefixMatches(r, a)) return true;
  }
  return false;
}

}  // namespace thaw

// Cidr: IPv4/IPv6 address ranges ("10.0.0.0/8", "::1", "192.0.2.7"), for the trusted_proxies
// knob. Values: parse once at start-up, then match from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace thaw {

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4
  int prefix = 0;                   // leading bits that must match
};

// A comma-separated list of addresses and ADDRESS/BITS ranges; empty text is an empty list.
[[nodiscard]] StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view text);
// Whether `address` (an IP address in text, IPv4-mapped IPv6 counting as IPv4) is in `ranges`.
bool CidrContains(const std::vector<Cidr>& ranges, std::string_view address);

}  // namespace thaw

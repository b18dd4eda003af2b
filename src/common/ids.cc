#include "common/ids.h"

#include <sys/random.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>

#include "common/status.h"

namespace thaw {
namespace {

std::mt19937_64& ThreadRng() {
  thread_local std::mt19937_64 rng = [] {
    uint64_t seed = 0;
    // SAFETY: getrandom writes at most sizeof(seed) bytes into a local.
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) seed = std::random_device{}();
    return std::mt19937_64(seed);
  }();
  return rng;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

std::string NewRequestId() {
  // UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Time-ordered
  // ids keep the meter's primary-key inserts at the end of the index instead of all over it.
  const auto ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
  uint64_t hi = (ms << 16) | (ThreadRng()() & 0xffffULL), lo = ThreadRng()();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000007000ULL;  // version 7
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out.push_back('-');
    uint64_t word = i < 16 ? hi : lo;
    out.push_back(kHex[(word >> ((15 - i % 16) * 4)) & 0xf]);
  }
  return out;
}

std::string NewTraceId(int64_t epoch_seconds) {
  // Not secrets: the thread's generator, as for request ids.
  // Per call: written digit by digit, not by snprintf. Root=1-%08x-%08x%016x;Parent=%016x.
  std::mt19937_64& rng = ThreadRng();
  const uint64_t seconds = static_cast<uint64_t>(epoch_seconds) & 0xffffffffULL;
  const uint64_t root_hi = rng() & 0xffffffffULL, root_lo = rng(), parent = rng();
  std::string out;
  out.reserve(81);
  auto hex = [&out](uint64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(v >> (i * 4)) & 0xf]);
  };
  out += "Root=1-";
  hex(seconds, 8);
  out += '-';
  hex(root_hi, 8);
  hex(root_lo, 16);
  out += ";Parent=";
  hex(parent, 16);
  out += ";Sampled=0";
  return out;
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n <= 0) throw std::runtime_error("getrandom failed");  // broken invariant: no entropy
    got += static_cast<size_t>(n);
  }
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

}  // namespace thaw

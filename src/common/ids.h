// Identifiers: request ids (UUID version 7: time-ordered, random below the millisecond) and
// secret keys. Thread-safe: each thread draws from its own generator seeded from the kernel.
#pragma once

#include <cstdint>
#include <string>

namespace thaw {

std::string NewRequestId();
// An X-Ray trace header as Lambda hands it to runtimes (Lambda-Runtime-Trace-Id):
// "Root=1-<8 hex: epoch seconds>-<24 random hex>;Parent=<16 random hex>;Sampled=0".
std::string NewTraceId(int64_t epoch_seconds);
// `bytes` random bytes from getrandom(2), hex encoded. For secrets.
std::string RandomHex(size_t bytes);

}  // namespace thaw

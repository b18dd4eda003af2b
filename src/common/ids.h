// Identifiers: request ids (UUID version 7: time-ordered, random below the millisecond) and
// secret keys. Thread-safe: each thread draws from its own generator seeded from the kernel.
#pragma once

#include <string>

namespace thaw {

std::string NewRequestId();
// `bytes` random bytes from getrandom(2), hex encoded. For secrets.
std::string RandomHex(size_t bytes);

}  // namespace thaw

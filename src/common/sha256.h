// SHA-256 of a byte string, hex encoded (content addresses for the blob store). Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace thaw {

std::string Sha256Hex(std::string_view data);

}  // namespace thaw

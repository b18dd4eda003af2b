// Base64 (RFC 4648 standard alphabet, '=' padded) and hex, for the Lambda API's ZipFile,
// LogResult, client context and CodeSha256. Stateless; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace thaw {

std::string Base64Encode(std::string_view data);
// Strict about the alphabet and the padding; skips whitespace (wrapped text). nullopt when
// `text` is not base64.
std::optional<std::string> Base64Decode(std::string_view text);
// Lower- or upper-case hex; nullopt when malformed.
std::optional<std::string> HexDecode(std::string_view hex);
std::string HexEncode(std::string_view data);

}  // namespace thaw

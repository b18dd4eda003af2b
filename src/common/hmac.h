// HMAC-SHA256 for signing webhook bodies (X-Thaw-Signature: sha256=<hex>). Pure; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace thaw {

// HMAC-SHA256(key, data), hex encoded (64 lower-case digits).
std::string HmacSha256Hex(std::string_view key, std::string_view data);
// The X-Thaw-Signature value for `body` signed with `secret`: "sha256=<hex>".
std::string WebhookSignature(std::string_view secret, std::string_view body);

}  // namespace thaw

// Webhook: posts one request to an http:// or https:// URL (an Event destination) from a
// coroutine, with a deadline; https verifies the server's certificate chain against the
// system's CAs (and those of `webhook_ca_file`) and its name against the URL's host.
// Thread-safe (no shared state but the TLS context, which TrustWebhookCaFile sets up first).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace thaw::gateway {

// The HTTP status the URL answered `body` with, or Unavailable when no answer came within
// `timeout` (refused, reset, TLS failure, name not found); InvalidArgument for a bad URL;
// PermissionDenied when the name resolves only to loopback, private, link-local or other
// internal addresses and `allow_private` is false (a tenant's webhook must not reach the
// node's own services).
boost::asio::awaitable<StatusOr<int>> PostWebhook(
    const std::string& url, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    std::chrono::milliseconds timeout, bool allow_private);

// Adds the PEM CA certificates in `path` to those https webhooks trust (the system's stay
// trusted). Called once at start, before any post; InvalidArgument naming the file when it
// cannot be read or holds no certificate.
[[nodiscard]] Status TrustWebhookCaFile(const std::string& path);

// InvalidArgument unless `url` is an absolute http:// or https:// URL with a host.
Status ValidateWebhookUrl(const std::string& url);

// Whether `address` is loopback, private (RFC 1918, fc00::/7), link-local, carrier-grade NAT,
// unspecified or multicast. Pure.
bool IsInternalAddress(const boost::asio::ip::address& address);

}  // namespace thaw::gateway

// AWS Signature Version 4 (header form, AWS4-HMAC-SHA256): parses an Authorization header and
// checks a request's signature against a secret, the way AWS does for the Lambda API, so that
// awscli, botocore and the AWS SDKs can call thaw unchanged. Pure functions of their arguments
// (no I/O, no clock: the caller passes the time), safe to call from any thread.
//
// The canonical request follows what the clients sign for every service but S3: the path as
// sent is normalized (empty, "." and ".." segments removed) and URI-encoded again, so a path
// sent as /functions/f%3A1 is signed as /functions/f%253A1; the query is decoded, re-encoded
// (RFC 3986) and sorted; header values are trimmed with inner whitespace runs collapsed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace thaw::auth {

// How far the request's X-Amz-Date may be from the server clock, either way. 15 minutes is the
// general SigV4 window; AWS Lambda itself answers with "- 5 min." (pass 300 to match it).
inline constexpr int64_t kSigV4DefaultMaxSkewSeconds = 15 * 60;

// "AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/lambda/aws4_request,
//  SignedHeaders=host;x-amz-date, Signature=<64 hex>", taken apart.
struct SigV4Authorization {
  std::string access_key_id;
  std::string date;     // YYYYMMDD, the credential scope's day
  std::string region;   // as scoped by the client; checking it is the caller's policy
  std::string service;  // likewise ("lambda")
  std::vector<std::string> signed_headers;  // lowercase, in the order listed
  std::string signature;                    // 64 lowercase hex digits
};

// An InvalidArgument status saying what is wrong (in AWS's words where AWS has some) when
// `header` is not a well-formed SigV4 Authorization value.
[[nodiscard]] StatusOr<SigV4Authorization> ParseSigV4Authorization(std::string_view header);

// The Authorization header value for `auth` (the inverse of ParseSigV4Authorization).
std::string FormatSigV4Authorization(const SigV4Authorization& auth);

// A request as it arrived. Views: the caller keeps the underlying bytes alive.
struct SigV4Request {
  std::string_view method;  // "POST"
  std::string_view target;  // the raw request target: percent-encoded path, optional ?query
  std::vector<std::pair<std::string, std::string>> headers;  // as received; any case, repeats
  std::string_view body;
};

enum class SigV4Outcome {
  kOk,
  kMalformed,  // not checkable: a header missing or ill-formed (AWS: IncompleteSignature, 400)
  kMismatch,   // checked and wrong (AWS: InvalidSignatureException / SignatureDoesNotMatch, 403)
  kExpired,    // X-Amz-Date outside the skew window (AWS: InvalidSignatureException, 403)
};

struct SigV4Check {
  SigV4Outcome outcome = SigV4Outcome::kMalformed;
  std::string message;  // AWS's wording, fit to return to the client
  // What the server computed, filled once the signature was compared: for the server's log
  // when a client disagrees (AWS returns the same two strings for this purpose).
  std::string canonical_request;
  std::string string_to_sign;
  bool ok() const { return outcome == SigV4Outcome::kOk; }
};

// Checks `request` against `auth` and `secret`. The request's X-Amz-Date (or, without one, its
// Date) must be within `max_skew_s` of `now_unix_s` and on the credential scope's day; 'host'
// must be signed. An x-amz-content-sha256 header must be the body's hash or UNSIGNED-PAYLOAD
// (the signature covers that header, not the body, so a hash that does not match is refused).
[[nodiscard]] SigV4Check VerifySigV4(const SigV4Request& request, const SigV4Authorization& auth,
                                     std::string_view secret, int64_t now_unix_s,
                                     int64_t max_skew_s = kSigV4DefaultMaxSkewSeconds);

// The signature (64 lowercase hex digits) a client holding `secret` sends for `request`, which
// must carry the X-Amz-Date (or Date) and every header in auth.signed_headers;
// auth.signature is ignored. Fails on the same malformed requests VerifySigV4 refuses.
[[nodiscard]] StatusOr<std::string> SignSigV4(const SigV4Request& request,
                                              const SigV4Authorization& auth,
                                              std::string_view secret);

// The canonical request for `request` over `signed_headers` (exposed for tests and logs).
[[nodiscard]] StatusOr<std::string> SigV4CanonicalRequest(
    const SigV4Request& request, const std::vector<std::string>& signed_headers);

}  // namespace thaw::auth

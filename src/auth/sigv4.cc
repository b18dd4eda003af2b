#include "auth/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "common/sha256.h"

namespace thaw::auth {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kTerminator = "aws4_request";
constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
constexpr size_t kSignatureHexDigits = 64;
constexpr int64_t kSecondsPerDay = 86'400;

constexpr std::string_view kMismatchMessage =
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details.";

// ---------------------------------------------------------------------------------------------
// Text helpers. ASCII only on purpose: header names, hex and the SigV4 grammar are ASCII, and
// locale-dependent <cctype> would make the canonical form depend on the process's locale.

// The whitespace both botocore (str.split()) and the JS SDK (/[ \t]+/ after \r\n → ' ')
// collapse in header values.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), LowerAscii);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return LowerAscii(x) == LowerAscii(y);
         });
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return HexValue(c) >= 0; });
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// URI encoding (RFC 3986: unreserved characters stay, every other byte becomes %XX uppercase).

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

std::string UriEncode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

// '+' stays a '+': both SDKs send a space as %20, and reading '+' as a space would change
// what a literal '+' is signed as.
std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// RFC 3986 dot-segment removal plus dropping empty segments ("//"), exactly as botocore's
// remove_dot_segments and the JS SDK's getCanonicalPath do for every service but S3.
std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> kept;
  for (std::string_view segment : Split(path, '/')) {
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!kept.empty()) kept.pop_back();
      continue;
    }
    kept.push_back(segment);
  }
  std::string out = path.starts_with('/') ? "/" : "";
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) out.push_back('/');
    out.append(kept[i]);
  }
  if (!kept.empty() && path.ends_with('/')) out.push_back('/');
  return out.empty() ? "/" : out;
}

// The path is encoded a second time as sent ('%' becomes %25): clients sign the encoded path.
std::string CanonicalUri(std::string_view path) {
  return UriEncode(NormalizePath(path), /*keep_slash=*/true);
}

std::string CanonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  for (std::string_view pair : Split(query, '&')) {
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const std::string name = PercentDecode(pair.substr(0, eq));
    // A presigned URL carries its own signature, which cannot sign itself.
    if (EqualsIgnoreCase(name, "X-Amz-Signature")) continue;
    const std::string value =
        eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1));
    params.emplace_back(UriEncode(name, false), UriEncode(value, false));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(name).append("=").append(value);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Headers.

std::vector<std::string_view> HeaderValues(const SigV4Request& request, std::string_view name) {
  std::vector<std::string_view> values;
  for (const auto& [key, value] : request.headers) {
    if (EqualsIgnoreCase(key, name)) values.push_back(value);
  }
  return values;
}

std::optional<std::string_view> FirstHeader(const SigV4Request& request, std::string_view name) {
  for (const auto& [key, value] : request.headers) {
    if (EqualsIgnoreCase(key, name)) return Trim(value);
  }
  return std::nullopt;
}

// Trimmed, each run of whitespace inside collapsed to one space.
std::string CanonicalHeaderValue(std::string_view value) {
  std::string out;
  bool in_space = false;
  for (char c : Trim(value)) {
    if (IsSpace(c)) {
      in_space = true;
      continue;
    }
    if (in_space) out.push_back(' ');
    in_space = false;
    out.push_back(c);
  }
  return out;
}

StatusOr<std::string> CanonicalHeaders(const SigV4Request& request,
                                       const std::vector<std::string>& signed_headers) {
  std::string out;
  for (const std::string& name : signed_headers) {
    const std::vector<std::string_view> values = HeaderValues(request, name);
    if (values.empty()) {
      return InvalidArgument("'" + name +
                             "' is named as a SignedHeader, but it does not exist in the HTTP "
                             "request.");
    }
    out.append(name).push_back(':');
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out.push_back(',');
      out.append(CanonicalHeaderValue(values[i]));
    }
    out.push_back('\n');
  }
  return out;
}

std::string PayloadHash(const SigV4Request& request) {
  if (auto declared = FirstHeader(request, "x-amz-content-sha256")) return std::string(*declared);
  return Sha256Hex(request.body);
}

// ---------------------------------------------------------------------------------------------
// Time: SigV4 timestamps are "YYYYMMDD'T'HHMMSS'Z'" (ISO 8601 basic, UTC).

std::optional<int64_t> UnixSeconds(int year, unsigned month, unsigned day, int hour, int minute,
                                   int second) {
  const std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(month),
                                        std::chrono::day(day)};
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 59) return std::nullopt;
  const int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  return days * kSecondsPerDay + hour * 3600 + minute * 60 + second;
}

int ToInt(std::string_view digits) {
  int n = 0;
  for (char c : digits) n = n * 10 + (c - '0');
  return n;
}

std::optional<int64_t> ParseAmzDate(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z' || !IsDigits(s.substr(0, 8)) ||
      !IsDigits(s.substr(9, 6))) {
    return std::nullopt;
  }
  return UnixSeconds(ToInt(s.substr(0, 4)), ToInt(s.substr(4, 2)), ToInt(s.substr(6, 2)),
                     ToInt(s.substr(9, 2)), ToInt(s.substr(11, 2)), ToInt(s.substr(13, 2)));
}

// IMF-fixdate, "Mon, 09 Sep 2011 23:36:00 GMT", as a Date header carries it (botocore writes the
// zone as "-0000").
std::optional<int64_t> ParseHttpDate(std::string_view s) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const size_t comma = s.find(", ");
  if (comma == std::string_view::npos) return std::nullopt;
  s.remove_prefix(comma + 2);
  if (s.size() < 21 || s[2] != ' ' || s[6] != ' ' || s[11] != ' ' || s[14] != ':' || s[17] != ':' ||
      s[20] != ' ' || !IsDigits(s.substr(0, 2)) || !IsDigits(s.substr(7, 4)) ||
      !IsDigits(s.substr(12, 2)) || !IsDigits(s.substr(15, 2)) || !IsDigits(s.substr(18, 2))) {
    return std::nullopt;
  }
  const std::string_view zone = s.substr(21);
  if (zone != "GMT" && zone != "UTC" && zone != "+0000" && zone != "-0000") return std::nullopt;
  const auto month = std::find(std::begin(kMonths), std::end(kMonths), s.substr(3, 3));
  if (month == std::end(kMonths)) return std::nullopt;
  return UnixSeconds(ToInt(s.substr(7, 4)), static_cast<unsigned>(month - kMonths + 1),
                     ToInt(s.substr(0, 2)), ToInt(s.substr(12, 2)), ToInt(s.substr(15, 2)),
                     ToInt(s.substr(18, 2)));
}

std::string FormatAmzDate(int64_t unix_s) {
  const std::chrono::sys_seconds t{std::chrono::seconds(unix_s)};
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd{day};
  const int64_t secs = (t - day).count();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02uT%02d%02d%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(secs / 3600), static_cast<int>(secs / 60 % 60),
                static_cast<int>(secs % 60));
  return buf;
}

struct RequestTime {
  std::string amz_date;  // as the string to sign carries it
  int64_t unix_s = 0;
};

// X-Amz-Date when present (it takes precedence, as in AWS's docs), else Date.
StatusOr<RequestTime> RequestTimeOf(const SigV4Request& request) {
  if (auto amz_date = FirstHeader(request, "x-amz-date")) {
    const std::optional<int64_t> t = ParseAmzDate(*amz_date);
    if (!t) {
      return InvalidArgument(
          "X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'"
          ", not '" +
          std::string(*amz_date) + "'.");
    }
    return RequestTime{std::string(*amz_date), *t};
  }
  if (auto date = FirstHeader(request, "date")) {
    const std::optional<int64_t> t = ParseHttpDate(*date);
    if (!t) {
      return InvalidArgument(
          "Date must be an HTTP date such as 'Mon, 09 Sep 2011 23:36:00 GMT', not '" +
          std::string(*date) + "'.");
    }
    return RequestTime{FormatAmzDate(*t), *t};
  }
  return InvalidArgument(
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures.

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // A failed HMAC would leave an empty key for the next link of the chain, and a signature
  // anyone could compute; the library failing at this is a broken environment, not input.
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
           &len) == nullptr) {
    std::fprintf(stderr, "thaw: HMAC-SHA256 failed in OpenSSL\n");
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string SigningKey(std::string_view secret, const SigV4Authorization& auth) {
  std::string key = HmacSha256("AWS4" + std::string(secret), auth.date);
  key = HmacSha256(key, auth.region);
  key = HmacSha256(key, auth.service);
  return HmacSha256(key, kTerminator);
}

std::string CredentialScope(const SigV4Authorization& auth) {
  return auth.date + "/" + auth.region + "/" + auth.service + "/" + std::string(kTerminator);
}

struct Computed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;
};

StatusOr<Computed> Compute(const SigV4Request& request, const SigV4Authorization& auth,
                           std::string_view secret, std::string_view amz_date) {
  StatusOr<std::string> canonical = SigV4CanonicalRequest(request, auth.signed_headers);
  if (!canonical.ok()) return canonical.status();
  Computed c;
  c.canonical_request = std::move(canonical).value();
  c.string_to_sign = std::string(kAlgorithm) + "\n" + std::string(amz_date) + "\n" +
                     CredentialScope(auth) + "\n" + Sha256Hex(c.canonical_request);
  c.signature = HexEncode(HmacSha256(SigningKey(secret, auth), c.string_to_sign));
  return c;
}

bool HostIsSigned(const SigV4Authorization& auth) {
  return std::find(auth.signed_headers.begin(), auth.signed_headers.end(), "host") !=
         auth.signed_headers.end();
}

SigV4Check MakeCheck(SigV4Outcome outcome, std::string message) {
  SigV4Check check;
  check.outcome = outcome;
  check.message = std::move(message);
  return check;
}

// AWS's wording: "Signature expired: 20261128T120000Z is now earlier than 20261128T123500Z
// (20261128T125000Z - 15 min.)", and "Signature not yet current: ... is still later than ...
// (... + 15 min.)" for a clock ahead.
std::optional<std::string> SkewError(const RequestTime& t, int64_t now_unix_s, int64_t max_skew_s) {
  const std::string minutes = std::to_string(max_skew_s / 60) + " min.)";
  if (t.unix_s < now_unix_s - max_skew_s) {
    return "Signature expired: " + t.amz_date + " is now earlier than " +
           FormatAmzDate(now_unix_s - max_skew_s) + " (" + FormatAmzDate(now_unix_s) + " - " +
           minutes;
  }
  if (t.unix_s > now_unix_s + max_skew_s) {
    return "Signature not yet current: " + t.amz_date + " is still later than " +
           FormatAmzDate(now_unix_s + max_skew_s) + " (" + FormatAmzDate(now_unix_s) + " + " +
           minutes;
  }
  return std::nullopt;
}

// The signature covers the x-amz-content-sha256 header, not the body: a declared hash has to be
// the body's, or a captured request could carry any body. UNSIGNED-PAYLOAD opts out, as AWS
// allows; chunked STREAMING-* payloads are not supported.
std::optional<SigV4Check> PayloadError(const SigV4Request& request) {
  const std::optional<std::string_view> declared = FirstHeader(request, "x-amz-content-sha256");
  if (!declared || *declared == kUnsignedPayload) return std::nullopt;
  if (declared->size() != kSignatureHexDigits || !IsHex(*declared)) {
    return MakeCheck(
        SigV4Outcome::kMalformed,
        "x-amz-content-sha256 must be the hex SHA-256 of the body or UNSIGNED-PAYLOAD, not '" +
            std::string(*declared) + "'.");
  }
  if (Lowercase(*declared) != Sha256Hex(request.body)) {
    return MakeCheck(
        SigV4Outcome::kMismatch,
        "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  return std::nullopt;
}

Status ParseCredential(std::string_view credential, SigV4Authorization& auth) {
  const std::vector<std::string_view> parts = Split(credential, '/');
  if (parts.size() != 5 ||
      std::any_of(parts.begin(), parts.end(), [](std::string_view p) { return p.empty(); })) {
    return InvalidArgument(
        "The Credential is mal-formed; expecting "
        "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\", got '" +
        std::string(credential) + "'.");
  }
  if (parts[1].size() != 8 || !IsDigits(parts[1])) {
    return InvalidArgument("The Credential's date must be YYYYMMDD, not '" + std::string(parts[1]) +
                           "'.");
  }
  if (parts[4] != kTerminator) {
    return InvalidArgument(
        "Credential should be scoped with a valid terminator: 'aws4_request', not '" +
        std::string(parts[4]) + "'.");
  }
  auth.access_key_id = parts[0];
  auth.date = parts[1];
  auth.region = parts[2];
  auth.service = parts[3];
  return Status::Ok();
}

Status ParseSignedHeaders(std::string_view list, SigV4Authorization& auth) {
  if (list.empty()) return Status::Ok();  // VerifySigV4 answers that 'host' must be signed
  for (std::string_view name : Split(list, ';')) {
    if (name.empty()) {
      return InvalidArgument("SignedHeaders has an empty header name: '" + std::string(list) +
                             "'.");
    }
    auth.signed_headers.push_back(Lowercase(name));
  }
  return Status::Ok();
}

Status ParseSignature(std::string_view signature, SigV4Authorization& auth) {
  if (signature.size() != kSignatureHexDigits || !IsHex(signature)) {
    return InvalidArgument("Signature must be 64 hexadecimal digits, not '" +
                           std::string(signature) + "'.");
  }
  auth.signature = Lowercase(signature);
  return Status::Ok();
}

}  // namespace

StatusOr<SigV4Authorization> ParseSigV4Authorization(std::string_view header) {
  const std::string_view value = Trim(header);
  const size_t space = std::find_if(value.begin(), value.end(), IsSpace) - value.begin();
  if (value.substr(0, space) != kAlgorithm) {
    return InvalidArgument("Unsupported Authorization scheme '" +
                           std::string(value.substr(0, space)) +
                           "': the AWS API accepts AWS4-HMAC-SHA256 signatures.");
  }
  std::optional<std::string_view> credential, signed_headers, signature;
  const std::string_view params = space < value.size() ? value.substr(space) : "";
  for (std::string_view part : Split(params, ',')) {
    part = Trim(part);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return InvalidArgument("'" + std::string(part) +
                             "' not a valid key=value pair (missing equal-sign) in Authorization "
                             "header: '" +
                             std::string(value) + "'.");
    }
    const std::string_view key = Trim(part.substr(0, eq));
    std::optional<std::string_view>* slot = key == "Credential"      ? &credential
                                            : key == "SignedHeaders" ? &signed_headers
                                            : key == "Signature"     ? &signature
                                                                     : nullptr;
    if (slot == nullptr || slot->has_value()) {
      return InvalidArgument(
          "Authorization header has " + std::string(slot == nullptr ? "an unknown" : "a repeated") +
          " parameter '" + std::string(key) + "': '" + std::string(value) + "'.");
    }
    *slot = Trim(part.substr(eq + 1));
  }
  std::string missing;
  if (!credential) missing += "Authorization header requires 'Credential' parameter. ";
  if (!signature) missing += "Authorization header requires 'Signature' parameter. ";
  if (!signed_headers) missing += "Authorization header requires 'SignedHeaders' parameter. ";
  if (!missing.empty()) return InvalidArgument(missing + "Authorization=" + std::string(value));

  SigV4Authorization auth;
  THAW_RETURN_IF_ERROR(ParseCredential(*credential, auth));
  THAW_RETURN_IF_ERROR(ParseSignedHeaders(*signed_headers, auth));
  THAW_RETURN_IF_ERROR(ParseSignature(*signature, auth));
  return auth;
}

std::string FormatSigV4Authorization(const SigV4Authorization& auth) {
  std::string headers;
  for (const std::string& name : auth.signed_headers) {
    if (!headers.empty()) headers.push_back(';');
    headers.append(name);
  }
  return std::string(kAlgorithm) + " Credential=" + auth.access_key_id + "/" +
         CredentialScope(auth) + ", SignedHeaders=" + headers + ", Signature=" + auth.signature;
}

StatusOr<std::string> SigV4CanonicalRequest(const SigV4Request& request,
                                            const std::vector<std::string>& signed_headers) {
  const std::string_view target = request.target;
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  StatusOr<std::string> headers = CanonicalHeaders(request, signed_headers);
  if (!headers.ok()) return headers.status();
  std::string header_list;
  for (const std::string& name : signed_headers) {
    if (!header_list.empty()) header_list.push_back(';');
    header_list.append(name);
  }
  return std::string(request.method) + "\n" + CanonicalUri(path) + "\n" + CanonicalQuery(query) +
         "\n" + *headers + "\n" + header_list + "\n" + PayloadHash(request);
}

StatusOr<std::string> SignSigV4(const SigV4Request& request, const SigV4Authorization& auth,
                                std::string_view secret) {
  StatusOr<RequestTime> time = RequestTimeOf(request);
  if (!time.ok()) return time.status();
  StatusOr<Computed> computed = Compute(request, auth, secret, time->amz_date);
  if (!computed.ok()) return computed.status();
  return computed->signature;
}

SigV4Check VerifySigV4(const SigV4Request& request, const SigV4Authorization& auth,
                       std::string_view secret, int64_t now_unix_s, int64_t max_skew_s) {
  if (!HostIsSigned(auth)) {
    return MakeCheck(SigV4Outcome::kMalformed,
                     "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }
  StatusOr<RequestTime> time = RequestTimeOf(request);
  if (!time.ok()) return MakeCheck(SigV4Outcome::kMalformed, time.status().message());
  if (time->amz_date.substr(0, 8) != auth.date) {
    return MakeCheck(SigV4Outcome::kMismatch,
                     "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                     "date from HTTP: '" +
                         auth.date + "' != '" + time->amz_date.substr(0, 8) + "', from '" +
                         time->amz_date + "'.");
  }
  if (auto skew = SkewError(*time, now_unix_s, max_skew_s)) {
    return MakeCheck(SigV4Outcome::kExpired, std::move(*skew));
  }
  if (auto payload = PayloadError(request)) return std::move(*payload);
  StatusOr<Computed> computed = Compute(request, auth, secret, time->amz_date);
  if (!computed.ok()) return MakeCheck(SigV4Outcome::kMalformed, computed.status().message());

  // Constant time, so the comparison leaks nothing about how much of a forgery was right.
  const bool match =
      auth.signature.size() == kSignatureHexDigits &&
      CRYPTO_memcmp(auth.signature.data(), computed->signature.data(), kSignatureHexDigits) == 0;
  SigV4Check check = MakeCheck(match ? SigV4Outcome::kOk : SigV4Outcome::kMismatch,
                               match ? "" : std::string(kMismatchMessage));
  check.canonical_request = std::move(computed->canonical_request);
  check.string_to_sign = std::move(computed->string_to_sign);
  return check;
}

}  // namespace thaw::auth

// Status and StatusOr: thaw's one error type. Fallible code returns these instead of throwing;
// the code says what the caller should do, and the gateway maps it to HTTP in one place.
// Value types; safe to copy between threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace thaw {

enum class StatusCode {
  kOk,
  kInvalidArgument,      // the caller sent something malformed: fix the input (400)
  kUnauthenticated,      // no or wrong credentials (401)
  kPermissionDenied,     // credentials fine, action refused (403)
  kNotFound,             // no such resource (404)
  kAlreadyExists,        // conflicts with existing state (409)
  kPayloadTooLarge,      // request body over a limit (413)
  kResourceExhausted,    // throttled: wait and retry (429)
  kQuotaExceeded,        // a spending limit is reached (402)
  kFailedPrecondition,   // state does not allow it now (409)
  kDeadlineExceeded,     // ran out of time (504)
  kUnavailable,          // transient: retry (503)
  kInternal,             // a bug or an environment failure (500)
  kInsufficientStorage,  // the disk (or quota) is full: free space, then retry (507)
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status PayloadTooLarge(std::string m) {
  return {StatusCode::kPayloadTooLarge, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}

inline Status InsufficientStorage(std::string m) {
  return {StatusCode::kInsufficientStorage, std::move(m)};
}

// "failed to OPERATION on OBJECT: strerror(errno)", the form every OS failure takes. ENOSPC and
// EDQUOT are kInsufficientStorage (the operator frees space), every other errno kInternal.
Status ErrnoStatus(const std::string& operation, const std::string& object, int err);

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // Default-constructed: an error, until assigned (async frameworks need the default).
  StatusOr() : status_(StatusCode::kInternal, "uninitialized StatusOr") {}
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok());
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace thaw

#define THAW_RETURN_IF_ERROR(expr) \
  do {                             \
    ::thaw::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)

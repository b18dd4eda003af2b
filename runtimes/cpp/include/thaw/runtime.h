// The thaw C++ runtime SDK: link libthaw_runtime, write a handler, call thaw::runtime::Run
// from main, and name the binary `bootstrap`. It speaks the AWS Lambda Runtime API over one
// keep-alive connection with no dependencies beyond libc, so it also runs on AWS Lambda's
// provided.al2023. Single-threaded: Run owns the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace thaw::runtime {

struct InvocationRequest {
  std::string payload;  // the event, as sent
  std::string request_id;
  std::string function_arn;
  std::string trace_id;
  std::string client_context;    // JSON, may be empty
  std::string cognito_identity;  // JSON, may be empty
  int64_t deadline_ms = 0;       // epoch milliseconds

  int64_t RemainingMillis() const;
};

struct InvocationResponse {
  static InvocationResponse Success(std::string payload,
                                    std::string content_type = "application/json");
  // Reported to the caller as {"errorType","errorMessage"}.
  static InvocationResponse Failure(std::string error_type, std::string error_message);

  bool ok = true;
  std::string payload;
  std::string content_type = "application/json";
  std::string error_type;
  std::string error_message;
};

using Handler = std::function<InvocationResponse(const InvocationRequest&)>;

// Serves invocations until the Runtime API goes away; returns the process exit code.
// An exception thrown by the handler becomes a Failure named after its type.
int Run(const Handler& handler);

// For failures before Run (loading a model, say): POSTs /runtime/init/error. Exit afterwards.
void ReportInitError(const std::string& error_type, const std::string& error_message);

// Escapes `text` for use inside a JSON string literal.
std::string JsonEscape(const std::string& text);

}  // namespace thaw::runtime

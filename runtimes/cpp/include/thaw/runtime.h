// The thaw C++ runtime SDK: link libthaw_runtime, write a handler, call thaw::runtime::Run
// from main, and name the binary `bootstrap`. Under thaw it takes events on the native channel
// thaw gives it (THAW_CHANNEL_FD: one write answers a call and asks for the next); elsewhere,
// and for streamed answers, it speaks the AWS Lambda Runtime API over one keep-alive
// connection. No dependencies beyond libc, so it also runs on AWS Lambda's provided.al2023.
// Single-threaded: Run owns the calling thread.
//
// Templates: with templates on, thaw starts the bootstrap once per version as a template and
// forks its instances from it. Everything main() does before Run is the init, run once there
// (load models before Run); Run then waits to be forked and returns to its loop in each fork.
// Start no threads before Run (the template then refuses to fork and instances start in
// full). Each fork reseeds rand(); seed other generators in the handler.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace thaw::runtime {

namespace detail {
class Connection;
}

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

// A streamed response (Lambda's streaming response mode): each Write reaches the caller as it
// is made, not when the handler returns; a response may then pass the 6 MB payload limit, up
// to thaw's max_stream_bytes. Valid only inside the handler call it was given to.
class ResponseWriter {
 public:
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;

  // Before the first Write: the body's content type (default application/octet-stream).
  void SetContentType(std::string content_type);
  // Sends `bytes` now. False once thaw stopped reading (the caller went away, or the stream
  // grew past its limit): stop producing, the rest would be dropped.
  bool Write(std::string_view bytes);
  bool started() const { return started_; }

 private:
  friend int RunStreaming(
      const std::function<InvocationResponse(const InvocationRequest&, ResponseWriter&)>& handler);
  ResponseWriter(detail::Connection* conn, std::string path)
      : conn_(conn), path_(std::move(path)) {}
  bool Start();
  // Ends the body, with the error trailers when `error_type` is set; reads thaw's answer.
  bool Finish(const std::string& error_type, const std::string& error_json);

  detail::Connection* conn_;
  std::string path_;
  std::string content_type_ = "application/octet-stream";
  bool started_ = false;
  bool failed_ = false;
};

using StreamingHandler =
    std::function<InvocationResponse(const InvocationRequest&, ResponseWriter&)>;

// Run, for a handler that streams through `writer`. A Success's payload, if any, is written
// after what the handler wrote; a Failure (or an exception) after the first Write ends the
// stream with the error (the caller sees it as trailers or the event-stream error); before
// it, it is reported as Run reports it.
int RunStreaming(const StreamingHandler& handler);

// For failures before Run (loading a model, say): POSTs /runtime/init/error. Exit afterwards.
void ReportInitError(const std::string& error_type, const std::string& error_message);

// Escapes `text` for use inside a JSON string literal.
std::string JsonEscape(const std::string& text);

}  // namespace thaw::runtime

// OpenAiApi: the OpenAI-compatible face: GET /v1/models[/{id}], POST /v1/chat/completions,
// /v1/completions and /v1/embeddings. A function serves models by declaring them in thaw.yaml
// (`openai: {models: [...], kind: chat}`); a request goes to the function serving its `model`
// among the caller's tenant's functions, with the request body as the event (plus
// "thaw": {"tenant", "endpoint"}), and its answer goes back as is, or as Server-Sent Events
// when the request asks for `stream: true`. Errors are in OpenAI's shape. Owned by Api;
// thread-safe: Serve runs concurrently on the gateway threads.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "gateway/http_server.h"

namespace boost::json {
class object;
}
namespace thaw::registry {
class Registry;
}
namespace thaw::meter {
class Meter;
}

namespace thaw::gateway {

class Forwarder;
class Invoker;

// OpenAI's error body {"error": {"message", "type", "param", "code"}} with `status`; `param`
// and `code` are null when empty.
void OpenAiError(Response& res, http::status status, const std::string& type,
                 const std::string& message, const std::string& param = "",
                 const std::string& code = "");

// A function error of this type (a Python exception class of that name, say) is the caller's
// fault: the routes answer it as 400 invalid_request_error with its message.
inline constexpr std::string_view kInvalidRequestErrorType = "InvalidRequestError";

// A bad parameter of a request: OpenAI's `param` and `message`.
struct ParamError {
  std::string param;
  std::string message;
};

// Checks the sampling parameters a chat or completions request may carry (temperature, top_p,
// max_tokens, max_completion_tokens, n, seed, stop) against OpenAI's bounds, so a function
// gets them well-typed; absent or null ones are fine.
std::optional<ParamError> CheckSamplingParams(const boost::json::object& body);

// Checks an embeddings request's `dimensions` against `native`, the model's size from its
// thaw.yaml (0: the model takes no `dimensions`).
std::optional<ParamError> CheckDimensions(const boost::json::object& body, const std::string& model,
                                          int64_t native);

// Token counts a function reported in `usage` (OpenAI's prompt_tokens, completion_tokens).
struct TokenUsage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool found = false;
};

// The `usage` of one OpenAI answer or stream chunk (JSON text); not found when it has none.
TokenUsage ParseUsage(std::string_view json_text);

// An embeddings answer with every `data[i].embedding` float array as base64 of little-endian
// float32 (encoding_format: base64, which the official SDKs ask for); other answers unchanged.
std::string EmbeddingsAsBase64(const std::string& json_text);

// Splits a stream of concatenated JSON texts (as a generator's chunks arrive, in pieces or
// several at once) into whole texts. Not thread-safe: one per stream.
class JsonTextSplitter {
 public:
  // Appends `bytes`; the whole texts now complete are appended to `out`. False when the stream
  // is not JSON (`error` says where).
  bool Feed(std::string_view bytes, std::vector<std::string>& out, std::string& error);
  // Whether only whitespace is left over (the stream ended between texts).
  bool AtBoundary() const;

 private:
  std::string pending_;  // bytes of the text not yet complete
};

class OpenAiApi {
 public:
  // `forwarder`: runs calls on other nodes of the cluster (null: this node stands alone).
  OpenAiApi(registry::Registry* registry, Invoker* invoker, meter::Meter* meter,
            Forwarder* forwarder = nullptr);

  // Whether `path` is one of this face's routes.
  static bool Owns(std::string_view path);

  // `caller`: the Bearer key's caller (authenticated by Api); `writer` streams SSE (may be null).
  asio::awaitable<void> Serve(const auth::Caller& caller, ResponseWriter* writer, Request& req,
                              Response& res);

 private:
  void Models(const auth::Caller& caller, std::string_view id, Response& res);
  asio::awaitable<void> Create(const auth::Caller& caller, std::string_view endpoint,
                               ResponseWriter* writer, Request& req, Response& res);
  // Records the tokens of request `request_id` to `function` in the meter.
  void RecordUsage(const std::string& request_id, const std::string& function,
                   const TokenUsage& usage);

  registry::Registry* const registry_;
  Invoker* const invoker_;
  meter::Meter* const meter_;
  Forwarder* const forwarder_;
};

}  // namespace thaw::gateway

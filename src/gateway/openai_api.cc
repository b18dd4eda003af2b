#include "gateway/openai_api.h"

#include <bit>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <climits>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "common/base64.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "common/tenant.h"
#include "gateway/api.h"
#include "gateway/forwarder.h"
#include "gateway/invoker.h"
#include "gateway/responses.h"
#include "gateway/scope.h"
#include "gateway/streaming.h"
#include "meter/meter.h"
#include "pool/response_sink.h"
#include "registry/registry.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {
namespace {

namespace json = boost::json;

constexpr std::string_view kModels = "/v1/models";

struct Endpoint {
  std::string_view path;
  std::string_view name;      // as the event's thaw.endpoint says it
  std::string_view required;  // the body field it cannot do without
  registry::OpenAiKind kind;
};

constexpr Endpoint kEndpoints[] = {
    {"/v1/chat/completions", "chat.completions", "messages", registry::OpenAiKind::kChat},
    {"/v1/completions", "completions", "prompt", registry::OpenAiKind::kCompletions},
    {"/v1/embeddings", "embeddings", "input", registry::OpenAiKind::kEmbeddings},
};

const Endpoint* FindEndpoint(std::string_view path) {
  for (const auto& e : kEndpoints) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

json::value NullIfEmpty(const std::string& s) {
  return s.empty() ? json::value(nullptr) : json::value(s);
}

std::string ErrorEvent(const std::string& type, const std::string& message,
                       const std::string& code) {
  return "data: " +
         JsonText(json::object{{"error", json::object{{"message", message},
                                                      {"type", type},
                                                      {"param", nullptr},
                                                      {"code", NullIfEmpty(code)}}}}) +
         "\n\n";
}

void ModelNotFound(Response& res, const std::string& model) {
  OpenAiError(res, http::status::not_found, "invalid_request_error",
              "The model `" + model + "` does not exist or you do not have access to it.", "model",
              "model_not_found");
}

// The function serving `model` among those `caller` may see: its internal name and manifest.
struct Served {
  std::string function;
  std::shared_ptr<const registry::Version> version;
  int64_t created_us = 0;
};

std::vector<std::pair<std::string, Served>> ModelsOf(const registry::Registry& registry,
                                                     const auth::Caller& caller) {
  std::vector<std::pair<std::string, Served>> out;
  for (const auto& f : registry.List()) {
    if (!Visible(caller, f.name) || f.versions.empty()) continue;
    const auto& latest = f.versions.back();
    for (const auto& model : latest->manifest.openai.models) {
      out.push_back({model, Served{f.name, latest, f.created_us}});
    }
  }
  return out;
}

json::object ModelJson(const std::string& id, const Served& s) {
  return json::object{{"id", id},
                      {"object", "model"},
                      {"created", s.created_us / 1'000'000},
                      {"owned_by", TenantOfFunction(s.function)}};
}

// How a message shows a request's value: numbers as people write them (Boost.JSON would
// write 2.5 as 2.5E0), anything else as JSON.
std::string Shown(const json::value& value) {
  if (value.is_double()) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value.as_double());
    return text;
  }
  return JsonText(value);
}

// `value` as an integer, when it is one (1 and 1.0 alike, as JSON does not tell them apart).
std::optional<int64_t> AsInteger(const json::value& value) {
  if (value.is_bool() || !value.is_number()) return std::nullopt;
  json::error_code ec;
  const int64_t n = value.to_number<int64_t>(ec);
  if (ec) return std::nullopt;
  return n;
}

std::optional<ParamError> CheckNumber(const json::object& body, const char* name, double low,
                                      double high) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_bool() && v->is_number()) {
    const double x = v->to_number<double>();
    if (x >= low && x <= high) return std::nullopt;
  }
  return ParamError{name, std::string(name) + " must be a number from " + Shown(low) + " to " +
                              Shown(high) + ", got " + Shown(*v)};
}

std::optional<ParamError> CheckInteger(const json::object& body, const char* name, int64_t low) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (auto n = AsInteger(*v); n && *n >= low) return std::nullopt;
  return ParamError{name, std::string(name) + " must be an integer" +
                              (low > INT64_MIN ? " of at least " + std::to_string(low) : "") +
                              ", got " + Shown(*v)};
}

}  // namespace

std::optional<ParamError> CheckSamplingParams(const json::object& body) {
  if (auto e = CheckNumber(body, "temperature", 0, 2)) return e;
  if (auto e = CheckNumber(body, "top_p", 0, 1)) return e;
  for (const char* name : {"max_tokens", "max_completion_tokens", "n"}) {
    if (auto e = CheckInteger(body, name, 1)) return e;
  }
  if (auto e = CheckInteger(body, "seed", INT64_MIN)) return e;
  const json::value* stop = body.if_contains("stop");
  if (stop == nullptr || stop->is_null() || stop->is_string()) return std::nullopt;
  bool ok = stop->is_array() && !stop->as_array().empty() && stop->as_array().size() <= 4;
  for (size_t i = 0; ok && i < stop->as_array().size(); ++i) {
    ok = stop->as_array()[i].is_string();
  }
  if (ok) return std::nullopt;
  return ParamError{"stop", "stop must be a string or a list of 1 to 4 strings"};
}

std::optional<ParamError> CheckDimensions(const json::object& body, const std::string& model,
                                          int64_t native) {
  const json::value* v = body.if_contains("dimensions");
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (native == 0) {
    return ParamError{"dimensions",
                      "The model `" + model + "` does not support specifying dimensions."};
  }
  if (auto n = AsInteger(*v); n && *n >= 1 && *n <= native) return std::nullopt;
  return ParamError{"dimensions", "Invalid value for 'dimensions': `" + model + "` gives 1 to " +
                                      std::to_string(native) + " dimensions, got " + Shown(*v) +
                                      "."};
}

void OpenAiError(Response& res, http::status status, const std::string& type,
                 const std::string& message, const std::string& param, const std::string& code) {
  JsonBody(res, status,
           json::object{{"error", json::object{{"message", message},
                                               {"type", type},
                                               {"param", NullIfEmpty(param)},
                                               {"code", NullIfEmpty(code)}}}});
}

TokenUsage ParseUsage(std::string_view json_text) {
  TokenUsage usage;
  boost::system::error_code ec;
  json::value v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return usage;
  const json::value* u = v.as_object().if_contains("usage");
  if (u == nullptr || !u->is_object()) return usage;
  auto count = [&](const char* key) -> int64_t {
    const json::value* n = u->as_object().if_contains(key);
    if (n == nullptr || !n->is_number()) return 0;
    json::error_code nec;
    int64_t value = n->to_number<int64_t>(nec);
    return nec || value < 0 ? 0 : value;
  };
  usage.prompt_tokens = count("prompt_tokens");
  usage.completion_tokens = count("completion_tokens");
  usage.found = true;
  return usage;
}

std::string EmbeddingsAsBase64(const std::string& json_text) {
  boost::system::error_code ec;
  json::value v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return json_text;
  json::value* data = v.as_object().if_contains("data");
  if (data == nullptr || !data->is_array()) return json_text;
  for (json::value& item : data->as_array()) {
    if (!item.is_object()) continue;
    json::value* embedding = item.as_object().if_contains("embedding");
    if (embedding == nullptr || !embedding->is_array()) continue;
    std::string bytes;
    bytes.reserve(embedding->as_array().size() * 4);
    for (const json::value& x : embedding->as_array()) {
      if (!x.is_number()) return json_text;
      const uint32_t bits = std::bit_cast<uint32_t>(static_cast<float>(x.to_number<double>()));
      for (int shift = 0; shift < 32; shift += 8) {
        bytes.push_back(static_cast<char>((bits >> shift) & 0xFF));
      }
    }
    *embedding = Base64Encode(bytes);
  }
  return JsonText(v);
}

bool JsonTextSplitter::Feed(std::string_view bytes, std::vector<std::string>& out,
                            std::string& error) {
  pending_ += bytes;
  for (;;) {
    size_t start = 0;
    while (start < pending_.size() && std::isspace(static_cast<unsigned char>(pending_[start]))) {
      ++start;
    }
    pending_.erase(0, start);
    if (pending_.empty()) return true;
    json::stream_parser parser;
    boost::system::error_code ec;
    const size_t used = parser.write_some(pending_.data(), pending_.size(), ec);
    if (ec) {
      error = "the function's stream is not a sequence of JSON texts: " + ec.message();
      return false;
    }
    if (!parser.done()) return true;  // the rest is still on its way
    // The parser takes the whitespace after a text too: an SSE data line must not carry it.
    size_t end = used;
    while (end > 0 && std::isspace(static_cast<unsigned char>(pending_[end - 1]))) --end;
    out.push_back(pending_.substr(0, end));
    pending_.erase(0, used);
  }
}

bool JsonTextSplitter::AtBoundary() const {
  for (char c : pending_) {
    if (!std::isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

OpenAiApi::OpenAiApi(registry::Registry* registry, Invoker* invoker, meter::Meter* meter,
                     Forwarder* forwarder)
    : registry_(registry), invoker_(invoker), meter_(meter), forwarder_(forwarder) {}

bool OpenAiApi::Owns(std::string_view path) {
  if (path == kModels || path.starts_with("/v1/models/")) return true;
  return FindEndpoint(path) != nullptr;
}

asio::awaitable<void> OpenAiApi::Serve(const auth::Caller& caller, ResponseWriter* writer,
                                       Request& req, Response& res) {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == kModels || path.starts_with("/v1/models/")) {
    if (req.method() != http::verb::get) {
      co_return OpenAiError(
          res, http::status::method_not_allowed, "invalid_request_error",
          std::string(req.method_string()) + " is not allowed on " + std::string(path));
    }
    std::string_view id = path == kModels ? "" : path.substr(kModels.size() + 1);
    co_return Models(caller, id, res);
  }
  if (req.method() != http::verb::post) {
    co_return OpenAiError(
        res, http::status::method_not_allowed, "invalid_request_error",
        std::string(req.method_string()) + " is not allowed on " + std::string(path));
  }
  co_return co_await Create(caller, FindEndpoint(path)->name, writer, req, res);
}

void OpenAiApi::Models(const auth::Caller& caller, std::string_view id, Response& res) {
  auto models = ModelsOf(*registry_, caller);
  if (!id.empty()) {
    for (const auto& [model, served] : models) {
      if (model == id) return JsonBody(res, http::status::ok, ModelJson(model, served));
    }
    return ModelNotFound(res, std::string(id));
  }
  json::array data;
  for (const auto& [model, served] : models) data.push_back(ModelJson(model, served));
  JsonBody(res, http::status::ok, json::object{{"object", "list"}, {"data", std::move(data)}});
}

asio::awaitable<void> OpenAiApi::Create(const auth::Caller& caller, std::string_view endpoint_name,
                                        ResponseWriter* writer, Request& req, Response& res) {
  const Endpoint* endpoint = nullptr;
  for (const auto& e : kEndpoints) {
    if (e.name == endpoint_name) endpoint = &e;
  }
  boost::system::error_code ec;
  json::value body = json::parse(req.body(), ec);
  if (ec || !body.is_object()) {
    co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                          "We could not parse the JSON body of your request: it must be a JSON "
                          "object.");
  }
  json::object& o = body.as_object();
  const json::value* model_value = o.if_contains("model");
  if (model_value == nullptr || !model_value->is_string()) {
    co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                          "you must provide a model parameter (a string)", "model");
  }
  const std::string model(model_value->as_string());
  if (!o.contains(endpoint->required)) {
    co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                          "Missing required parameter: '" + std::string(endpoint->required) + "'.",
                          std::string(endpoint->required), "missing_required_parameter");
  }
  bool stream = false;
  if (const json::value* s = o.if_contains("stream"); s != nullptr && !s->is_null()) {
    if (!s->is_bool()) {
      co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                            "stream must be a boolean", "stream");
    }
    stream = s->as_bool();
  }
  if (stream && endpoint->kind == registry::OpenAiKind::kEmbeddings) {
    co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                          "embeddings do not stream", "stream");
  }
  std::string encoding;
  if (const json::value* e = o.if_contains("encoding_format"); e != nullptr && e->is_string()) {
    encoding = e->as_string();
    if (encoding != "float" && encoding != "base64") {
      co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                            "encoding_format must be float or base64", "encoding_format");
    }
  }

  if (endpoint->kind != registry::OpenAiKind::kEmbeddings) {
    if (auto e = CheckSamplingParams(o)) {
      co_return OpenAiError(res, http::status::bad_request, "invalid_request_error", e->message,
                            e->param, "invalid_value");
    }
  }

  std::optional<Served> served;
  for (auto& [name, s] : ModelsOf(*registry_, caller)) {
    if (name == model) {
      served = std::move(s);
      break;
    }
  }
  if (!served) co_return ModelNotFound(res, model);
  if (served->version->manifest.openai.kind != endpoint->kind) {
    co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                          "The model `" + model + "` serves " +
                              registry::OpenAiKindName(served->version->manifest.openai.kind) +
                              ", not " + std::string(endpoint->name) + ".",
                          "model", "model_not_supported");
  }
  if (endpoint->kind == registry::OpenAiKind::kEmbeddings) {
    if (auto e = CheckDimensions(o, model, served->version->manifest.openai.dimensions)) {
      co_return OpenAiError(res, http::status::bad_request, "invalid_request_error", e->message,
                            e->param, "invalid_value");
    }
  }

  if (forwarder_ != nullptr) {
    Peer peer;
    peer.writer = writer;
    if (co_await forwarder_->MaybeForward(served->function, "", peer, req, res)) co_return;
  }
  o["thaw"] = json::object{{"tenant", caller.tenant}, {"endpoint", endpoint->name}};
  InvokeRequest ir{served->function, "", JsonText(body), "", NewRequestId()};
  ir.streams = stream && writer != nullptr;
  ir.forwarded = forwarder_ != nullptr && forwarder_->FromNode(req);
  const std::string request_id = ir.request_id;
  res.set("X-Thaw-Request-Id", request_id);
  res.set("X-Request-Id", request_id);
  auto outcome = co_await invoker_->Invoke(std::move(ir));
  if (!outcome.ok()) {
    if (outcome.status().code() == StatusCode::kNotFound) co_return ModelNotFound(res, model);
    auto [status, type] = HttpFor(outcome.status().code());
    co_return OpenAiError(
        res, status, static_cast<int>(status) >= 500 ? "server_error" : "invalid_request_error",
        outcome.status().message(), "", type);
  }
  pool::Result& r = outcome->result;
  SetInvokeHeaders(*outcome, res);
  using Kind = pool::Result::Kind;
  switch (r.kind) {
    case Kind::kOk:
      break;
    case Kind::kThrottled:
      (void)RefusalStatus(*outcome, res);  // for its Retry-After
      if (outcome->over_budget) {
        co_return OpenAiError(res, http::status::too_many_requests, "insufficient_quota",
                              r.error_message, "", "insufficient_quota");
      }
      co_return OpenAiError(res, http::status::too_many_requests, "requests", r.error_message, "",
                            "rate_limit_exceeded");
    case Kind::kTimeout:
      co_return OpenAiError(res, http::status::gateway_timeout, "timeout", r.error_message, "",
                            r.error_type);
    case Kind::kUnavailable:
      co_return OpenAiError(res, http::status::service_unavailable, "server_error", r.error_message,
                            "", r.error_type);
    case Kind::kFunctionError:
      if (r.error_type == kInvalidRequestErrorType) {
        co_return OpenAiError(res, http::status::bad_request, "invalid_request_error",
                              r.error_message);
      }
      [[fallthrough]];
    case Kind::kExitError:
    case Kind::kInitError:
    case Kind::kCanceled:
      co_return OpenAiError(res, http::status::internal_server_error, "server_error",
                            r.error_message, "", r.error_type);
  }

  if (!stream || writer == nullptr) {
    if (r.sink) {  // asked for one body: Invoker collected it, so this does not happen
      co_return OpenAiError(res, http::status::internal_server_error, "server_error",
                            "the function streamed an answer that was not asked to stream");
    }
    RecordUsage(request_id, served->function, ParseUsage(r.body));
    res.result(http::status::ok);
    res.set(http::field::content_type, "application/json");
    res.body() = encoding == "base64" ? EmbeddingsAsBase64(r.body) : std::move(r.body);
    co_return;
  }

  // Server-Sent Events: one `data:` event per JSON text the function writes, each sent as it
  // comes, then [DONE] (or an error event, which OpenAI's SDKs raise).
  res.result(http::status::ok);
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.erase("X-Thaw-Billed-Ms");  // known at the end: a trailer
  res.set(http::field::trailer, kStreamTrailers);
  if (!co_await writer->Begin(res)) {
    if (r.sink) r.sink->Cancel();
    co_return;
  }
  TokenUsage usage;
  std::vector<std::string> texts;
  std::string error;
  auto send = [&](std::vector<std::string>& batch) -> asio::awaitable<bool> {
    for (const auto& text : batch) {
      if (TokenUsage u = ParseUsage(text); u.found) usage = u;
      if (!co_await writer->Write("data: " + text + "\n\n")) co_return false;
    }
    batch.clear();
    co_return true;
  };
  if (!r.sink) {
    // The function answered in one piece: that is the one event.
    texts.push_back(std::move(r.body));
    if (co_await send(texts)) {
      (void)co_await writer->Write("data: [DONE]\n\n");
      (void)co_await writer->End({});
    }
    RecordUsage(request_id, served->function, usage);
    co_return;
  }
  pool::ResponseSink& sink = *r.sink;
  JsonTextSplitter splitter;
  bool malformed = false;
  for (;;) {
    pool::ResponseSink::Piece piece = co_await sink.Read(asio::use_awaitable);
    if (piece.end) break;
    if (!splitter.Feed(piece.bytes, texts, error)) {
      malformed = true;
      sink.Cancel();  // ends the invocation
    }
    if (!co_await send(texts)) {
      sink.Cancel();
      RecordUsage(request_id, served->function, usage);
      co_return;
    }
    if (malformed) break;
  }
  RecordUsage(request_id, served->function, usage);
  const pool::Result& end = sink.result();
  std::string last;
  if (malformed) {
    last = ErrorEvent("server_error", error, "Function.MalformedStream");
  } else if (end.kind != Kind::kOk || !end.error_type.empty()) {
    last = ErrorEvent("server_error", end.error_message, end.error_type);
  } else if (!splitter.AtBoundary()) {
    last = ErrorEvent("server_error", "the function's stream ended inside a JSON text",
                      "Function.MalformedStream");
  } else {
    last = "data: [DONE]\n\n";
  }
  if (!co_await writer->Write(last)) co_return;
  http::fields trailers;
  if (!malformed) StreamEndTrailers(end, trailers);
  (void)co_await writer->End(trailers);
}

void OpenAiApi::RecordUsage(const std::string& request_id, const std::string& function,
                            const TokenUsage& usage) {
  if (!usage.found || meter_ == nullptr) return;
  meter_->AddUsage(request_id, function, WallNowMicros(), usage.prompt_tokens,
                   usage.completion_tokens);
}

}  // namespace thaw::gateway

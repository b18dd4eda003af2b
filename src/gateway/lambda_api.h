// LambdaApi: the AWS Lambda REST face of the gateway (/2015-03-31/..., /2017-10-31/...,
// /2019-09-30/...): Invoke and a function-management subset with AWS's JSON shapes, status
// codes and error headers, so awscli and the AWS SDKs work against thaw unchanged. It also
// serves the signed code downloads that GetFunction's Code.Location points at.
// Owned by Api; Handle runs concurrently on the gateway threads.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "common/status.h"
#include "gateway/http_server.h"
#include "server/config.h"

namespace thaw::registry {
class Registry;
struct FunctionInfo;
struct Version;
}  // namespace thaw::registry
namespace thaw::pool {
class PoolManager;
}
namespace thaw::logs {
class LogStore;
}

namespace thaw::gateway {

class Forwarder;
class Invoker;

struct LambdaDeps {
  registry::Registry* registry = nullptr;
  pool::PoolManager* pools = nullptr;
  logs::LogStore* logs = nullptr;
  const server::Config* config = nullptr;
  std::string admin_key;  // signs code download URLs
  auth::KeyStore* keys = nullptr;
  Invoker* invoker = nullptr;
  asio::thread_pool* blocking = nullptr;  // for SQLite writes and unpacking bundles
  Forwarder* forwarder = nullptr;         // runs calls on other nodes (null: standalone)
};

class LambdaApi {
 public:
  // Lambda payload limit for Event invocations (RequestResponse uses max_payload_bytes).
  static constexpr uint64_t kEventPayloadBytes = 256 * 1024;

  explicit LambdaApi(LambdaDeps deps);

  // Whether `path` belongs to this face: Lambda's dated prefixes, or a code download.
  static bool Owns(std::string_view path);
  uint64_t BodyLimit(const http::request_header<>& header) const;
  // CreateFunction and UpdateFunctionCode carry bundles.
  bool IsUpload(const http::request_header<>& header) const;
  // Refuses (403, in AWS's words) a request whose key is missing or unknown before its body
  // is read. A SigV4 signature covers the body, so it is verified once the body is in.
  // `caller`: the Bearer key's (a SigV4 request is verified with its body, in Serve).
  bool Screen(const http::request_header<>& header, Response& res,
              std::optional<auth::Caller>& caller) const;
  // Authenticates (SigV4-shaped or the Bearer key), routes and answers; InvokeWithResponseStream
  // answers on `peer.writer` as the function's bytes arrive.
  asio::awaitable<void> Serve(const Peer& peer, Request& req, Response& res);

 private:
  struct Call;

  // The caller, or nullopt after answering 403 in AWS's words.
  std::optional<auth::Caller> Authenticate(const Request& req, Response& res) const;
  asio::awaitable<void> Route(Call& c, Response& res);
  // The function a path segment names (NAME, NAME:QUALIFIER or an ARN) as the caller may
  // address it; the qualifier, from the segment or ?Qualifier=, lands in c.params.
  StatusOr<std::string> FunctionOf(Call& c, std::string_view segment) const;
  // Invoke, or InvokeWithResponseStream (`streaming`: AWS's event-stream answer).
  asio::awaitable<void> Invoke(Call& c, const std::string& function, bool streaming, Response& res);
  void ListFunctions(Call& c, Response& res);
  asio::awaitable<void> CreateFunction(Call& c, Response& res);
  void GetFunction(Call& c, const std::string& function, bool configuration_only, Response& res);
  asio::awaitable<void> DeleteFunction(Call& c, const std::string& function, Response& res);
  asio::awaitable<void> UpdateCode(Call& c, const std::string& function, Response& res);
  asio::awaitable<void> UpdateConfiguration(Call& c, const std::string& function, Response& res);
  asio::awaitable<void> PublishVersion(Call& c, const std::string& function, Response& res);
  void ListVersions(Call& c, const std::string& function, Response& res);
  asio::awaitable<void> PutAlias(Call& c, const std::string& function, const std::string& alias,
                                 Response& res);
  void GetAlias(Call& c, const std::string& function, const std::string& alias, Response& res);
  void ListAliases(Call& c, const std::string& function, Response& res);
  // Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) (queue/event_queue.h).
  asio::awaitable<void> EventInvokeConfig(Call& c, const std::string& function, bool list,
                                          Response& res);
  asio::awaitable<void> DeleteAlias(Call& c, const std::string& function, const std::string& alias,
                                    Response& res);
  asio::awaitable<void> PutConcurrency(Call& c, const std::string& function, bool remove,
                                       Response& res);
  void GetConcurrency(Call& c, const std::string& function, Response& res);
  asio::awaitable<void> ServeCode(Call& c, const std::string& sha256, Response& res);
  std::string CodeUrl(const Call& c, const std::string& sha256) const;
  std::string CodeSignature(const std::string& sha256, const std::string& expires) const;

  LambdaDeps deps_;
};

}  // namespace thaw::gateway

// Api: the public HTTP API: the native /v1 routes (auth, deploy, function management, invoke,
// logs, usage and advice), handing the AWS Lambda routes to LambdaApi. Errors become HTTP
// status codes in the gateway and nowhere else (HttpFor). Thread-safe: Handle runs
// concurrently on the gateway threads.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "gateway/http_server.h"
#include "server/config.h"

namespace thaw::registry {
class Registry;
}
namespace thaw::pool {
class PoolManager;
}
namespace thaw::logs {
class LogStore;
}
namespace thaw::meter {
class Meter;
struct Sample;
}  // namespace thaw::meter
namespace thaw::metrics {
class Registry;
}

namespace thaw::gateway {

class Invoker;
class LambdaApi;

// The one place a Status becomes an HTTP status and an (AWS-style) error type.
std::pair<http::status, const char*> HttpFor(StatusCode code);

struct ApiDeps {
  registry::Registry* registry = nullptr;
  pool::PoolManager* pools = nullptr;
  logs::LogStore* logs = nullptr;
  meter::Meter* meter = nullptr;
  const server::Config* config = nullptr;
  std::string admin_key;
  std::string isolation;  // what sandboxing is active, for GET /v1/node
  metrics::Registry* metrics = nullptr;
};

class Api final : public HttpHandler {
 public:
  explicit Api(ApiDeps deps);
  ~Api() override;

  uint64_t BodyLimit(const http::request_header<>& header) const override;
  void Reject(http::status status, const std::string& why, Response& res) const override;
  asio::awaitable<void> Handle(Request& req, Response& res) override;

 private:
  asio::awaitable<void> Deploy(const std::string& name, Request& req, Response& res);
  asio::awaitable<void> Invoke(const std::string& name, const std::string& qualifier, Request& req,
                               Response& res);
  asio::awaitable<void> DeleteFunction(const std::string& name, Response& res);
  void GetFunction(const std::string& name, Response& res);
  void ListFunctions(Response& res);
  void Logs(const std::string& name, const std::string& query, Response& res);
  asio::awaitable<void> Usage(const std::string& query, Response& res);
  asio::awaitable<void> Advice(const std::string& query, Response& res);  // GET /v1/advice
  // The meter's rows in a window, read off the event loop.
  asio::awaitable<StatusOr<std::vector<meter::Sample>>> FetchSamples(const std::string& function,
                                                                     int64_t from_us,
                                                                     int64_t to_us);
  void Metrics(Response& res);  // Prometheus text format
  asio::awaitable<void> FunctionUrl(Request& req, Response& res);
  bool Authorized(const Request& req) const;

  ApiDeps deps_;
  // Disk-bound work (unpacking a bundle, SQLite queries) runs here, off the event loop.
  asio::thread_pool blocking_{2};
  std::unique_ptr<Invoker> invoker_;
  std::unique_ptr<LambdaApi> lambda_;
};

}  // namespace thaw::gateway

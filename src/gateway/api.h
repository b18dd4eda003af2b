// Api: the public HTTP API: the native /v1 routes (auth, deploy, function management, invoke,
// logs, usage and advice), handing the AWS Lambda routes to LambdaApi. Errors become HTTP
// status codes in the gateway and nowhere else (HttpFor). Thread-safe: Handle runs
// concurrently on the gateway threads.
#pragma once

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/object.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/keys.h"
#include "common/cidr.h"
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
class GpuTable;
}  // namespace thaw::pool
namespace thaw::logs {
class LogStore;
}
namespace thaw::queue {
class EventQueue;
class JobStore;
}  // namespace thaw::queue
namespace thaw::meter {
class Meter;
struct Sample;
}  // namespace thaw::meter
namespace thaw::metrics {
class Registry;
class StatsRing;
}  // namespace thaw::metrics
namespace thaw::dispatch {
class Dispatcher;
}
namespace thaw::models {
class ModelStore;
}
namespace thaw::cluster {
class Membership;
}

namespace thaw::gateway {

class Forwarder;
class Invoker;
class JobsApi;
class LambdaApi;
class Scheduler;
class OpenAiApi;

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
  auth::KeyStore* keys = nullptr;
  dispatch::Dispatcher* dispatcher = nullptr;  // admission counters, tenant spend
  const pool::GpuTable* gpus = nullptr;        // the node's GPUs, for GET /v1/node and /metrics
  queue::EventQueue* events = nullptr;         // the durable Event queue (null: in memory)
  const metrics::StatsRing* live = nullptr;    // per-minute instance counts (null: none kept)
  queue::JobStore* jobs = nullptr;             // jobs (null: no jobs routes)
  models::ModelStore* models = nullptr;        // the model store (/v1/artifacts)
  std::string tmp_storage;  // what /tmp is here (SpawnerClient::tmp_storage), for functions' JSON
  cluster::Membership* cluster = nullptr;  // null: this node stands alone (/v1/nodes)
  // What other nodes present on /v1/internal/ (cluster/artifact_fetcher.h); empty: those routes
  // answer 404.
  std::string cluster_token;
};

class Api final : public HttpHandler {
 public:
  explicit Api(ApiDeps deps);
  ~Api() override;

  uint64_t BodyLimit(const http::request_header<>& header) const override;
  bool IsUpload(const http::request_header<>& header) const override;
  // Every route but /healthz, the signed code downloads and public function URLs needs a
  // known key before its body is read.
  bool Screen(const http::request_header<>& header, Response& res,
              std::optional<auth::Caller>& caller) const override;
  void Reject(http::status status, const std::string& why, Response& res) const override;
  asio::awaitable<void> Handle(Request& req, Response& res) override;  // peer unknown
  asio::awaitable<void> Serve(const Peer& peer, Request& req, Response& res) override;
  // Model file uploads (PUT /v1/artifacts/_blobs/SHA256) go to disk as they arrive.
  bool StreamsBody(const http::request_header<>& header) const override;
  asio::awaitable<void> ServeBody(const Peer& peer, BodyReader& body, Response& res) override;
  // At start: runs the Event invocations the durable queue held.
  [[nodiscard]] Status ResumeEvents(asio::any_io_executor executor);
  // At start: runs the jobs left unfinished, starts the job retention sweep and the schedules
  // (firing the runs missed while the server was down).
  [[nodiscard]] Status ResumeJobs(asio::any_io_executor executor);

 private:
  asio::awaitable<void> Functions(const auth::Caller& caller, std::vector<std::string_view> parts,
                                  const std::string& query, const Peer& peer, Request& req,
                                  Response& res);
  asio::awaitable<void> Deploy(const auth::Caller& caller, const std::string& name, Request& req,
                               Response& res);
  // `writer`: the connection, to stream the answer on when the function streams (else null).
  asio::awaitable<void> Invoke(const std::string& name, const std::string& qualifier,
                               ResponseWriter* writer, Request& req, Response& res);
  asio::awaitable<void> DeleteFunction(const std::string& name, Response& res);
  void GetFunction(const auth::Caller& caller, const std::string& name, Response& res);
  // A function's JSON as GET /v1/functions/{name} shows it, with its next scheduled run; its
  // memory from `sp`.
  boost::json::object ShowFunction(const auth::Caller& caller, const std::string& name,
                                   const registry::FunctionInfo& info,
                                   boost::json::storage_ptr sp = {}) const;
  void ListFunctions(const auth::Caller& caller, Response& res);
  void Logs(const std::string& name, const std::string& query, Response& res);
  // GET /v1/functions/{name}/events[?state=&limit=&before=]: newest first, paged by `next`.
  asio::awaitable<void> ListEvents(const std::string& name, const std::string& query,
                                   Response& res);
  // POST /v1/functions/{name}/events/redrive {"ids": [...]} (none: every dead letter).
  asio::awaitable<void> Redrive(const std::string& name, Request& req, Response& res);
  asio::awaitable<void> Usage(const auth::Caller& caller, const std::string& query, Response& res);
  // GET /v1/functions/{name}/stats (stats_api.cc); `name` is internal.
  asio::awaitable<void> Stats(const auth::Caller& caller, const std::string& name,
                              const std::string& query, Response& res);
  // GET /ui/... : the console's embedded assets (no key needed: they hold no data).
  void Console(std::string_view path, Response& res);
  // GET /v1/advice
  asio::awaitable<void> Advice(const auth::Caller& caller, const std::string& query, Response& res);
  // Admin routes /v1/tenants[/NAME] and /v1/keys[/ID], and GET /v1/whoami (admin_api.cc).
  void Tenants(const auth::Caller& caller, const std::vector<std::string_view>& parts, Request& req,
               Response& res);
  void Keys(const auth::Caller& caller, const std::vector<std::string_view>& parts,
            const std::string& query, Request& req, Response& res);
  void WhoAmI(const auth::Caller& caller, Response& res);
  // The model store's routes /v1/artifacts/... (artifacts_api.cc).
  asio::awaitable<void> Artifacts(const auth::Caller& caller,
                                  const std::vector<std::string_view>& parts,
                                  const std::string& query, Request& req, Response& res);
  // {tenant, model name} for a model name as the caller sent it (an admin's TENANT.NAME).
  StatusOr<std::pair<std::string, std::string>> ScopeModel(const auth::Caller& caller,
                                                           std::string_view sent) const;
  // A model file upload's checks on its headers (tenant, Content-Length, size, quota, disk),
  // so a refusal is sent before its body, which the connection then drains, as for any
  // refusal on the headers.
  Status ScreenUpload(const auth::Caller& caller, const http::request_header<>& header) const;
  // NotFound unless `tenant` exists and the caller may act for it.
  Status TenantOfRequest(const auth::Caller& caller, const std::string& tenant) const;
  // Reads the new version's models into the page cache: {"models": [...], "prefetch_ms"}.
  asio::awaitable<boost::json::object> PrefetchModels(const registry::Version& version);
  // The meter's totals in a window (meter::Meter::Totals, one SQL aggregate), read off the
  // event loop.
  asio::awaitable<StatusOr<std::vector<meter::Group>>> FetchTotals(meter::GroupBy by,
                                                                   const std::string& function,
                                                                   const std::string& tenant,
                                                                   int64_t from_us, int64_t to_us);
  void Metrics(Response& res);                           // Prometheus text format
  void Node(const auth::Caller& caller, Response& res);  // GET /v1/node
  boost::json::object NodeGpusJson() const;              // GET /v1/node's "gpus"
  asio::awaitable<void> FunctionUrl(const Peer& peer, Request& req, Response& res);
  // The caller a request's Bearer key belongs to (everyone is admin with auth off).
  std::optional<auth::Caller> Authenticate(const http::request_header<>& req) const;
  // The caller, if the request carries a key of the function's tenant (or an admin key).
  std::optional<auth::Caller> UrlCaller(const http::request_header<>& req,
                                        const std::string& function) const;
  // Whether an Authorization value is a thaw key (Bearer) or a SigV4 signature by one.
  bool IsThawCredential(std::string_view authorization) const;
  // Whether a function URL request may go on: a public function, or one UrlCaller allows.
  bool UrlAllowed(const http::request_header<>& req, const std::string& function) const;

  ApiDeps deps_;
  // Disk-bound work (unpacking a bundle, SQLite queries) runs here, off the event loop.
  asio::thread_pool blocking_{2};
  std::unique_ptr<Forwarder> forwarder_;  // null when this node stands alone
  std::unique_ptr<Invoker> invoker_;
  std::unique_ptr<LambdaApi> lambda_;
  std::unique_ptr<OpenAiApi> openai_;
  std::unique_ptr<JobsApi> jobs_;         // null without deps_.jobs
  std::unique_ptr<Scheduler> schedules_;  // null without deps_.jobs
  std::vector<Cidr> trusted_proxies_;     // whose X-Forwarded-For function URLs believe
  std::atomic<size_t> listing_bytes_{0};  // the last GET /v1/functions body: the next one's room
};

}  // namespace thaw::gateway

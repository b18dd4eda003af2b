#include "gateway/internal_api.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "cluster/artifact_fetcher.h"
#include "common/files.h"
#include "common/sha256.h"
#include "common/unique_fd.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "models/store.h"
#include "registry/registry.h"

namespace thaw::gateway {
namespace {

constexpr size_t kChunkBytes = 1 << 20;  // read from disk and sent at a time

// A model file, from disk to the connection a chunk at a time: never whole in memory.
asio::awaitable<void> SendModelFile(const ApiDeps& deps, const Peer& peer, const std::string& sha,
                                    Response& res) {
  if (deps.models == nullptr) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "no model store on this node");
  }
  const std::string path = deps.models->BlobPath(sha);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "no model file " + sha + " on this node");
  }
  if (peer.writer == nullptr) {
    co_return ErrorBody(res, http::status::internal_server_error, "ServiceException",
                        "model files are sent only over a connection");
  }
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/octet-stream");
  if (!co_await peer.writer->Begin(res)) co_return;
  std::vector<char> buf(kChunkBytes);
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    // A read error cuts the body short, without its last chunk: the peer sees a broken answer.
    if (n < 0) co_return;
    if (n == 0) break;
    if (!co_await peer.writer->Write(std::string_view(buf.data(), static_cast<size_t>(n)))) {
      co_return;
    }
  }
  co_await peer.writer->End({});
}

}  // namespace

asio::awaitable<void> ServeInternal(const ApiDeps& deps, const Peer& peer, std::string_view path,
                                    const Request& req, Response& res) {
  if (deps.cluster_token.empty()) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "no internal routes: this node is in no cluster");
  }
  if (!cluster::TokenMatches(req[cluster::kClusterTokenHeader], deps.cluster_token)) {
    co_return ErrorBody(res, http::status::forbidden, "AccessDeniedException",
                        "internal route: missing or wrong cluster token");
  }
  const std::string_view bundles = cluster::kInternalBundlesPath;
  const std::string_view models = cluster::kInternalModelsPath;
  const bool bundle = path.starts_with(bundles);
  if (!bundle && !path.starts_with(models)) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "no such internal route");
  }
  if (req.method() != http::verb::get) co_return MethodNotAllowed(req, res);
  const std::string sha(path.substr(bundle ? bundles.size() : models.size()));
  if (!IsSha256Hex(sha)) {
    co_return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                        std::string("expected a ") + (bundle ? "bundle's" : "model file's") +
                            " sha256 (64 lower-case hex digits)");
  }
  if (!bundle) co_return co_await SendModelFile(deps, peer, sha, res);
  auto archive = ReadFile(deps.registry->BlobPath(sha));
  if (!archive.ok()) {
    co_return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                        "no bundle " + sha + " on this node");
  }
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/zip");
  res.body() = std::move(*archive);
  res.prepare_payload();
}

}  // namespace thaw::gateway

#include "gateway/internal_api.h"

#include "cluster/bundle_fetcher.h"
#include "common/files.h"
#include "common/sha256.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "registry/registry.h"

namespace thaw::gateway {

void ServeInternal(const ApiDeps& deps, std::string_view path, const Request& req, Response& res) {
  if (deps.cluster_token.empty()) {
    return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                     "no internal routes: this node is in no cluster");
  }
  if (!cluster::TokenMatches(req[cluster::kClusterTokenHeader], deps.cluster_token)) {
    return ErrorBody(res, http::status::forbidden, "AccessDeniedException",
                     "internal route: missing or wrong cluster token");
  }
  const std::string_view prefix = cluster::kInternalBundlesPath;
  if (!path.starts_with(prefix)) {
    return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                     "no such internal route");
  }
  if (req.method() != http::verb::get) return MethodNotAllowed(req, res);
  const std::string sha(path.substr(prefix.size()));
  if (!IsSha256Hex(sha)) {
    return ErrorBody(res, http::status::bad_request, "InvalidParameterValueException",
                     "expected a bundle's sha256 (64 lower-case hex digits)");
  }
  auto archive = ReadFile(deps.registry->BlobPath(sha));
  if (!archive.ok()) {
    return ErrorBody(res, http::status::not_found, "ResourceNotFoundException",
                     "no bundle " + sha + " on this node");
  }
  res.result(http::status::ok);
  res.set(http::field::content_type, "application/zip");
  res.body() = std::move(*archive);
  res.prepare_payload();
}

}  // namespace thaw::gateway

// The model store's routes, /v1/artifacts/... (not /v1/models: that is the OpenAI face's):
//
//   HEAD /v1/artifacts/_blobs/{sha256}     200 if the caller's tenant already holds that file
//   PUT  /v1/artifacts/_blobs/{sha256}     one file's bytes (Content-Length required): streamed
//                                          to disk and hashed as they arrive, 201 or 400 on a
//                                          digest mismatch (nothing kept)
//   PUT  /v1/artifacts/{name}/{tag}        {"files": [{path, sha256, size}]}: points the tag
//   GET  /v1/artifacts[/{name}[/{tag}]]    the tenant's models, one model's tags, one tag
//   DELETE /v1/artifacts/{name}/{tag}      409 while a deployed version uses it
//
// A tenant key addresses its own tenant's models by bare name; an admin's TENANT.NAME (or
// ?tenant= on the blob routes) addresses another tenant's. Blob uploads are not counted in
// max_upload_bytes_in_flight: they never sit in memory (64 KiB at a time), and the disk check
// and the tenant's quota bound them instead.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>

#include "auth/keys.h"
#include "common/ids.h"
#include "common/sha256.h"
#include "common/tenant.h"
#include "gateway/api.h"
#include "gateway/responses.h"
#include "models/names.h"
#include "models/store.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (GCC bug 109224,
// fixed in 13) in coroutines that co_return early and co_await later.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace thaw::gateway {
namespace {

namespace json = boost::json;

constexpr std::string_view kArtifacts = "/v1/artifacts";
constexpr std::string_view kBlobs = "/v1/artifacts/_blobs/";

std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

std::string QueryOf(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
}

json::object ModelJson(const std::string& shown_name, const models::Model& m, bool with_files) {
  json::object o{{"name", shown_name},
                 {"tag", m.tag},
                 {"digest", "sha256:" + m.digest},
                 {"size", m.size},
                 {"files_count", static_cast<int64_t>(m.files.size())},
                 {"created", Iso8601(m.created_us)}};
  if (with_files) {
    json::array files;
    for (const auto& f : m.files) {
      files.push_back(json::object{{"path", f.path}, {"sha256", f.sha256}, {"size", f.size}});
    }
    o["files"] = std::move(files);
  }
  return o;
}

StatusOr<std::vector<models::File>> ParseFiles(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("files") ||
      !v.as_object().at("files").is_array()) {
    return InvalidArgument(
        "body must be a JSON object {\"files\": [{\"path\", \"sha256\", \"size\"}, ...]}");
  }
  std::vector<models::File> out;
  const json::array& files = v.as_object().at("files").as_array();
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string where = "files[" + std::to_string(i) + "]";
    const json::object* o = files[i].if_object();
    const json::value* path = o ? o->if_contains("path") : nullptr;
    const json::value* sha = o ? o->if_contains("sha256") : nullptr;
    const json::value* size = o ? o->if_contains("size") : nullptr;
    if (!path || !path->is_string() || !sha || !sha->is_string() || !size || !size->is_int64()) {
      return InvalidArgument(where + " must be {\"path\": string, \"sha256\": string, " +
                             "\"size\": integer}");
    }
    out.push_back(models::File{std::string(path->as_string()), std::string(sha->as_string()),
                               size->as_int64()});
  }
  return out;
}

}  // namespace

bool Api::StreamsBody(const http::request_header<>& header) const {
  return header.method() == http::verb::put && PathOf(header.target()).starts_with(kBlobs);
}

StatusOr<std::pair<std::string, std::string>> Api::ScopeModel(const auth::Caller& caller,
                                                              std::string_view sent) const {
  std::string tenant = caller.tenant;
  std::string name(sent);
  if (auto dot = sent.find('.'); dot != std::string_view::npos) {
    if (!caller.admin()) return NotFound("no model " + name);
    tenant = std::string(sent.substr(0, dot));
    name = std::string(sent.substr(dot + 1));
  }
  if (!models::IsValidModelName(name)) {
    return InvalidArgument("model name must be 1-64 letters, digits, '-' or '_', got '" + name +
                           "'");
  }
  THAW_RETURN_IF_ERROR(TenantOfRequest(caller, tenant));
  return std::make_pair(tenant, name);
}

Status Api::TenantOfRequest(const auth::Caller& caller, const std::string& tenant) const {
  if (tenant != caller.tenant && !caller.admin()) return NotFound("no such tenant " + tenant);
  if (auto t = deps_.keys->GetTenant(tenant); !t.ok()) return t.status();
  return Status::Ok();
}

namespace {

// The tenant a blob route acts for: the caller's, or (admins) ?tenant=.
StatusOr<std::string> BlobTenant(const auth::Caller& caller, const std::string& query) {
  std::string tenant = QueryParam(query, "tenant");
  return tenant.empty() ? caller.tenant : tenant;
}

}  // namespace

Status Api::ScreenUpload(const auth::Caller& caller, const http::request_header<>& header) const {
  if (deps_.models == nullptr) return Unavailable("no model store");
  const std::string sha(PathOf(header.target()).substr(kBlobs.size()));
  auto tenant = BlobTenant(caller, QueryOf(header.target()));
  THAW_RETURN_IF_ERROR(TenantOfRequest(caller, *tenant));
  auto length = header[http::field::content_length];
  int64_t size = 0;
  auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), size);
  if (length.empty() || ec != std::errc() || end != length.data() + length.size()) {
    return InvalidArgument("a model file upload needs Content-Length (the file's size)");
  }
  return deps_.models->CheckUpload(*tenant, sha, size);
}

asio::awaitable<void> Api::ServeBody(const Peer& peer, BodyReader& body, Response& res) {
  res.set("X-Thaw-Request-Id", NewRequestId());
  const auto& header = body.header();
  // Screen's, for this request: authenticated once.
  std::optional<auth::Caller> authenticated;
  const auth::Caller* caller = peer.caller;
  if (caller == nullptr && (authenticated = Authenticate(header))) caller = &*authenticated;
  if (caller == nullptr) {
    ErrorBody(res, http::status::unauthorized, "UnauthorizedException", "missing or invalid key");
    co_return;
  }
  const std::string sha(PathOf(header.target()).substr(kBlobs.size()));
  auto tenant = BlobTenant(*caller, QueryOf(header.target()));
  if (Status st = TenantOfRequest(*caller, *tenant); !st.ok()) co_return StatusBody(res, st);
  // Screen has checked it (ScreenUpload).
  int64_t size = 0;
  auto length = header[http::field::content_length];
  std::from_chars(length.data(), length.data() + length.size(), size);
  auto upload = deps_.models->BeginUpload(*tenant, sha, size);
  if (!upload.ok()) co_return StatusBody(res, upload.status());
  for (;;) {
    std::string piece = co_await body.Read();
    if (piece.empty()) break;
    if (Status st = (*upload)->Write(piece); !st.ok()) co_return StatusBody(res, st);
  }
  if (body.error()) {
    // The client went away or sent a broken body: the upload is dropped with the temp file.
    StatusBody(res, InvalidArgument("the upload ended early: " + body.error().message()));
    co_return;
  }
  if (Status st = (*upload)->Commit(); !st.ok()) co_return StatusBody(res, st);
  JsonBody(res, http::status::created, json::object{{"sha256", sha}, {"size", size}});
}

asio::awaitable<void> Api::Artifacts(const auth::Caller& caller,
                                     const std::vector<std::string_view>& parts,
                                     const std::string& query, Request& req, Response& res) {
  const http::verb m = req.method();
  if (deps_.models == nullptr) co_return StatusBody(res, Unavailable("no model store"));
  // /v1/artifacts/_blobs/{sha256}
  if (parts.size() == 4 && parts[2] == "_blobs") {
    const std::string sha(parts[3]);
    auto tenant = BlobTenant(caller, query);
    if (Status st = TenantOfRequest(caller, *tenant); !st.ok()) co_return StatusBody(res, st);
    if (m == http::verb::head) {
      res.result(deps_.models->Holds(*tenant, sha) ? http::status::ok : http::status::not_found);
      co_return;
    }
    if (m == http::verb::put) {
      // Only a body that was complete with its headers (an empty file) comes here.
      auto upload =
          deps_.models->BeginUpload(*tenant, sha, static_cast<int64_t>(req.body().size()));
      if (!upload.ok()) co_return StatusBody(res, upload.status());
      if (Status st = (*upload)->Write(req.body()); !st.ok()) co_return StatusBody(res, st);
      if (Status st = (*upload)->Commit(); !st.ok()) co_return StatusBody(res, st);
      JsonBody(res, http::status::created,
               json::object{{"sha256", sha}, {"size", static_cast<int64_t>(req.body().size())}});
      co_return;
    }
    co_return MethodNotAllowed(req, res);
  }
  // /v1/artifacts
  if (parts.size() == 2 || (parts.size() == 3 && parts[2].empty())) {
    if (m != http::verb::get) co_return MethodNotAllowed(req, res);
    std::string tenant = QueryParam(query, "tenant");
    if (tenant.empty()) tenant = caller.tenant;
    if (Status st = TenantOfRequest(caller, tenant); !st.ok()) co_return StatusBody(res, st);
    auto list = deps_.models->List(tenant, "");
    if (!list.ok()) co_return StatusBody(res, list.status());
    auto used = deps_.models->UsedBytes(tenant);
    if (!used.ok()) co_return StatusBody(res, used.status());
    json::array out;
    for (const auto& model : *list) {
      const std::string shown = tenant == caller.tenant ? model.name : tenant + "." + model.name;
      out.push_back(ModelJson(shown, model, false));
    }
    JsonBody(res, http::status::ok,
             json::object{{"models", std::move(out)},
                          {"tenant", tenant},
                          {"used_bytes", *used},
                          {"quota_bytes", deps_.models->quota_bytes()}});
    co_return;
  }
  auto scoped = ScopeModel(caller, parts[2]);
  if (!scoped.ok()) co_return StatusBody(res, scoped.status());
  const auto& [tenant, name] = *scoped;
  const std::string shown(parts[2]);
  if (parts.size() == 3) {  // /v1/artifacts/{name}: its tags
    if (m != http::verb::get) co_return MethodNotAllowed(req, res);
    auto list = deps_.models->List(tenant, name);
    if (!list.ok()) co_return StatusBody(res, list.status());
    if (list->empty()) co_return StatusBody(res, NotFound("no model " + shown));
    json::array out;
    for (const auto& model : *list) out.push_back(ModelJson(shown, model, false));
    JsonBody(res, http::status::ok, json::object{{"name", shown}, {"tags", std::move(out)}});
    co_return;
  }
  if (parts.size() != 4) {
    ErrorBody(res, http::status::not_found, "NotFound",
              "no route for " + std::string(req.target()));
    co_return;
  }
  const std::string tag(parts[3]);
  if (!models::IsValidModelTag(tag)) {
    co_return StatusBody(res, InvalidArgument("tag must be 1-128 letters, digits, '-', '_' or "
                                              "'.', got '" +
                                              tag + "'"));
  }
  if (m == http::verb::get) {
    auto model = deps_.models->Get(tenant, name, tag);
    if (!model.ok()) co_return StatusBody(res, model.status());
    co_return JsonBody(res, http::status::ok, ModelJson(shown, *model, true));
  }
  if (m == http::verb::put) {
    auto files = ParseFiles(req.body());
    if (!files.ok()) co_return StatusBody(res, files.status());
    auto model = co_await asio::co_spawn(
        blocking_,
        [&]() -> asio::awaitable<StatusOr<models::Model>> {
          co_return deps_.models->Put(tenant, name, tag, std::move(*files));
        },
        asio::use_awaitable);
    if (!model.ok()) co_return StatusBody(res, model.status());
    co_return JsonBody(res, http::status::created, ModelJson(shown, *model, true));
  }
  if (m == http::verb::delete_) {
    Status st = co_await asio::co_spawn(
        blocking_,
        [&]() -> asio::awaitable<Status> { co_return deps_.models->Remove(tenant, name, tag); },
        asio::use_awaitable);
    if (!st.ok()) co_return StatusBody(res, st);
    res.result(http::status::no_content);
    co_return;
  }
  MethodNotAllowed(req, res);
}

}  // namespace thaw::gateway

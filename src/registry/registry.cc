#include "registry/registry.h"

#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>

#include "common/clock.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "common/sha256.h"
#include "common/tenant.h"
#include "store/db.h"

namespace thaw::registry {
namespace {

// Bundles are immutable once deployed: drop the write bits so no instance can change them.
// Names relative to each folder's fd, never a path per level (unpacking caps the depth).
Status MakeReadOnly(const std::string& dir, int max_depth) {
  return WalkTree(dir, max_depth, [](int dir_fd, const char* name, const struct stat& st) {
    if (S_ISLNK(st.st_mode)) return Status::Ok();
    if (::fchmodat(dir_fd, name, st.st_mode & ~0222, 0) != 0) {
      return ErrnoStatus("make read-only", name, errno);
    }
    return Status::Ok();
  });
}

Status CheckBootstrap(const std::string& dir, const Manifest& m) {
  if (m.runtime != Runtime::kProvided && m.runtime != Runtime::kCpp) return Status::Ok();
  struct stat st;
  std::string boot = dir + "/bootstrap";
  if (::stat(boot.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0100)) {
    return InvalidArgument(std::string("runtime '") + RuntimeName(m.runtime) +
                           "' needs an executable file named bootstrap at the bundle root");
  }
  return Status::Ok();
}

// A positive decimal version number, or nothing.
std::optional<int64_t> ParseVersionNumber(const std::string& text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v <= 0) return std::nullopt;
  return v;
}

std::string RoutingToJson(const std::map<int64_t, double>& weights) {
  boost::json::object o;
  for (const auto& [v, w] : weights) o[std::to_string(v)] = w;
  return JsonText(o);
}

StatusOr<std::map<int64_t, double>> RoutingFromJson(const std::string& text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return Internal("stored alias routing is not a JSON object");
  std::map<int64_t, double> out;
  for (const auto& kv : v.as_object()) {
    auto version = ParseVersionNumber(std::string(kv.key()));
    if (!version || !kv.value().is_number()) return Internal("stored alias routing is malformed");
    out[*version] = kv.value().to_number<double>();
  }
  return out;
}

}  // namespace

int64_t PickAliasVersion(const Alias& alias, double draw) {
  double acc = 0;
  for (const auto& [version, weight] : alias.weights) {
    acc += weight;
    if (draw < acc) return version;
  }
  return alias.version;
}

bool IsValidAliasName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  bool all_digits = true;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (!std::isdigit(static_cast<unsigned char>(c))) all_digits = false;
  }
  return !all_digits;
}

Registry::Registry(std::string data_dir, std::unique_ptr<store::Db> db, UnpackLimits limits)
    : data_dir_(std::move(data_dir)), limits_(limits), db_(std::move(db)) {}

Registry::~Registry() = default;

StatusOr<std::unique_ptr<Registry>> Registry::Open(const std::string& data_dir, UnpackLimits limits,
                                                   const std::string& store) {
  for (const char* sub : {"bundles", "blobs", "tmp"}) {
    THAW_RETURN_IF_ERROR(MakeDirs(data_dir + "/" + sub));
  }
  // Leftovers of deploys interrupted by a crash.
  (void)RemoveTree(data_dir + "/tmp");
  THAW_RETURN_IF_ERROR(MakeDirs(data_dir + "/tmp"));
  auto db = store::Db::Open(store.empty() ? data_dir + "/thaw.db" : store);
  if (!db.ok()) return db.status();
  std::unique_ptr<Registry> reg(new Registry(data_dir, std::move(*db), limits));
  THAW_RETURN_IF_ERROR(reg->Load());
  return reg;
}

Status Registry::Load() {
  std::map<std::string, FunctionInfo> functions;
  THAW_RETURN_IF_ERROR(ReadAll(functions));
  std::set<std::string> live_bundles;
  for (const auto& [_, f] : functions) {
    for (const auto& v : f.versions) live_bundles.insert(v->sha256);
  }
  functions_ = std::move(functions);
  // Bundles no version refers to (deleted functions) are collected at start, when no instance
  // can be using them.
  // RemoveTree restores the write bits it needs and holds one folder open at a time, so a
  // bundle unpacked before depth limits existed costs no more to delete than a shallow one.
  std::error_code ec;
  for (const char* sub : {"bundles", "blobs"}) {
    for (auto& e : std::filesystem::directory_iterator(data_dir_ + "/" + sub, ec)) {
      if (!live_bundles.count(e.path().filename().string())) (void)RemoveTree(e.path().string());
    }
  }
  return Status::Ok();
}

Status Registry::ReadAll(std::map<std::string, FunctionInfo>& out) const {
  auto fns = db_->Prepare(
      "SELECT name, latest_version, created_us, updated_us, reserved_concurrency FROM functions");
  if (!fns.ok()) return fns.status();
  for (;;) {
    auto row = fns->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    FunctionInfo f;
    f.name = fns->Text(0);
    f.latest = fns->Int(1);
    f.created_us = fns->Int(2);
    f.updated_us = fns->Int(3);
    if (!fns->IsNull(4)) f.reserved_concurrency = fns->Int(4);
    out[f.name] = std::move(f);
  }
  auto pubs = db_->Prepare("SELECT name, version, description, created_us FROM published_versions");
  if (!pubs.ok()) return pubs.status();
  for (;;) {
    auto row = pubs->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    auto it = out.find(pubs->Text(0));
    if (it == out.end()) continue;
    const int64_t version = pubs->Int(1);
    it->second.published[version] = PublishedVersion{version, pubs->Text(2), pubs->Int(3)};
  }
  auto aliases = db_->Prepare(
      "SELECT name, alias, version, routing, description, created_us, updated_us FROM aliases");
  if (!aliases.ok()) return aliases.status();
  for (;;) {
    auto row = aliases->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    auto it = out.find(aliases->Text(0));
    if (it == out.end()) continue;
    auto weights = RoutingFromJson(aliases->Text(3));
    if (!weights.ok()) return weights.status();
    Alias a{aliases->Text(1), aliases->Int(2), std::move(*weights),
            aliases->Text(4), aliases->Int(5), aliases->Int(6)};
    it->second.aliases[a.name] = std::move(a);
  }
  auto vers = db_->Prepare(
      "SELECT name, version, sha256, manifest, code_size, created_us FROM versions "
      "ORDER BY name, version");
  if (!vers.ok()) return vers.status();
  for (;;) {
    auto row = vers->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    auto manifest = ManifestFromJson(vers->Text(3));
    if (!manifest.ok()) return manifest.status();
    auto v = std::make_shared<Version>();
    v->function = vers->Text(0);
    v->version = vers->Int(1);
    v->sha256 = vers->Text(2);
    v->bundle_dir = data_dir_ + "/bundles/" + v->sha256;
    v->code_size = vers->Int(4);
    v->created_us = vers->Int(5);
    v->manifest = std::move(*manifest);
    auto it = out.find(v->function);
    if (it != out.end()) it->second.versions.push_back(std::move(v));
  }
  return Status::Ok();
}

StatusOr<std::vector<Registry::LatestChange>> Registry::Reload() {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::map<std::string, FunctionInfo> fresh;
  THAW_RETURN_IF_ERROR(ReadAll(fresh));
  std::vector<LatestChange> changes;
  std::unique_lock lock(mu_);
  for (auto& [name, f] : fresh) {
    auto old = functions_.find(name);
    if (old != functions_.end()) {
      // Versions are immutable: the ones this node holds stay the same objects (pools hold
      // them).
      std::map<int64_t, std::shared_ptr<const Version>> had;
      for (const auto& v : old->second.versions) had[v->version] = v;
      for (auto& v : f.versions) {
        auto same = had.find(v->version);
        if (same != had.end() && same->second->sha256 == v->sha256) v = same->second;
      }
    }
    const int64_t was = old == functions_.end() || old->second.versions.empty()
                            ? 0
                            : old->second.versions.back()->version;
    if (!f.versions.empty() && f.versions.back()->version != was) {
      changes.push_back({name, f.versions.back()});
    }
  }
  for (const auto& [name, f] : functions_) {
    if (!fresh.count(name)) changes.push_back({name, nullptr});
  }
  functions_ = std::move(fresh);
  return changes;
}

std::string Registry::BlobPath(const std::string& sha256) const {
  return data_dir_ + "/blobs/" + sha256;
}

Status Registry::InstallBundle(const std::string& sha256, const std::string& archive) {
  if (!IsSha256Hex(sha256) || Sha256Hex(archive) != sha256) {
    return InvalidArgument("bundle: the archive's sha256 is not " + sha256);
  }
  const std::string bundle_dir = data_dir_ + "/bundles/" + sha256;
  if (PathExists(bundle_dir)) return Status::Ok();
  auto tmp = Stage(archive);
  if (!tmp.ok()) return tmp.status();
  if (Status st = MakeReadOnly(*tmp, static_cast<int>(limits_.max_depth)); !st.ok()) {
    (void)RemoveTree(*tmp);
    return st;
  }
  if (::rename(tmp->c_str(), bundle_dir.c_str()) != 0) {
    const int err = errno;
    (void)RemoveTree(*tmp);
    // Another fetch of the same digest got there first: its bundle is the same.
    if (PathExists(bundle_dir)) return Status::Ok();
    return ErrnoStatus("store bundle", bundle_dir, err);
  }
  const std::string blob = BlobPath(sha256);
  if (!PathExists(blob)) THAW_RETURN_IF_ERROR(WriteFileAtomic(blob, archive, 0644));
  return Status::Ok();
}

// What CommitLocked records: a manifest, and code either freshly unpacked into tmp/
// (`staged_dir`, with its `archive`) or already stored (`staged_dir` empty).
struct Registry::NewVersion {
  std::string sha;
  int64_t code_size = 0;
  std::string staged_dir;
  const std::string* archive = nullptr;
  Manifest manifest;
};

StatusOr<std::string> Registry::Stage(const std::string& archive) {
  const std::string tmp = data_dir_ + "/tmp/" + RandomHex(8);
  THAW_RETURN_IF_ERROR(Unpack(archive, tmp, limits_));
  return tmp;
}

Status Registry::RunInTransaction(const std::function<Status()>& body) {
  THAW_RETURN_IF_ERROR(db_->Begin());
  Status st = body();
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) (void)db_->Exec("ROLLBACK");
  return st;
}

StatusOr<std::shared_ptr<const Version>> Registry::LatestLocked(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end() || it->second.versions.empty()) {
    return NotFound("Function not found: " + name);
  }
  return it->second.versions.back();
}

StatusOr<std::shared_ptr<const Version>> Registry::CommitLocked(const std::string& name,
                                                                NewVersion nv, bool publish) {
  const std::string bundle_dir = data_dir_ + "/bundles/" + nv.sha;
  auto drop_staged = [&] {
    if (!nv.staged_dir.empty()) (void)RemoveTree(nv.staged_dir);
  };
  if (Status st = CheckBootstrap(nv.staged_dir.empty() ? bundle_dir : nv.staged_dir, nv.manifest);
      !st.ok()) {
    drop_staged();
    return st;
  }
  if (resolve_) {
    if (Status st = resolve_(name, nv.manifest); !st.ok()) {
      drop_staged();
      return st;
    }
  }
  if (version_check_) {
    std::vector<std::shared_ptr<const Version>> latest;
    {
      std::shared_lock lock(mu_);
      for (const auto& [_, f] : functions_) {
        if (!f.versions.empty()) latest.push_back(f.versions.back());
      }
    }
    if (Status st = version_check_(name, nv.manifest, latest); !st.ok()) {
      drop_staged();
      return st;
    }
  }
  if (!nv.staged_dir.empty()) {
    if (PathExists(bundle_dir)) {
      drop_staged();  // same content already stored
    } else {
      if (Status st = MakeReadOnly(nv.staged_dir, static_cast<int>(limits_.max_depth)); !st.ok()) {
        drop_staged();
        return st;
      }
      if (::rename(nv.staged_dir.c_str(), bundle_dir.c_str()) != 0) {
        int err = errno;
        drop_staged();
        return ErrnoStatus("store bundle", bundle_dir, err);
      }
    }
    const std::string blob = data_dir_ + "/blobs/" + nv.sha;
    if (!PathExists(blob)) THAW_RETURN_IF_ERROR(WriteFileAtomic(blob, *nv.archive, 0644));
  }

  int64_t now = WallNowMicros();
  int64_t version = 1;
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    // The store's number, not this node's cache: another node may have recorded a version
    // whose notice has not arrived yet.
    auto last = db_->Prepare("SELECT latest_version FROM functions WHERE name = ?");
    if (!last.ok()) return last.status();
    auto row = last->Bind(1, name).Next();
    if (!row.ok()) return row.status();
    version = *row ? last->Int(0) + 1 : 1;
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto up = db_->Prepare(
        "INSERT INTO functions (name, latest_version, created_us, updated_us) VALUES (?1, ?2, "
        "?3, ?3) ON CONFLICT(name) DO UPDATE SET latest_version = ?2, updated_us = ?3");
    if (!up.ok()) return up.status();
    THAW_RETURN_IF_ERROR(up->Bind(1, name).Bind(2, version).Bind(3, now).Run());
    auto ins = db_->Prepare(
        "INSERT INTO versions (name, version, sha256, manifest, code_size, created_us) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    if (!ins.ok()) return ins.status();
    THAW_RETURN_IF_ERROR(ins->Bind(1, name)
                             .Bind(2, version)
                             .Bind(3, nv.sha)
                             .Bind(4, ManifestToJson(nv.manifest))
                             .Bind(5, nv.code_size)
                             .Bind(6, now)
                             .Run());
    if (!publish) return Status::Ok();
    auto pub = db_->Prepare(
        "INSERT INTO published_versions (name, version, description, created_us) "
        "VALUES (?, ?, ?, ?)");
    if (!pub.ok()) return pub.status();
    return pub->Bind(1, name).Bind(2, version).Bind(3, nv.manifest.description).Bind(4, now).Run();
  }));

  auto v = std::make_shared<Version>();
  v->function = name;
  v->version = version;
  v->sha256 = nv.sha;
  v->bundle_dir = bundle_dir;
  v->code_size = nv.code_size;
  v->created_us = now;
  v->manifest = std::move(nv.manifest);
  std::unique_lock lock(mu_);
  FunctionInfo& f = functions_[name];
  if (f.name.empty()) {
    f.name = name;
    f.created_us = now;
  }
  f.latest = version;
  f.updated_us = now;
  f.versions.push_back(v);
  if (publish) f.published[version] = PublishedVersion{version, v->manifest.description, now};
  return std::shared_ptr<const Version>(v);
}

StatusOr<std::shared_ptr<const Version>> Registry::Deploy(const std::string& name,
                                                          const std::string& archive) {
  if (!IsValidInternalFunctionName(name)) {
    return InvalidArgument("function name must be 1-64 letters, digits, '-' or '_', got '" + name +
                           "'");
  }
  auto tmp = Stage(archive);
  if (!tmp.ok()) return tmp.status();
  struct stat st;
  std::string yaml_path = *tmp + "/thaw.yaml";
  if (::lstat(yaml_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    (void)RemoveTree(*tmp);
    return InvalidArgument("bundle has no thaw.yaml file at its root");
  }
  auto yaml = ReadFile(yaml_path);
  if (!yaml.ok()) {
    (void)RemoveTree(*tmp);
    return yaml.status();
  }
  // thaw.yaml names the function as its tenant knows it: without the tenant prefix.
  const std::string bare(BareFunctionName(name));
  auto manifest = ParseManifest(*yaml, bare);
  if (!manifest.ok()) {
    (void)RemoveTree(*tmp);
    return manifest.status();
  }
  if (manifest->name != bare) {
    (void)RemoveTree(*tmp);
    return InvalidArgument("thaw.yaml: field 'name': '" + manifest->name +
                           "' does not match the function name '" + bare + "' in the request");
  }
  manifest->name = name;
  std::lock_guard<std::mutex> write_lock(write_mu_);
  return CommitLocked(name,
                      NewVersion{Sha256Hex(archive), static_cast<int64_t>(archive.size()), *tmp,
                                 &archive, std::move(*manifest)},
                      false);
}

StatusOr<std::shared_ptr<const Version>> Registry::DeployWithManifest(const std::string& name,
                                                                      const std::string& archive,
                                                                      Manifest manifest,
                                                                      bool create_only,
                                                                      bool publish) {
  manifest.name = name;
  THAW_RETURN_IF_ERROR(CheckManifest(manifest));
  auto tmp = Stage(archive);
  if (!tmp.ok()) return tmp.status();
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (create_only) {
    std::shared_lock lock(mu_);
    if (functions_.count(name)) {
      (void)RemoveTree(*tmp);
      return Status(StatusCode::kAlreadyExists, "Function already exist: " + name);
    }
  }
  return CommitLocked(name,
                      NewVersion{Sha256Hex(archive), static_cast<int64_t>(archive.size()), *tmp,
                                 &archive, std::move(manifest)},
                      publish);
}

StatusOr<std::shared_ptr<const Version>> Registry::UpdateCode(const std::string& name,
                                                              const std::string& archive,
                                                              bool publish) {
  if (auto latest = LatestLocked(name); !latest.ok()) return latest.status();  // fail fast
  auto tmp = Stage(archive);
  if (!tmp.ok()) return tmp.status();
  std::lock_guard<std::mutex> write_lock(write_mu_);
  auto latest = LatestLocked(name);  // again: it may have changed or gone while unpacking
  if (!latest.ok()) {
    (void)RemoveTree(*tmp);
    return latest.status();
  }
  return CommitLocked(name,
                      NewVersion{Sha256Hex(archive), static_cast<int64_t>(archive.size()), *tmp,
                                 &archive, (*latest)->manifest},
                      publish);
}

StatusOr<std::shared_ptr<const Version>> Registry::UpdateConfig(
    const std::string& name, const std::function<Status(Manifest&)>& edit) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  auto latest = LatestLocked(name);
  if (!latest.ok()) return latest.status();
  Manifest m = (*latest)->manifest;
  THAW_RETURN_IF_ERROR(edit(m));
  m.name = name;
  THAW_RETURN_IF_ERROR(CheckManifest(m));
  return CommitLocked(
      name, NewVersion{(*latest)->sha256, (*latest)->code_size, "", nullptr, std::move(m)}, false);
}

StatusOr<PublishedVersion> Registry::Publish(const std::string& name,
                                             const std::string& description,
                                             const std::string& expect_sha256) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  auto latest = LatestLocked(name);
  if (!latest.ok()) return latest.status();
  const int64_t version = (*latest)->version;
  if (!expect_sha256.empty() && expect_sha256 != (*latest)->sha256) {
    return InvalidArgument("CodeSha256 does not match the code of $LATEST (version " +
                           std::to_string(version) + ")");
  }
  {
    std::shared_lock lock(mu_);
    const FunctionInfo& f = functions_.at(name);
    if (auto it = f.published.find(version); it != f.published.end()) return it->second;
  }
  PublishedVersion pv{version, description, WallNowMicros()};
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto ins = db_->Prepare(
        "INSERT INTO published_versions (name, version, description, created_us) "
        "VALUES (?, ?, ?, ?)");
    if (!ins.ok()) return ins.status();
    return ins->Bind(1, name).Bind(2, version).Bind(3, description).Bind(4, pv.created_us).Run();
  }));
  std::unique_lock lock(mu_);
  functions_.at(name).published[version] = pv;
  return pv;
}

Status Registry::Unpublish(const std::string& name, int64_t version) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::shared_lock lock(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return NotFound("Function not found: " + name);
    if (!it->second.published.count(version)) {
      return NotFound("Function not found: " + name + ":" + std::to_string(version));
    }
    for (const auto& [alias_name, alias] : it->second.aliases) {
      if (alias.version == version || alias.weights.count(version)) {
        return FailedPrecondition("version " + std::to_string(version) +
                                  " is still used by alias " + alias_name);
      }
    }
  }
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto del = db_->Prepare("DELETE FROM published_versions WHERE name = ? AND version = ?");
    if (!del.ok()) return del.status();
    return del->Bind(1, name).Bind(2, version).Run();
  }));
  std::unique_lock lock(mu_);
  functions_.at(name).published.erase(version);
  return Status::Ok();
}

StatusOr<Alias> Registry::PutAlias(const std::string& name, Alias alias, bool create) {
  if (!IsValidAliasName(alias.name)) {
    return InvalidArgument(
        "alias name must be 1-128 letters, digits, '-' or '_', and not only "
        "digits; got '" +
        alias.name + "'");
  }
  std::lock_guard<std::mutex> write_lock(write_mu_);
  const int64_t now = WallNowMicros();
  {
    std::shared_lock lock(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return NotFound("Function not found: " + name);
    const FunctionInfo& f = it->second;
    auto existing = f.aliases.find(alias.name);
    if (create && existing != f.aliases.end()) {
      return Status(StatusCode::kAlreadyExists, "Alias already exists: " + alias.name);
    }
    if (!create && existing == f.aliases.end()) {
      return NotFound("Alias not found: " + name + ":" + alias.name);
    }
    alias.created_us = create ? now : existing->second.created_us;
    auto exists = [&](int64_t v) { return v >= 1 && v <= f.latest; };
    if (alias.version != 0 && !exists(alias.version)) {
      return NotFound("Function not found: " + name + ":" + std::to_string(alias.version));
    }
    if (alias.weights.size() > 1) {
      return InvalidArgument("an alias may route to at most one additional version");
    }
    for (const auto& [v, w] : alias.weights) {
      if (alias.version == 0) {
        return InvalidArgument("an alias of $LATEST cannot route to additional versions");
      }
      if (!exists(v)) return NotFound("Function not found: " + name + ":" + std::to_string(v));
      if (v == alias.version) {
        return InvalidArgument("additional version " + std::to_string(v) +
                               " is the alias's own version");
      }
      if (!(w >= 0.0 && w <= 1.0)) {
        return InvalidArgument("weight of version " + std::to_string(v) + " must be 0.0-1.0");
      }
    }
  }
  alias.updated_us = now;
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto up = db_->Prepare(
        "INSERT INTO aliases (name, alias, version, routing, description, created_us, "
        "updated_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name, alias) DO UPDATE SET "
        "version = ?3, routing = ?4, description = ?5, updated_us = ?7");
    if (!up.ok()) return up.status();
    return up->Bind(1, name)
        .Bind(2, alias.name)
        .Bind(3, alias.version)
        .Bind(4, RoutingToJson(alias.weights))
        .Bind(5, alias.description)
        .Bind(6, alias.created_us)
        .Bind(7, alias.updated_us)
        .Run();
  }));
  std::unique_lock lock(mu_);
  functions_.at(name).aliases[alias.name] = alias;
  return alias;
}

Status Registry::DeleteAlias(const std::string& name, const std::string& alias) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::shared_lock lock(mu_);
    auto it = functions_.find(name);
    if (it == functions_.end()) return NotFound("Function not found: " + name);
    if (!it->second.aliases.count(alias)) return NotFound("Alias not found: " + name + ":" + alias);
  }
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto del = db_->Prepare("DELETE FROM aliases WHERE name = ? AND alias = ?");
    if (!del.ok()) return del.status();
    return del->Bind(1, name).Bind(2, alias).Run();
  }));
  std::unique_lock lock(mu_);
  functions_.at(name).aliases.erase(alias);
  return Status::Ok();
}

Status Registry::SetReservedConcurrency(const std::string& name, std::optional<int64_t> reserved) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::shared_lock lock(mu_);
    if (!functions_.count(name)) return NotFound("Function not found: " + name);
  }
  THAW_RETURN_IF_ERROR(RunInTransaction([&]() -> Status {
    THAW_RETURN_IF_ERROR(db_->Notify("registry", name));
    auto up = db_->Prepare("UPDATE functions SET reserved_concurrency = ? WHERE name = ?");
    if (!up.ok()) return up.status();
    if (reserved) {
      up->Bind(1, *reserved);
    } else {
      up->BindNull(1);
    }
    return up->Bind(2, name).Run();
  }));
  std::unique_lock lock(mu_);
  functions_.at(name).reserved_concurrency = reserved;
  return Status::Ok();
}

StatusOr<Resolved> Registry::Resolve(const std::string& name, const std::string& qualifier,
                                     double draw) const {
  std::shared_lock lock(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end()) return NotFound("Function not found: " + name);
  const FunctionInfo& f = it->second;
  Resolved out;
  out.reserved_concurrency = f.reserved_concurrency;
  int64_t want = 0;  // 0: $LATEST
  if (!qualifier.empty() && qualifier != "$LATEST") {
    auto number = ParseVersionNumber(qualifier);
    if (number.has_value()) {
      want = *number;
    } else if (auto a = f.aliases.find(qualifier); a != f.aliases.end()) {
      want = PickAliasVersion(a->second, draw);
    } else {
      return NotFound("Function not found: " + name + ":" + qualifier);
    }
  }
  if (want == 0) {
    out.latest = true;
    want = f.latest;
  }
  auto v = std::lower_bound(
      f.versions.begin(), f.versions.end(), want,
      [](const std::shared_ptr<const Version>& a, int64_t b) { return a->version < b; });
  if (v == f.versions.end() || (*v)->version != want) {
    return NotFound("Function not found: " + name + ":" + qualifier);
  }
  out.version = *v;
  return out;
}

StatusOr<std::shared_ptr<const Version>> Registry::Resolve(const std::string& name,
                                                           const std::string& qualifier) const {
  thread_local std::mt19937_64 rng(std::random_device{}());
  auto r = Resolve(name, qualifier, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
  if (!r.ok()) return r.status();
  return r->version;
}

StatusOr<FunctionInfo> Registry::Get(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end()) return NotFound("Function not found: " + name);
  return it->second;
}

std::vector<FunctionInfo> Registry::List() const {
  std::shared_lock lock(mu_);
  std::vector<FunctionInfo> out;
  out.reserve(functions_.size());
  for (const auto& [_, f] : functions_) out.push_back(f);
  return out;
}

Status Registry::Delete(const std::string& name) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::shared_lock lock(mu_);
    if (!functions_.count(name)) return NotFound("Function not found: " + name);
  }
  THAW_RETURN_IF_ERROR(db_->Begin());
  if (Status st = db_->Notify("registry", name); !st.ok()) {
    (void)db_->Exec("ROLLBACK");
    return st;
  }
  for (const char* sql :
       {"DELETE FROM versions WHERE name = ?", "DELETE FROM published_versions WHERE name = ?",
        "DELETE FROM aliases WHERE name = ?", "DELETE FROM functions WHERE name = ?"}) {
    auto stmt = db_->Prepare(sql);
    Status st = stmt.ok() ? stmt->Bind(1, name).Run() : stmt.status();
    if (!st.ok()) {
      (void)db_->Exec("ROLLBACK");
      return st;
    }
  }
  THAW_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  std::unique_lock lock(mu_);
  functions_.erase(name);
  return Status::Ok();
}

}  // namespace thaw::registry

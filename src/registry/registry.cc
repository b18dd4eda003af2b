#include "registry/registry.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <set>

#include "common/clock.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/sha256.h"
#include "store/db.h"

namespace thaw::registry {
namespace {

// Bundles are immutable once deployed: drop the write bits so no instance can change them.
void MakeReadOnly(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_symlink(ec)) continue;
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0) ::chmod(it->path().c_str(), st.st_mode & ~0222);
  }
}

}  // namespace

Registry::Registry(std::string data_dir, std::unique_ptr<store::Db> db, UnpackLimits limits)
    : data_dir_(std::move(data_dir)), limits_(limits), db_(std::move(db)) {}

Registry::~Registry() = default;

StatusOr<std::unique_ptr<Registry>> Registry::Open(const std::string& data_dir,
                                                   UnpackLimits limits) {
  for (const char* sub : {"bundles", "blobs", "tmp"}) {
    THAW_RETURN_IF_ERROR(MakeDirs(data_dir + "/" + sub));
  }
  // Leftovers of deploys interrupted by a crash.
  (void)RemoveTree(data_dir + "/tmp");
  THAW_RETURN_IF_ERROR(MakeDirs(data_dir + "/tmp"));
  auto db = store::Db::Open(data_dir + "/thaw.db");
  if (!db.ok()) return db.status();
  std::unique_ptr<Registry> reg(new Registry(data_dir, std::move(*db), limits));
  THAW_RETURN_IF_ERROR(reg->Load());
  return reg;
}

Status Registry::Load() {
  auto fns = db_->Prepare("SELECT name, latest_version, created_us, updated_us FROM functions");
  if (!fns.ok()) return fns.status();
  for (;;) {
    auto row = fns->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    FunctionInfo f{fns->Text(0), fns->Int(1), fns->Int(2), fns->Int(3), {}};
    functions_[f.name] = std::move(f);
  }
  auto vers = db_->Prepare(
      "SELECT name, version, sha256, manifest, code_size, created_us FROM versions "
      "ORDER BY name, version");
  if (!vers.ok()) return vers.status();
  std::set<std::string> live_bundles;
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
    live_bundles.insert(v->sha256);
    auto it = functions_.find(v->function);
    if (it != functions_.end()) it->second.versions.push_back(std::move(v));
  }
  // Bundles no version refers to (deleted functions) are collected at start, when no instance
  // can be using them.
  std::error_code ec;
  for (const char* sub : {"bundles", "blobs"}) {
    for (auto& e : std::filesystem::directory_iterator(data_dir_ + "/" + sub, ec)) {
      if (!live_bundles.count(e.path().filename().string())) {
        if (std::string(sub) == "bundles") {
          std::filesystem::permissions(e.path(), std::filesystem::perms::owner_all,
                                       std::filesystem::perm_options::add, ec);
          for (auto& inner : std::filesystem::recursive_directory_iterator(e.path(), ec)) {
            if (!inner.is_symlink(ec) && inner.is_directory(ec)) {
              std::filesystem::permissions(inner.path(), std::filesystem::perms::owner_all,
                                           std::filesystem::perm_options::add, ec);
            }
          }
        }
        (void)RemoveTree(e.path().string());
      }
    }
  }
  return Status::Ok();
}

StatusOr<std::shared_ptr<const Version>> Registry::Deploy(const std::string& name,
                                                          const std::string& archive) {
  if (!IsValidFunctionName(name)) {
    return InvalidArgument("function name must be 1-64 letters, digits, '-' or '_', got '" +
                           name + "'");
  }
  const std::string sha = Sha256Hex(archive);
  const std::string tmp = data_dir_ + "/tmp/" + RandomHex(8);
  THAW_RETURN_IF_ERROR(Unpack(archive, tmp, limits_));
  struct stat st;
  std::string yaml_path = tmp + "/thaw.yaml";
  if (::lstat(yaml_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    (void)RemoveTree(tmp);
    return InvalidArgument("bundle has no thaw.yaml file at its root");
  }
  auto yaml = ReadFile(yaml_path);
  if (!yaml.ok()) {
    (void)RemoveTree(tmp);
    return yaml.status();
  }
  auto manifest = ParseManifest(*yaml, name);
  if (!manifest.ok()) {
    (void)RemoveTree(tmp);
    return manifest.status();
  }
  if (manifest->name != name) {
    (void)RemoveTree(tmp);
    return InvalidArgument("thaw.yaml: field 'name': '" + manifest->name +
                           "' does not match the function name '" + name + "' in the request");
  }
  if (manifest->runtime == Runtime::kProvided || manifest->runtime == Runtime::kCpp) {
    std::string boot = tmp + "/bootstrap";
    if (::stat(boot.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0100)) {
      (void)RemoveTree(tmp);
      return InvalidArgument(std::string("runtime '") + RuntimeName(manifest->runtime) +
                             "' needs an executable file named bootstrap at the bundle root");
    }
  }

  std::lock_guard<std::mutex> write_lock(write_mu_);
  const std::string bundle_dir = data_dir_ + "/bundles/" + sha;
  if (PathExists(bundle_dir)) {
    (void)RemoveTree(tmp);  // same content already stored
  } else {
    MakeReadOnly(tmp);
    if (::rename(tmp.c_str(), bundle_dir.c_str()) != 0) {
      int err = errno;
      (void)RemoveTree(tmp);
      return ErrnoStatus("store bundle", bundle_dir, err);
    }
  }
  const std::string blob = data_dir_ + "/blobs/" + sha;
  if (!PathExists(blob)) THAW_RETURN_IF_ERROR(WriteFileAtomic(blob, archive, 0644));

  int64_t now = WallNowMicros();
  int64_t version = 1;
  {
    std::shared_lock lock(mu_);
    auto it = functions_.find(name);
    if (it != functions_.end()) version = it->second.latest + 1;
  }
  THAW_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  auto fail = [&](Status st) {
    (void)db_->Exec("ROLLBACK");
    return st;
  };
  auto up = db_->Prepare(
      "INSERT INTO functions (name, latest_version, created_us, updated_us) VALUES (?1, ?2, ?3, "
      "?3) ON CONFLICT(name) DO UPDATE SET latest_version = ?2, updated_us = ?3");
  if (!up.ok()) return fail(up.status());
  up->Bind(1, name).Bind(2, version).Bind(3, now);
  if (Status st = up->Run(); !st.ok()) return fail(st);
  auto ins = db_->Prepare(
      "INSERT INTO versions (name, version, sha256, manifest, code_size, created_us) "
      "VALUES (?, ?, ?, ?, ?, ?)");
  if (!ins.ok()) return fail(ins.status());
  ins->Bind(1, name)
      .Bind(2, version)
      .Bind(3, sha)
      .Bind(4, ManifestToJson(*manifest))
      .Bind(5, static_cast<int64_t>(archive.size()))
      .Bind(6, now);
  if (Status st = ins->Run(); !st.ok()) return fail(st);
  THAW_RETURN_IF_ERROR(db_->Exec("COMMIT"));

  auto v = std::make_shared<Version>();
  v->function = name;
  v->version = version;
  v->sha256 = sha;
  v->bundle_dir = bundle_dir;
  v->code_size = static_cast<int64_t>(archive.size());
  v->created_us = now;
  v->manifest = std::move(*manifest);
  std::unique_lock lock(mu_);
  FunctionInfo& f = functions_[name];
  if (f.name.empty()) {
    f.name = name;
    f.created_us = now;
  }
  f.latest = version;
  f.updated_us = now;
  f.versions.push_back(v);
  return std::shared_ptr<const Version>(v);
}

StatusOr<std::shared_ptr<const Version>> Registry::Resolve(const std::string& name,
                                                           const std::string& qualifier) const {
  std::shared_lock lock(mu_);
  auto it = functions_.find(name);
  if (it == functions_.end()) return NotFound("Function not found: " + name);
  const FunctionInfo& f = it->second;
  int64_t want = f.latest;
  if (!qualifier.empty() && qualifier != "$LATEST") {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(qualifier.c_str(), &end, 10);
    if (errno != 0 || end == qualifier.c_str() || *end != '\0' || v <= 0) {
      return NotFound("Function not found: " + name + ":" + qualifier);
    }
    want = v;
  }
  for (const auto& v : f.versions) {
    if (v->version == want) return v;
  }
  return NotFound("Function not found: " + name + ":" + qualifier);
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
  THAW_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  for (const char* sql : {"DELETE FROM versions WHERE name = ?", "DELETE FROM functions WHERE name = ?"}) {
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

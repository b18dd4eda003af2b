// Registry: functions and their immutable versions, backed by SQLite and a content-addressed
// bundle store under the data dir (bundles/<sha256>/, blobs/<sha256>). Every deploy (and every
// configuration change) is a new version; $LATEST names the newest. On top of that, the Lambda
// model: versions the user published, aliases (with weighted routing) and reserved
// concurrency. Thread-safe: reads take a shared lock on an in-memory cache, writes serialize
// on the database connection.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "registry/archive.h"
#include "registry/manifest.h"

namespace thaw::store {
class Db;
}

namespace thaw::registry {

struct Version {
  std::string function;
  int64_t version = 0;
  std::string sha256;
  std::string bundle_dir;  // unpacked, read-only
  int64_t code_size = 0;
  int64_t created_us = 0;
  Manifest manifest;
};

// A version the user published (Lambda's PublishVersion): its number is the version's.
struct PublishedVersion {
  int64_t version = 0;
  std::string description;
  int64_t created_us = 0;
};

// A name for a version (0: $LATEST) that may send a share of calls to another version.
struct Alias {
  std::string name;
  int64_t version = 0;
  std::map<int64_t, double> weights;  // other version -> share of calls, each in [0, 1]
  std::string description;
  int64_t created_us = 0;
  int64_t updated_us = 0;
};

struct FunctionInfo {
  std::string name;
  int64_t latest = 0;
  int64_t created_us = 0;
  int64_t updated_us = 0;
  std::vector<std::shared_ptr<const Version>> versions;  // ascending
  std::map<int64_t, PublishedVersion> published;
  std::map<std::string, Alias> aliases;
  std::optional<int64_t> reserved_concurrency;  // caps concurrent invocations; unset: none
};

// What a qualifier resolved to.
struct Resolved {
  std::shared_ptr<const Version> version;
  bool latest = false;  // reached through $LATEST (named, implied, or by an alias)
  std::optional<int64_t> reserved_concurrency;
};

// The version an alias sends a call to, for `draw` uniform in [0, 1). Pure.
int64_t PickAliasVersion(const Alias& alias, double draw);
// Lambda's alias names: 1-128 of [A-Za-z0-9_-], not all digits.
bool IsValidAliasName(const std::string& name);

class Registry {
 public:
  // Bundles live under `data_dir`; the records in `store` (a postgres:// URL, or empty for
  // <data_dir>/thaw.db: see store/db.h).
  static StatusOr<std::unique_ptr<Registry>> Open(const std::string& data_dir, UnpackLimits limits,
                                                  const std::string& store = "");
  ~Registry();

  // Unpacks and validates `archive`; on success records a new version. `name` comes from the
  // URL; a manifest `name` that differs is an error. Nothing is left behind on failure.
  StatusOr<std::shared_ptr<const Version>> Deploy(const std::string& name,
                                                  const std::string& archive);
  // Like Deploy, with the manifest given by the caller: the bundle needs no thaw.yaml.
  // `create_only`: AlreadyExists if the function exists. `publish`: the new version is also
  // published, in the same transaction.
  StatusOr<std::shared_ptr<const Version>> DeployWithManifest(const std::string& name,
                                                              const std::string& archive,
                                                              Manifest manifest, bool create_only,
                                                              bool publish);
  // New code under the newest version's manifest.
  StatusOr<std::shared_ptr<const Version>> UpdateCode(const std::string& name,
                                                      const std::string& archive, bool publish);
  // A new version with the newest version's code and `edit` applied to a copy of its
  // manifest (an error from `edit` changes nothing).
  StatusOr<std::shared_ptr<const Version>> UpdateConfig(
      const std::string& name, const std::function<Status(Manifest&)>& edit);
  // Publishes the newest version; one already published is returned as it is. A non-empty
  // `expect_sha256` (hex) must match its code.
  StatusOr<PublishedVersion> Publish(const std::string& name, const std::string& description,
                                     const std::string& expect_sha256);
  // FailedPrecondition while an alias routes to it.
  Status Unpublish(const std::string& name, int64_t version);
  // Creates (`create`: AlreadyExists if present) or replaces (NotFound if absent) an alias.
  // Its versions must exist; weights need a numbered primary version.
  StatusOr<Alias> PutAlias(const std::string& name, Alias alias, bool create);
  Status DeleteAlias(const std::string& name, const std::string& alias);
  Status SetReservedConcurrency(const std::string& name, std::optional<int64_t> reserved);

  // `qualifier` is empty or "$LATEST" for the newest, a version number, or an alias (whose
  // weighted routing `draw`, uniform in [0, 1), decides).
  StatusOr<Resolved> Resolve(const std::string& name, const std::string& qualifier,
                             double draw) const;
  // The same with a random draw.
  StatusOr<std::shared_ptr<const Version>> Resolve(const std::string& name,
                                                   const std::string& qualifier) const;
  StatusOr<FunctionInfo> Get(const std::string& name) const;
  std::vector<FunctionInfo> List() const;
  Status Delete(const std::string& name);
  const std::string& data_dir() const { return data_dir_; }

  // A function whose newest version another node changed: `latest` is the new one, or null
  // when the function is gone.
  struct LatestChange {
    std::string function;
    std::shared_ptr<const Version> latest;
  };
  // Reads every record from the store again (another node changed it: store/
  // change_listener.h) and returns the functions whose newest version changed. A version this
  // node already holds stays the same object. Bundles are not fetched here (InstallBundle).
  StatusOr<std::vector<LatestChange>> Reload();
  // Where a version's archive is kept (blobs/<sha256>), as it was deployed; what other nodes
  // fetch.
  std::string BlobPath(const std::string& sha256) const;
  // Unpacks `archive`, fetched from another node, as the bundle of digest `sha256` (its
  // SHA-256, checked here: InvalidArgument when it differs), read-only, and keeps the archive
  // beside it. Ok when the bundle is already there.
  Status InstallBundle(const std::string& sha256, const std::string& archive);
  // Holds off every write (no version is recorded) while the lock is held: for the model
  // store, so the versions it sees stay the versions there are until it is done. Never call
  // the registry's writers while holding it.
  std::unique_lock<std::mutex> BlockWrites() { return std::unique_lock<std::mutex>(write_mu_); }

  // Asked before any new version is recorded, with its function name and manifest and the
  // newest version of every function: an error refuses the version and nothing is recorded
  // (the server checks warm capacity here). Set once, before the registry is shared.
  using VersionCheck =
      std::function<Status(const std::string& name, const Manifest& manifest,
                           const std::vector<std::shared_ptr<const Version>>& latest)>;
  void SetVersionCheck(VersionCheck check) { version_check_ = std::move(check); }
  // Asked before the version check with a new version's function name and manifest: fills
  // what the manifest leaves to deploy time (each `models:` entry's digest, from its tag). An
  // error refuses the version. Set once, before the registry is shared.
  using ManifestResolver = std::function<Status(const std::string& name, Manifest& manifest)>;
  void SetManifestResolver(ManifestResolver resolve) { resolve_ = std::move(resolve); }

 private:
  struct NewVersion;
  Registry(std::string data_dir, std::unique_ptr<store::Db> db, UnpackLimits limits);
  Status Load();  // at open: reads everything, then collects unused bundles
  Status ReadAll(std::map<std::string, FunctionInfo>& functions) const;
  StatusOr<std::string> Stage(const std::string& archive);
  StatusOr<std::shared_ptr<const Version>> CommitLocked(const std::string& name, NewVersion nv,
                                                        bool publish);
  StatusOr<std::shared_ptr<const Version>> LatestLocked(const std::string& name) const;
  Status RunInTransaction(const std::function<Status()>& body);

  const std::string data_dir_;
  const UnpackLimits limits_;
  std::mutex write_mu_;  // serializes every write (and the db connection)
  std::unique_ptr<store::Db> db_;
  mutable std::shared_mutex mu_;
  std::map<std::string, FunctionInfo> functions_;  // guarded by mu_
  VersionCheck version_check_;
  ManifestResolver resolve_;
};

}  // namespace thaw::registry

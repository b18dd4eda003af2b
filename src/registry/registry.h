// Registry: functions and their immutable versions, backed by SQLite and a content-addressed
// bundle store under the data dir (bundles/<sha256>/, blobs/<sha256>). Every deploy is a new
// version; $LATEST names the newest. Thread-safe: reads take a shared lock on an in-memory
// cache, writes serialize on the database connection.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
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

struct FunctionInfo {
  std::string name;
  int64_t latest = 0;
  int64_t created_us = 0;
  int64_t updated_us = 0;
  std::vector<std::shared_ptr<const Version>> versions;  // ascending
};

class Registry {
 public:
  static StatusOr<std::unique_ptr<Registry>> Open(const std::string& data_dir,
                                                  UnpackLimits limits);
  ~Registry();

  // Unpacks and validates `archive`; on success records a new version. `name` comes from the
  // URL; a manifest `name` that differs is an error. Nothing is left behind on failure.
  StatusOr<std::shared_ptr<const Version>> Deploy(const std::string& name,
                                                  const std::string& archive);
  // `qualifier` is empty or "$LATEST" for the newest, else a version number.
  StatusOr<std::shared_ptr<const Version>> Resolve(const std::string& name,
                                                   const std::string& qualifier) const;
  StatusOr<FunctionInfo> Get(const std::string& name) const;
  std::vector<FunctionInfo> List() const;
  Status Delete(const std::string& name);

 private:
  Registry(std::string data_dir, std::unique_ptr<store::Db> db, UnpackLimits limits);
  Status Load();

  const std::string data_dir_;
  const UnpackLimits limits_;
  std::mutex write_mu_;  // serializes deploys and deletes (and the db connection)
  std::unique_ptr<store::Db> db_;
  mutable std::shared_mutex mu_;
  std::map<std::string, FunctionInfo> functions_;  // guarded by mu_
};

}  // namespace thaw::registry

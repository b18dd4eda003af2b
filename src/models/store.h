// ModelStore: the model store. Files are kept once by content under <data-dir>/models/blobs/
// <sha256> (read-only), whoever pushed them; a model is a tenant's NAME:TAG naming a file list
// (path, sha256, size), whose digest names a tree of hard links to those blobs under
// models/trees/<digest>/ laid out as pushed. Instances see a tree read-only (bind-mounted in a
// jail), so every instance and version that uses a file reads the same inode and page-cache
// pages. Tenants share blobs and trees on disk, never names: a tenant only sees its own tags,
// and may only name in a model a blob it has itself uploaded (proof it has the bytes).
//
// Crash contract: a blob is linked into place only once its bytes hashed to the declared
// sha256, a tree is built in models/tmp and renamed into place, and only then are rows
// written; Collect (run at Open and after every removal) deletes what no row refers to.
// Thread-safe: metadata changes serialize on one mutex; an upload's bytes are written outside
// it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace thaw::store {
class Db;
}

namespace thaw::models {

struct StoreOptions {
  std::string data_dir;
  std::string store = "";  // the metadata's database (store/db.h); empty: <data_dir>/thaw.db
  int64_t quota_bytes = 20LL << 30;    // per tenant: the distinct files it holds
  int64_t max_file_bytes = 8LL << 30;  // one file
  const Clock* clock = nullptr;        // null: the real clock (unnamed uploads' age)
  // An upload a tenant never named in a model is dropped (and its bytes freed) this long after
  // it arrived.
  int64_t pending_grace_us = 3600LL * 1'000'000;
};

struct File {
  std::string path;  // relative, '/'-separated, as pushed
  std::string sha256;
  int64_t size = 0;
};

struct Model {
  std::string name;
  std::string tag;
  std::string digest;  // ModelDigest(files)
  int64_t size = 0;    // of all its files
  int64_t created_us = 0;
  std::vector<File> files;  // sorted by path
};

// A model a function version refers to (from the registry): its tag cannot be removed, and
// its files stay, while the version exists.
struct InUse {
  std::string tenant;
  std::string function;  // as the registry stores it
  int64_t version = 0;
  std::string name, tag, digest;
};

struct Prefetched {
  int64_t files = 0;
  int64_t bytes = 0;
  int64_t micros = 0;  // wall time to read them into the page cache
};

// The digest of a file list: SHA-256 over its entries sorted by path. Pure.
std::string ModelDigest(std::vector<File> files);
// What is wrong with a file list (paths, digests, sizes, a path that is both a file and a
// folder, repeats, too many files), as a message naming the entry, or nothing. Pure.
std::optional<std::string> FilesProblem(const std::vector<File>& files, int64_t max_file_bytes);

class ModelStore;

// One file being received. Bytes go to an unlinked-on-failure temporary file under
// models/tmp as they arrive, hashed on the way; Commit links it into the store only if it was
// exactly the declared size and sha256. Destroyed uncommitted, it leaves nothing. Used by one
// thread at a time.
class BlobUpload {
 public:
  ~BlobUpload();
  BlobUpload(const BlobUpload&) = delete;
  BlobUpload& operator=(const BlobUpload&) = delete;

  // InvalidArgument past the declared size.
  Status Write(std::string_view bytes);
  Status Commit();
  const std::string& sha256() const { return sha256_; }
  int64_t received() const { return received_; }

 private:
  friend class ModelStore;
  // `tenant` empty: a file fetched from a peer node (ModelStore::BeginFetch).
  BlobUpload(ModelStore* store, std::string tenant, std::string sha256, int64_t size,
             std::string tmp_path, UniqueFd fd);
  void Release();

  ModelStore* store_;
  std::string tenant_, sha256_;
  int64_t size_;
  std::string tmp_path_;
  UniqueFd fd_;
  Sha256Stream hash_;
  int64_t received_ = 0;
  bool done_ = false;  // committed or released: the reservation is given back
};

class ModelStore {
 public:
  static StatusOr<std::unique_ptr<ModelStore>> Open(StoreOptions options);
  ~ModelStore();

  // The versions that use models, asked on removal and collection, with a lock that holds
  // off new versions until the store is done (so a deploy that resolved a tag cannot record
  // its version between the look and the removal). Set once, before use.
  struct Versions {
    std::unique_lock<std::mutex> hold;
    std::vector<InUse> uses;
  };
  using InUseFn = std::function<Versions()>;
  void SetInUse(InUseFn fn) { in_use_ = std::move(fn); }

  // Starts receiving a file `tenant` says is `size` bytes with `sha256`. Refused before a byte
  // is written: a bad digest (400), over max_file_bytes (413), over the tenant's quota
  // counted with its other uploads in flight (507), or no room on disk (507).
  StatusOr<std::unique_ptr<BlobUpload>> BeginUpload(const std::string& tenant,
                                                    const std::string& sha256, int64_t size);
  // BeginUpload's checks alone, reserving nothing: to refuse on the request's headers.
  Status CheckUpload(const std::string& tenant, const std::string& sha256, int64_t size);
  // Whether `tenant` has uploaded this blob (so a push may skip sending it again).
  bool Holds(const std::string& tenant, const std::string& sha256);
  // Points NAME:TAG at `files`, every one a blob the tenant holds; builds the tree. A tag that
  // moves keeps its old files for the versions deployed with them.
  StatusOr<Model> Put(const std::string& tenant, const std::string& name, const std::string& tag,
                      std::vector<File> files);
  StatusOr<Model> Get(const std::string& tenant, const std::string& name, const std::string& tag);
  // The tenant's models (every tag), by name then tag; `name` non-empty: that model's tags.
  StatusOr<std::vector<Model>> List(const std::string& tenant, const std::string& name);
  // FailedPrecondition (409) while a version uses NAME:TAG.
  Status Remove(const std::string& tenant, const std::string& name, const std::string& tag);
  // Bytes the tenant holds (distinct blobs), for the quota.
  StatusOr<int64_t> UsedBytes(const std::string& tenant);
  int64_t quota_bytes() const { return options_.quota_bytes; }
  int64_t max_file_bytes() const { return options_.max_file_bytes; }

  // Deploy: the digest NAME:TAG names now (NotFound if none). Called while the registry
  // records the version, so no removal or collection runs in between.
  StatusOr<std::string> Resolve(const std::string& tenant, const std::string& name,
                                const std::string& tag);
  // The folder instances see for a digest (it exists once Put returned it).
  std::string TreeDir(const std::string& digest) const;
  // Reads a tree's files into the page cache (posix_fadvise WILLNEED, then reading them
  // through), so an instance's first load is not a disk read.
  StatusOr<Prefetched> Prefetch(const std::string& digest);
  // Deletes trees, blobs and stale uploads that nothing refers to, and leftovers of a crash.
  Status Collect();

  // A cluster's nodes share the metadata but each keeps its own files: one that lacks a
  // version's tree fetches its files from a peer (cluster/artifact_fetcher.h).
  // Whether the tree for `digest` is on this node's disk.
  bool HasTree(const std::string& digest) const;
  // The trees on this node's disk (the digests its node record advertises).
  std::vector<std::string> HeldTrees() const;
  // Where a file's bytes are kept by their sha256 (present or not).
  std::string BlobPath(const std::string& sha256) const;
  // The files a digest names (from the shared metadata); NotFound when no model has it.
  StatusOr<std::vector<File>> TreeFiles(const std::string& digest);
  // Starts receiving a file this node lacks, from a peer: checked like an upload (the bytes
  // must hash to `sha256` and be `size` long) but no tenant's upload and no quota (a tenant
  // already holds it in the cluster); committed, it is only linked into the blobs.
  // InsufficientStorage when the disk lacks room.
  StatusOr<std::unique_ptr<BlobUpload>> BeginFetch(const std::string& sha256, int64_t size);
  // Builds `digest`'s tree from blobs on this disk (every file fetched first); Ok when it is
  // there already.
  Status InstallTree(const std::string& digest);

  // <data-dir>/models/trees: what pools join a digest to.
  static std::string TreesRoot(const std::string& data_dir);

 private:
  friend class BlobUpload;
  ModelStore(StoreOptions options, std::unique_ptr<store::Db> db);
  int64_t NowUs() const;
  Status CommitUpload(BlobUpload& upload);
  void ReleaseReservation(const std::string& tenant, int64_t bytes);
  StatusOr<int64_t> UsedBytesLocked(const std::string& tenant);
  Status CheckUploadLocked(const std::string& tenant, const std::string& sha256, int64_t size);
  Status CheckDisk(int64_t size) const;
  StatusOr<std::vector<File>> TreeFilesLocked(const std::string& digest);
  StatusOr<Model> GetLocked(const std::string& tenant, const std::string& name,
                            const std::string& tag);
  Status BuildTreeLocked(const std::string& digest, const std::vector<File>& files);
  Versions InUseNow();
  Status CollectLocked(const std::vector<InUse>& in_use);
  // Inside a transaction: drops the tenant's uploads of `files` that none of its tags or
  // versions name any more.
  Status ReleaseFilesLocked(const std::string& tenant, const std::vector<File>& files,
                            const std::vector<InUse>& in_use);

  const StoreOptions options_;
  const std::string root_;  // <data-dir>/models
  RealClock real_clock_;
  InUseFn in_use_;
  std::mutex mu_;
  std::unique_ptr<store::Db> db_;            // guarded by mu_
  std::map<std::string, int64_t> reserved_;  // tenant -> upload bytes in flight; mu_
};

}  // namespace thaw::models

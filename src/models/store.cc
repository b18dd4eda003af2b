#include "models/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <set>
#include <vector>

#include "common/files.h"
#include "common/ids.h"
#include "common/json_text.h"
#include "models/names.h"
#include "store/db.h"

namespace thaw::models {
namespace {

namespace json = boost::json;

constexpr int64_t kDiskSlackBytes = 64LL << 20;  // left free after an upload

std::string FilesToJson(const std::vector<File>& files) {
  json::array out;
  for (const File& f : files) {
    out.push_back(json::object{{"path", f.path}, {"sha256", f.sha256}, {"size", f.size}});
  }
  return JsonText(out);
}

StatusOr<std::vector<File>> FilesFromJson(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_array()) return Internal("stored model file list is not a JSON array");
  std::vector<File> out;
  try {
    for (const auto& item : v.as_array()) {
      const json::object& o = item.as_object();
      out.push_back(File{json::value_to<std::string>(o.at("path")),
                         json::value_to<std::string>(o.at("sha256")),
                         o.at("size").to_number<int64_t>()});
    }
  } catch (const std::exception& e) {
    return Internal(std::string("stored model file list is malformed: ") + e.what());
  }
  return out;
}

Status RunInTransaction(store::Db& db, const std::function<Status()>& body) {
  THAW_RETURN_IF_ERROR(db.Begin());
  Status st = body();
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) (void)db.Exec("ROLLBACK");
  return st;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::string ModelDigest(std::vector<File> files) {
  std::sort(files.begin(), files.end(),
            [](const File& a, const File& b) { return a.path < b.path; });
  Sha256Stream hash;
  for (const File& f : files) {
    hash.Update(f.path);
    hash.Update(std::string_view("\0", 1));
    hash.Update(f.sha256);
    hash.Update(std::string_view("\0", 1));
    hash.Update(std::to_string(f.size));
    hash.Update("\n");
  }
  return hash.FinishHex();
}

std::optional<std::string> FilesProblem(const std::vector<File>& files, int64_t max_file_bytes) {
  if (files.empty()) return "files: a model needs at least one file";
  if (files.size() > kMaxFilesPerModel) return "files: more than 10000 files";
  std::set<std::string> paths;
  for (size_t i = 0; i < files.size(); ++i) {
    const File& f = files[i];
    const std::string where = "files[" + std::to_string(i) + "]";
    if (auto problem = FilePathProblem(f.path)) return where + ".path " + *problem;
    if (!IsSha256Hex(f.sha256)) return where + ".sha256 must be 64 lower-case hex digits";
    if (f.size < 0 || f.size > max_file_bytes) {
      return where + ".size must be 0-" + std::to_string(max_file_bytes) +
             " (max_model_file_bytes)";
    }
    if (!paths.insert(f.path).second) return where + ".path repeats '" + f.path + "'";
  }
  // A path may not be both a file and a folder ("a" and "a/b").
  for (const std::string& p : paths) {
    auto it = paths.lower_bound(p + "/");
    if (it != paths.end() && it->starts_with(p + "/")) {
      return "files: '" + p + "' is both a file and a folder";
    }
  }
  return std::nullopt;
}

// --- BlobUpload ---

BlobUpload::BlobUpload(ModelStore* store, std::string tenant, std::string sha256, int64_t size,
                       std::string tmp_path, UniqueFd fd)
    : store_(store),
      tenant_(std::move(tenant)),
      sha256_(std::move(sha256)),
      size_(size),
      tmp_path_(std::move(tmp_path)),
      fd_(std::move(fd)) {}

BlobUpload::~BlobUpload() {
  if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
  Release();
}

void BlobUpload::Release() {
  if (done_) return;
  done_ = true;
  if (!tenant_.empty()) store_->ReleaseReservation(tenant_, size_);
}

Status BlobUpload::Write(std::string_view bytes) {
  if (received_ + static_cast<int64_t>(bytes.size()) > size_) {
    return InvalidArgument("the file is longer than the declared " + std::to_string(size_) +
                           " bytes");
  }
  hash_.Update(bytes);
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(fd_.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", tmp_path_, errno);
    }
    off += static_cast<size_t>(n);
  }
  received_ += static_cast<int64_t>(bytes.size());
  return Status::Ok();
}

Status BlobUpload::Commit() {
  if (done_) return FailedPrecondition("upload already finished");
  if (received_ != size_) {
    return InvalidArgument("the file is " + std::to_string(received_) +
                           " bytes, not the declared " + std::to_string(size_));
  }
  const std::string actual = hash_.FinishHex();
  if (actual != sha256_) {
    return InvalidArgument("sha256 mismatch: declared " + sha256_ +
                           ", the bytes received hash to " + actual + "; nothing was stored");
  }
  // Readable by every instance's uid; nobody writes a blob again.
  if (::fchmod(fd_.get(), 0444) != 0) return ErrnoStatus("chmod", tmp_path_, errno);
  if (::fsync(fd_.get()) != 0) return ErrnoStatus("fsync", tmp_path_, errno);
  fd_.reset();
  Status st = store_->CommitUpload(*this);
  Release();
  return st;
}

// --- ModelStore ---

ModelStore::ModelStore(StoreOptions options, std::unique_ptr<store::Db> db)
    : options_(std::move(options)), root_(options_.data_dir + "/models"), db_(std::move(db)) {}

ModelStore::~ModelStore() = default;

std::string ModelStore::TreesRoot(const std::string& data_dir) {
  return data_dir + "/models/trees";
}

StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(StoreOptions options) {
  const std::string root = options.data_dir + "/models";
  for (const char* sub : {"", "/blobs", "/trees", "/tmp"}) {
    THAW_RETURN_IF_ERROR(MakeDirs(root + sub, 0755));
  }
  // What a crash left mid-upload or mid-tree.
  THAW_RETURN_IF_ERROR(RemoveTree(root + "/tmp"));
  THAW_RETURN_IF_ERROR(MakeDirs(root + "/tmp", 0700));
  auto db = store::Db::Open(options.store.empty() ? options.data_dir + "/thaw.db" : options.store);
  if (!db.ok()) return db.status();
  return std::unique_ptr<ModelStore>(new ModelStore(std::move(options), std::move(*db)));
}

int64_t ModelStore::NowUs() const {
  return (options_.clock != nullptr ? options_.clock : &real_clock_)->WallMicros();
}

std::string ModelStore::TreeDir(const std::string& digest) const {
  return root_ + "/trees/" + digest;
}

void ModelStore::ReleaseReservation(const std::string& tenant, int64_t bytes) {
  std::lock_guard lock(mu_);
  if ((reserved_[tenant] -= bytes) <= 0) reserved_.erase(tenant);
}

StatusOr<int64_t> ModelStore::UsedBytesLocked(const std::string& tenant) {
  auto q = db_->Prepare("SELECT COALESCE(SUM(size), 0) FROM model_uploads WHERE tenant = ?");
  if (!q.ok()) return q.status();
  q->Bind(1, tenant);
  auto row = q->Next();
  if (!row.ok()) return row.status();
  return *row ? q->Int(0) : 0;
}

StatusOr<int64_t> ModelStore::UsedBytes(const std::string& tenant) {
  std::lock_guard lock(mu_);
  return UsedBytesLocked(tenant);
}

bool ModelStore::Holds(const std::string& tenant, const std::string& sha256) {
  std::lock_guard lock(mu_);
  auto q = db_->Prepare("SELECT 1 FROM model_uploads WHERE tenant = ? AND sha256 = ?");
  if (!q.ok()) return false;
  q->Bind(1, tenant).Bind(2, sha256);
  auto row = q->Next();
  return row.ok() && *row;
}

Status ModelStore::CheckUploadLocked(const std::string& tenant, const std::string& sha256,
                                     int64_t size) {
  if (!IsSha256Hex(sha256)) {
    return InvalidArgument("the declared sha256 must be 64 lower-case hex digits, got '" + sha256 +
                           "'");
  }
  if (size < 0 || size > options_.max_file_bytes) {
    return PayloadTooLarge("a model file may be at most " +
                           std::to_string(options_.max_file_bytes) +
                           " bytes (max_model_file_bytes), this one is " + std::to_string(size));
  }
  THAW_RETURN_IF_ERROR(CheckDisk(size));
  auto q = db_->Prepare("SELECT 1 FROM model_uploads WHERE tenant = ? AND sha256 = ?");
  if (!q.ok()) return q.status();
  q->Bind(1, tenant).Bind(2, sha256);
  auto held = q->Next();
  if (!held.ok()) return held.status();
  auto used = UsedBytesLocked(tenant);
  if (!used.ok()) return used.status();
  const int64_t adds = *held ? 0 : size;
  const int64_t in_flight = reserved_.count(tenant) ? reserved_[tenant] : 0;
  if (*used + in_flight + adds > options_.quota_bytes) {
    return InsufficientStorage("model storage quota exceeded: tenant " + tenant + " holds " +
                               std::to_string(*used) + " bytes (" + std::to_string(in_flight) +
                               " more arriving) of models_quota_bytes " +
                               std::to_string(options_.quota_bytes) + "; this file needs " +
                               std::to_string(size) + " more. Remove models with `thaw models rm`");
  }
  return Status::Ok();
}

Status ModelStore::CheckDisk(int64_t size) const {
  struct statvfs fs;
  if (::statvfs(root_.c_str(), &fs) == 0 &&
      static_cast<int64_t>(fs.f_bavail * fs.f_frsize) < size + kDiskSlackBytes) {
    return InsufficientStorage("not enough free disk for a " + std::to_string(size) +
                               "-byte model file");
  }
  return Status::Ok();
}

Status ModelStore::CheckUpload(const std::string& tenant, const std::string& sha256, int64_t size) {
  std::lock_guard lock(mu_);
  return CheckUploadLocked(tenant, sha256, size);
}

StatusOr<std::unique_ptr<BlobUpload>> ModelStore::BeginUpload(const std::string& tenant,
                                                              const std::string& sha256,
                                                              int64_t size) {
  {
    std::lock_guard lock(mu_);
    THAW_RETURN_IF_ERROR(CheckUploadLocked(tenant, sha256, size));
    reserved_[tenant] += size;
  }
  const std::string tmp = root_ + "/tmp/upload-" + RandomHex(8);
  // SAFETY: a fresh, exclusive file in thaw's own tmp folder (0700); O_EXCL refuses a link.
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    int err = errno;
    ReleaseReservation(tenant, size);
    return ErrnoStatus("create", tmp, err);
  }
  return std::unique_ptr<BlobUpload>(
      new BlobUpload(this, tenant, sha256, size, tmp, std::move(fd)));
}

Status ModelStore::CommitUpload(BlobUpload& upload) {
  const std::string blob = root_ + "/blobs/" + upload.sha256_;
  std::lock_guard lock(mu_);
  // link, not rename: a blob already there keeps its inode, which trees and mapped pages share.
  if (::link(upload.tmp_path_.c_str(), blob.c_str()) != 0 && errno != EEXIST) {
    return ErrnoStatus("store blob", blob, errno);
  }
  ::unlink(upload.tmp_path_.c_str());
  upload.tmp_path_.clear();
  if (upload.tenant_.empty()) return Status::Ok();  // fetched: the tenant's row is the cluster's
  auto ins = db_->Prepare(
      "INSERT INTO model_uploads (tenant, sha256, size, created_us) VALUES (?, ?, ?, ?) "
      "ON CONFLICT(tenant, sha256) DO UPDATE SET created_us = excluded.created_us");
  if (!ins.ok()) return ins.status();
  return ins->Bind(1, upload.tenant_)
      .Bind(2, upload.sha256_)
      .Bind(3, upload.size_)
      .Bind(4, NowUs())
      .Run();
}

Status ModelStore::BuildTreeLocked(const std::string& digest, const std::vector<File>& files) {
  const std::string tree = TreeDir(digest);
  if (PathExists(tree)) return Status::Ok();
  const std::string tmp = root_ + "/tmp/tree-" + RandomHex(8);
  auto fail = [&](Status st) {
    (void)RemoveTree(tmp);
    return st;
  };
  if (::mkdir(tmp.c_str(), 0755) != 0) return ErrnoStatus("create", tmp, errno);
  std::set<std::string> dirs;
  for (const File& f : files) {
    for (size_t slash = f.path.find('/'); slash != std::string::npos;
         slash = f.path.find('/', slash + 1)) {
      std::string dir = tmp + "/" + f.path.substr(0, slash);
      if (dirs.insert(dir).second && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return fail(ErrnoStatus("create", dir, errno));
      }
    }
    const std::string blob = root_ + "/blobs/" + f.sha256;
    const std::string dst = tmp + "/" + f.path;
    if (::link(blob.c_str(), dst.c_str()) != 0) {
      return fail(ErrnoStatus("link " + blob, dst, errno));
    }
  }
  // Folders read-only too: nothing inside a tree changes once it is in place.
  std::vector<std::string> sorted(dirs.rbegin(), dirs.rend());
  sorted.push_back(tmp);
  for (const std::string& d : sorted) {
    if (::chmod(d.c_str(), 0555) != 0) return fail(ErrnoStatus("chmod", d, errno));
  }
  if (::rename(tmp.c_str(), tree.c_str()) != 0) return fail(ErrnoStatus("store tree", tree, errno));
  return Status::Ok();
}

StatusOr<Model> ModelStore::Put(const std::string& tenant, const std::string& name,
                                const std::string& tag, std::vector<File> files) {
  if (!IsValidModelName(name)) {
    return InvalidArgument("model name must be 1-64 letters, digits, '-' or '_', got '" + name +
                           "'");
  }
  if (!IsValidModelTag(tag)) {
    return InvalidArgument("tag must be 1-128 letters, digits, '-', '_' or '.', got '" + tag + "'");
  }
  if (auto problem = FilesProblem(files, options_.max_file_bytes)) return InvalidArgument(*problem);
  std::sort(files.begin(), files.end(),
            [](const File& a, const File& b) { return a.path < b.path; });
  const std::string digest = ModelDigest(files);
  int64_t total = 0;
  Versions versions = InUseNow();
  std::lock_guard lock(mu_);
  for (const File& f : files) {
    auto q = db_->Prepare("SELECT size FROM model_uploads WHERE tenant = ? AND sha256 = ?");
    if (!q.ok()) return q.status();
    q->Bind(1, tenant).Bind(2, f.sha256);
    auto row = q->Next();
    if (!row.ok()) return row.status();
    if (!*row) {
      return InvalidArgument("files: " + f.path + " (sha256 " + f.sha256 +
                             ") has not been uploaded: PUT /v1/artifacts/_blobs/" + f.sha256 +
                             " first");
    }
    if (q->Int(0) != f.size) {
      return InvalidArgument("files: " + f.path + " is " + std::to_string(q->Int(0)) +
                             " bytes in the store, not " + std::to_string(f.size));
    }
    total += f.size;
  }
  THAW_RETURN_IF_ERROR(BuildTreeLocked(digest, files));
  // A tag that moves lets go of the files only its old list named.
  std::vector<File> old_files;
  if (auto old = GetLocked(tenant, name, tag); old.ok() && old->digest != digest) {
    old_files = std::move(old->files);
  }
  const int64_t now = NowUs();
  Status st = RunInTransaction(*db_, [&]() -> Status {
    auto tree = db_->Prepare(
        "INSERT INTO model_trees (digest, files, size) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING");
    if (!tree.ok()) return tree.status();
    THAW_RETURN_IF_ERROR(tree->Bind(1, digest).Bind(2, FilesToJson(files)).Bind(3, total).Run());
    auto up = db_->Prepare(
        "INSERT INTO model_tags (tenant, name, tag, digest, created_us) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(tenant, name, tag) DO UPDATE SET digest = excluded.digest, "
        "created_us = excluded.created_us");
    if (!up.ok()) return up.status();
    THAW_RETURN_IF_ERROR(
        up->Bind(1, tenant).Bind(2, name).Bind(3, tag).Bind(4, digest).Bind(5, now).Run());
    return ReleaseFilesLocked(tenant, old_files, versions.uses);
  });
  // The tree if the rows failed, or the tree the tag moved off, if nothing else uses it.
  (void)CollectLocked(versions.uses);
  THAW_RETURN_IF_ERROR(st);
  return Model{name, tag, digest, total, now, std::move(files)};
}

StatusOr<Model> ModelStore::GetLocked(const std::string& tenant, const std::string& name,
                                      const std::string& tag) {
  auto q = db_->Prepare(
      "SELECT t.digest, t.created_us, r.files, r.size FROM model_tags t JOIN model_trees r "
      "ON r.digest = t.digest WHERE t.tenant = ? AND t.name = ? AND t.tag = ?");
  if (!q.ok()) return q.status();
  q->Bind(1, tenant).Bind(2, name).Bind(3, tag);
  auto row = q->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("no model " + name + ":" + tag);
  auto files = FilesFromJson(q->Text(2));
  if (!files.ok()) return files.status();
  return Model{name, tag, q->Text(0), q->Int(3), q->Int(1), std::move(*files)};
}

StatusOr<Model> ModelStore::Get(const std::string& tenant, const std::string& name,
                                const std::string& tag) {
  std::lock_guard lock(mu_);
  return GetLocked(tenant, name, tag);
}

StatusOr<std::vector<Model>> ModelStore::List(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  auto q = db_->Prepare(
      "SELECT t.name, t.tag, t.digest, t.created_us, r.files, r.size FROM model_tags t JOIN "
      "model_trees r ON r.digest = t.digest WHERE t.tenant = ?1 AND (?2 = '' OR t.name = ?2) "
      "ORDER BY t.name, t.tag");
  if (!q.ok()) return q.status();
  q->Bind(1, tenant).Bind(2, name);
  std::vector<Model> out;
  for (;;) {
    auto row = q->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    auto files = FilesFromJson(q->Text(4));
    if (!files.ok()) return files.status();
    out.push_back(
        Model{q->Text(0), q->Text(1), q->Text(2), q->Int(5), q->Int(3), std::move(*files)});
  }
  return out;
}

Status ModelStore::ReleaseFilesLocked(const std::string& tenant, const std::vector<File>& files,
                                      const std::vector<InUse>& in_use) {
  // The files this tenant holds that none of its tags and none of its versions name are no
  // longer its: they stop counting against its quota (and go, if no one else holds them).
  std::set<std::string> digests;
  for (const InUse& u : in_use) {
    if (u.tenant == tenant) digests.insert(u.digest);
  }
  auto tags = db_->Prepare("SELECT digest FROM model_tags WHERE tenant = ?");
  if (!tags.ok()) return tags.status();
  tags->Bind(1, tenant);
  for (;;) {
    auto row = tags->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    digests.insert(tags->Text(0));
  }
  std::set<std::string> kept;
  for (const std::string& d : digests) {
    auto tree = db_->Prepare("SELECT files FROM model_trees WHERE digest = ?");
    if (!tree.ok()) return tree.status();
    tree->Bind(1, d);
    auto row = tree->Next();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    auto list = FilesFromJson(tree->Text(0));
    if (!list.ok()) return list.status();
    for (const File& f : *list) kept.insert(f.sha256);
  }
  for (const File& f : files) {
    if (kept.count(f.sha256)) continue;
    auto drop = db_->Prepare("DELETE FROM model_uploads WHERE tenant = ? AND sha256 = ?");
    if (!drop.ok()) return drop.status();
    THAW_RETURN_IF_ERROR(drop->Bind(1, tenant).Bind(2, f.sha256).Run());
  }
  return Status::Ok();
}

Status ModelStore::Remove(const std::string& tenant, const std::string& name,
                          const std::string& tag) {
  Versions versions = InUseNow();
  const std::vector<InUse>& in_use = versions.uses;
  std::lock_guard lock(mu_);
  auto model = GetLocked(tenant, name, tag);
  if (!model.ok()) return model.status();
  std::string users;
  for (const InUse& u : in_use) {
    if (u.tenant != tenant || u.name != name || u.tag != tag) continue;
    users += (users.empty() ? "" : ", ") + u.function + " version " + std::to_string(u.version);
  }
  if (!users.empty()) {
    return FailedPrecondition("model " + name + ":" + tag + " is used by " + users +
                              ": delete those functions first");
  }
  Status st = RunInTransaction(*db_, [&]() -> Status {
    auto del = db_->Prepare("DELETE FROM model_tags WHERE tenant = ? AND name = ? AND tag = ?");
    if (!del.ok()) return del.status();
    THAW_RETURN_IF_ERROR(del->Bind(1, tenant).Bind(2, name).Bind(3, tag).Run());
    return ReleaseFilesLocked(tenant, model->files, in_use);
  });
  THAW_RETURN_IF_ERROR(st);
  return CollectLocked(in_use);
}

StatusOr<std::string> ModelStore::Resolve(const std::string& tenant, const std::string& name,
                                          const std::string& tag) {
  std::lock_guard lock(mu_);
  auto q = db_->Prepare("SELECT digest FROM model_tags WHERE tenant = ? AND name = ? AND tag = ?");
  if (!q.ok()) return q.status();
  q->Bind(1, tenant).Bind(2, name).Bind(3, tag);
  auto row = q->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("no model " + name + ":" + tag);
  return q->Text(0);
}

StatusOr<std::vector<File>> ModelStore::TreeFilesLocked(const std::string& digest) {
  auto q = db_->Prepare("SELECT files FROM model_trees WHERE digest = ?");
  if (!q.ok()) return q.status();
  q->Bind(1, digest);
  auto row = q->Next();
  if (!row.ok()) return row.status();
  if (!*row) return NotFound("no model with digest " + digest);
  return FilesFromJson(q->Text(0));
}

StatusOr<std::vector<File>> ModelStore::TreeFiles(const std::string& digest) {
  std::lock_guard lock(mu_);
  return TreeFilesLocked(digest);
}

bool ModelStore::HasTree(const std::string& digest) const { return PathExists(TreeDir(digest)); }

std::vector<std::string> ModelStore::HeldTrees() const {
  std::vector<std::string> out;
  for (std::string& d : ListDir(root_ + "/trees")) {
    if (IsSha256Hex(d)) out.push_back(std::move(d));
  }
  return out;
}

std::string ModelStore::BlobPath(const std::string& sha256) const {
  return root_ + "/blobs/" + sha256;
}

StatusOr<std::unique_ptr<BlobUpload>> ModelStore::BeginFetch(const std::string& sha256,
                                                             int64_t size) {
  if (!IsSha256Hex(sha256)) return InvalidArgument("not a sha256: '" + sha256 + "'");
  THAW_RETURN_IF_ERROR(CheckDisk(size));
  const std::string tmp = root_ + "/tmp/fetch-" + RandomHex(8);
  // SAFETY: a fresh, exclusive file in thaw's own tmp folder (0700); O_EXCL refuses a link.
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus("create", tmp, errno);
  return std::unique_ptr<BlobUpload>(new BlobUpload(this, "", sha256, size, tmp, std::move(fd)));
}

Status ModelStore::InstallTree(const std::string& digest) {
  std::lock_guard lock(mu_);
  if (HasTree(digest)) return Status::Ok();
  auto files = TreeFilesLocked(digest);
  if (!files.ok()) return files.status();
  for (const File& f : *files) {
    if (!PathExists(BlobPath(f.sha256))) {
      return FailedPrecondition("model " + digest + ": file " + f.path + " (sha256 " + f.sha256 +
                                ") is not on this node");
    }
  }
  return BuildTreeLocked(digest, *files);
}

StatusOr<Prefetched> ModelStore::Prefetch(const std::string& digest) {
  auto listed = TreeFiles(digest);
  if (!listed.ok()) return listed.status();
  const std::vector<File>& files = *listed;
  Prefetched out;
  const int64_t start = MonoNowMicros();
  std::vector<char> buf(1 << 20);
  for (const File& f : files) {
    const std::string path = TreeDir(digest) + "/" + f.path;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus("open", path, errno);
    // Asks for the whole file at once (the kernel reads ahead in large requests), then reads
    // it through so it is resident when this returns, not merely requested.
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_WILLNEED);
    for (;;) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus("read", path, errno);
      if (n == 0) break;
      out.bytes += n;
    }
    ++out.files;
  }
  out.micros = MonoNowMicros() - start;
  return out;
}

ModelStore::Versions ModelStore::InUseNow() {
  // Before mu_: the registry takes its write lock, then (resolving a deploy's tags) ours.
  return in_use_ ? in_use_() : Versions{};
}

Status ModelStore::Collect() {
  Versions versions = InUseNow();
  std::lock_guard lock(mu_);
  return CollectLocked(versions.uses);
}

Status ModelStore::CollectLocked(const std::vector<InUse>& in_use) {
  // Live: what a tag or a version names.
  std::set<std::string> live;
  for (const InUse& u : in_use) live.insert(u.digest);
  const int64_t now = NowUs();
  std::set<std::string> blobs;  // sha256s some tree or upload still names
  std::vector<std::string> dead_trees;
  std::vector<File> dead_files;
  Status st = RunInTransaction(*db_, [&]() -> Status {
    auto tags = db_->Prepare("SELECT DISTINCT digest FROM model_tags");
    if (!tags.ok()) return tags.status();
    for (;;) {
      auto row = tags->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      live.insert(tags->Text(0));
    }
    auto trees = db_->Prepare("SELECT digest, files FROM model_trees");
    if (!trees.ok()) return trees.status();
    for (;;) {
      auto row = trees->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      std::string d = trees->Text(0);
      auto files = FilesFromJson(trees->Text(1));
      if (!files.ok()) return files.status();
      if (!live.count(d)) {
        dead_trees.push_back(d);
        dead_files.insert(dead_files.end(), files->begin(), files->end());
        continue;
      }
      for (const File& f : *files) blobs.insert(f.sha256);
    }
    // The files of a list nothing names any more (its last version was deleted): each tenant
    // that holds them and names them nowhere else lets go of them.
    std::set<std::string> tenants;
    auto holders = db_->Prepare("SELECT DISTINCT tenant FROM model_uploads");
    if (!holders.ok()) return holders.status();
    for (;;) {
      auto row = holders->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      tenants.insert(holders->Text(0));
    }
    if (!dead_files.empty()) {
      for (const std::string& t : tenants) {
        THAW_RETURN_IF_ERROR(ReleaseFilesLocked(t, dead_files, in_use));
      }
    }
    for (const std::string& d : dead_trees) {
      auto del = db_->Prepare("DELETE FROM model_trees WHERE digest = ?");
      if (!del.ok()) return del.status();
      THAW_RETURN_IF_ERROR(del->Bind(1, d).Run());
    }
    // Uploads never named in a model, past their grace period.
    auto stale = db_->Prepare(
        "DELETE FROM model_uploads WHERE created_us < ? AND NOT EXISTS (SELECT 1 FROM "
        "model_tags t JOIN model_trees r ON r.digest = t.digest WHERE t.tenant = "
        "model_uploads.tenant AND replace(r.files, model_uploads.sha256, '') <> r.files)");
    if (!stale.ok()) return stale.status();
    THAW_RETURN_IF_ERROR(stale->Bind(1, now - options_.pending_grace_us).Run());
    auto ups = db_->Prepare("SELECT DISTINCT sha256 FROM model_uploads");
    if (!ups.ok()) return ups.status();
    for (;;) {
      auto row = ups->Next();
      if (!row.ok()) return row.status();
      if (!*row) break;
      blobs.insert(ups->Text(0));
    }
    return Status::Ok();
  });
  THAW_RETURN_IF_ERROR(st);
  // Rows first, files after: a crash in between leaves files no row names, removed next time.
  std::set<std::string> live_trees(live.begin(), live.end());
  for (const std::string& d : ListDir(root_ + "/trees")) {
    if (!live_trees.count(d)) THAW_RETURN_IF_ERROR(RemoveTree(root_ + "/trees/" + d));
  }
  for (const std::string& b : ListDir(root_ + "/blobs")) {
    if (blobs.count(b)) continue;
    const std::string path = root_ + "/blobs/" + b;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove", path, errno);
  }
  return Status::Ok();
}

}  // namespace thaw::models

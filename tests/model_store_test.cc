// The model store (src/models/): names and mount paths as tables, the manifest's `models:`,
// and ModelStore on a real temp data dir with a fake clock: uploads checked against their
// declared digest, dedup across tags and tenants (one inode), quotas, tags that move while a
// version keeps the old files, removal refused while in use, collection and prefetch.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/files.h"
#include "common/sha256.h"
#include "models/names.h"
#include "models/store.h"
#include "registry/manifest.h"

namespace thaw::models {
namespace {

namespace fs = std::filesystem;

TEST(ModelNamesTest, MountPaths) {
  struct Case {
    std::string mount;
    bool ok;
  };
  for (const Case& c : std::vector<Case>{
           {"/opt/models/digits", true},
           {"/models", true},
           {"/mnt/m-1/v_2.0", true},
           {"", false},
           {"relative/path", false},
           {"/", false},
           {"/opt/models/", false},
           {"/opt//models", false},
           {"/opt/./models", false},
           {"/opt/../etc", false},
           {"/var/task", false},
           {"/var/task/model", false},
           {"/var", false},  // above /var/task
           {"/opt", false},  // above /opt/thaw
           {"/opt/thaw/x", false},
           {"/tmp/m", false},
           {"/proc/m", false},
           {"/dev/m", false},
           {"/usr/share/m", false},
           {"/etc", false},
           {"/opt/mo dels", false},
       }) {
    EXPECT_EQ(!MountPathProblem(c.mount).has_value(), c.ok) << "'" << c.mount << "'";
  }
}

TEST(ModelNamesTest, FilePathsNamesAndRefs) {
  EXPECT_FALSE(FilePathProblem("model.pt"));
  EXPECT_FALSE(FilePathProblem("tokenizer/vocab.json"));
  for (const char* bad : {"", "/abs", "a//b", "a/./b", "../up", "a/..", "dir/"}) {
    EXPECT_TRUE(FilePathProblem(bad)) << "'" << bad << "'";
  }
  EXPECT_TRUE(FilePathProblem(std::string(256, 'x')));
  EXPECT_TRUE(IsValidModelName("digits-torch_2"));
  EXPECT_FALSE(IsValidModelName("acme.digits"));
  EXPECT_FALSE(IsValidModelName("-x"));
  EXPECT_TRUE(IsValidModelTag("v1.2-rc_3"));
  EXPECT_FALSE(IsValidModelTag("v1:2"));
  EXPECT_EQ(ModelEnvName("digits-v2"), "THAW_MODEL_DIGITS_V2");
  auto ref = ParseModelRef("digits:v3");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->first, "digits");
  EXPECT_EQ(ref->second, "v3");
  EXPECT_EQ(ParseModelRef("digits")->second, "latest");
  EXPECT_FALSE(ParseModelRef("digits:"));
  EXPECT_FALSE(ParseModelRef("bad name:v1"));
}

TEST(ModelNamesTest, FileListProblems) {
  const std::string sha(64, 'a');
  auto problem = [&](std::vector<File> files) { return FilesProblem(files, 1000); };
  EXPECT_FALSE(problem({{"a", sha, 1}, {"b/c", sha, 1000}}));
  EXPECT_TRUE(problem({}));
  EXPECT_TRUE(problem({{"a", "ABC", 1}}));
  EXPECT_TRUE(problem({{"a", sha, 1001}}));  // over max_model_file_bytes
  EXPECT_TRUE(problem({{"a", sha, -1}}));
  EXPECT_TRUE(problem({{"a", sha, 1}, {"a", sha, 1}}));    // repeated
  EXPECT_TRUE(problem({{"a", sha, 1}, {"a/b", sha, 1}}));  // file and folder
  EXPECT_TRUE(problem({{"../x", sha, 1}}));
  // The digest names the list, whatever its order.
  std::vector<File> one = {{"a", sha, 1}, {"b", std::string(64, 'b'), 2}};
  std::vector<File> two = {one[1], one[0]};
  EXPECT_EQ(ModelDigest(one), ModelDigest(two));
  two[0].size = 3;
  EXPECT_NE(ModelDigest(one), ModelDigest(two));
}

TEST(ModelManifestTest, ParsesModelsAndRoundTrips) {
  auto m = registry::ParseManifest(
      "runtime: python3\nhandler: app.handler\nmodels:\n"
      "  - {name: digits, tag: v3, mount: /opt/models/digits}\n"
      "  - {name: vocab, mount: /opt/models/vocab}\n",
      "fn");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->models.size(), 2u);
  EXPECT_EQ(m->models[0].tag, "v3");
  EXPECT_EQ(m->models[1].tag, "latest");
  m->models[0].digest = std::string(64, 'c');
  auto back = registry::ManifestFromJson(registry::ManifestToJson(*m));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->models.size(), 2u);
  EXPECT_EQ(back->models[0].digest, std::string(64, 'c'));
  EXPECT_EQ(back->models[1].mount, "/opt/models/vocab");
}

TEST(ModelManifestTest, RefusesBadModels) {
  struct Case {
    std::string yaml, field;
  };
  for (const Case& c : std::vector<Case>{
           {"models: digits", "models"},
           {"models: [{name: digits}]", "models[0].mount"},
           {"models: [{mount: /opt/m}]", "models[0].name"},
           {"models: [{name: d, mount: /var/task}]", "models[0].mount"},
           {"models: [{name: d, mount: /opt/m, digest: abc}]", "models[0].digest"},
           {"models: [{name: 'a.b', mount: /opt/m}]", "models[0].name"},
           {"models: [{name: d, tag: 'x:y', mount: /opt/m}]", "models[0].tag"},
           {"models: [{name: d, mount: /opt/m}, {name: d, tag: v2, mount: /opt/n}]",
            "models[1].name"},
           {"models: [{name: a-b, mount: /opt/m}, {name: a_b, mount: /opt/n}]", "models[1].name"},
           {"models: [{name: a, mount: /opt/m}, {name: b, mount: /opt/m/sub}]", "models[1].mount"},
       }) {
    auto m = registry::ParseManifest("runtime: python3\nhandler: app.handler\n" + c.yaml, "fn");
    ASSERT_FALSE(m.ok()) << c.yaml;
    EXPECT_NE(m.status().message().find("'" + c.field + "'"), std::string::npos)
        << c.yaml << " -> " << m.status().message();
  }
}

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-models-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen(1 << 20);
  }
  void TearDown() override { (void)RemoveTree(dir_); }

  void Reopen(int64_t quota) {
    store_.reset();
    auto s = ModelStore::Open(StoreOptions{.data_dir = dir_,
                                           .quota_bytes = quota,
                                           .max_file_bytes = 512 << 10,
                                           .clock = &clock_,
                                           .pending_grace_us = 3600LL * 1'000'000});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    store_->SetInUse([this] { return ModelStore::Versions{{}, in_use_}; });
  }

  // Uploads `bytes` for `tenant` in two pieces; returns its sha256.
  std::string Upload(const std::string& tenant, const std::string& bytes) {
    const std::string sha = Sha256Hex(bytes);
    auto up = store_->BeginUpload(tenant, sha, static_cast<int64_t>(bytes.size()));
    EXPECT_TRUE(up.ok()) << up.status().ToString();
    if (!up.ok()) return sha;
    EXPECT_TRUE((*up)->Write(std::string_view(bytes).substr(0, bytes.size() / 2)).ok());
    EXPECT_TRUE((*up)->Write(std::string_view(bytes).substr(bytes.size() / 2)).ok());
    Status st = (*up)->Commit();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return sha;
  }

  size_t Count(const std::string& sub) const {
    size_t n = 0;
    for (auto it = fs::directory_iterator(dir_ + "/models/" + sub); it != fs::end(it); ++it) ++n;
    return n;
  }

  ino_t Inode(const std::string& path) const {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }

  std::string dir_;
  FakeClock clock_;
  std::vector<InUse> in_use_;
  std::unique_ptr<ModelStore> store_;
};

TEST_F(ModelStoreTest, BadDigestLeavesNothing) {
  const std::string bytes(1000, 'x');
  auto up = store_->BeginUpload("default", Sha256Hex("something else"), 1000);
  ASSERT_TRUE(up.ok());
  ASSERT_TRUE((*up)->Write(bytes).ok());
  Status st = (*up)->Commit();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("sha256 mismatch"), std::string::npos) << st.message();
  up->reset();
  EXPECT_EQ(Count("blobs"), 0u);
  EXPECT_EQ(Count("tmp"), 0u);
  EXPECT_FALSE(store_->Holds("default", Sha256Hex(bytes)));
  EXPECT_EQ(*store_->UsedBytes("default"), 0);
  // A declared size that does not match is refused too (longer: at once; shorter: at commit).
  auto longer = store_->BeginUpload("default", Sha256Hex(bytes), 10);
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ((*longer)->Write(bytes).code(), StatusCode::kInvalidArgument);
  auto shorter = store_->BeginUpload("default", Sha256Hex(bytes), 2000);
  ASSERT_TRUE(shorter.ok());
  ASSERT_TRUE((*shorter)->Write(bytes).ok());
  EXPECT_EQ((*shorter)->Commit().code(), StatusCode::kInvalidArgument);
  longer->reset();
  shorter->reset();
  EXPECT_EQ(Count("tmp"), 0u);
  EXPECT_EQ(store_->BeginUpload("default", "not-hex", 1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->BeginUpload("default", Sha256Hex(bytes), 600 << 10).status().code(),
            StatusCode::kPayloadTooLarge);
}

TEST_F(ModelStoreTest, DedupAcrossTagsAndTenantsSharesOneInode) {
  const std::string weights(100'000, 'w'), config = "{\"layers\": 2}";
  const std::string w = Upload("default", weights), c = Upload("default", config);
  auto v1 = store_->Put("default", "digits", "v1",
                        {{"model.bin", w, 100'000}, {"cfg/config.json", c, 13}});
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  auto v2 = store_->Put("default", "digits", "v2",
                        {{"cfg/config.json", c, 13}, {"model.bin", w, 100'000}});
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v1->digest, v2->digest);  // same files: one tree
  // Another tenant with the same bytes: it must upload them itself (it proves it has them),
  // and then shares the blob and the tree.
  auto refused = store_->Put("acme", "mine", "v1", {{"model.bin", w, 100'000}});
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(store_->Holds("acme", w));
  Upload("acme", weights);
  Upload("acme", config);
  auto acme =
      store_->Put("acme", "mine", "prod", {{"model.bin", w, 100'000}, {"cfg/config.json", c, 13}});
  ASSERT_TRUE(acme.ok());
  EXPECT_EQ(acme->digest, v1->digest);
  EXPECT_EQ(Count("blobs"), 2u);
  EXPECT_EQ(Count("trees"), 1u);
  const std::string tree = store_->TreeDir(v1->digest);
  EXPECT_EQ(Inode(tree + "/model.bin"), Inode(dir_ + "/models/blobs/" + w));
  struct stat st {};
  ASSERT_EQ(::stat((tree + "/model.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  ASSERT_EQ(::stat((tree + "/cfg").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0555u);
  // Names stay with their tenant.
  EXPECT_EQ(store_->List("acme", "")->size(), 1u);
  EXPECT_EQ(store_->List("default", "")->size(), 2u);
  EXPECT_EQ(store_->Get("acme", "digits", "v1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Resolve("acme", "digits", "v1").status().code(), StatusCode::kNotFound);
  // Each tenant's quota counts what it holds.
  EXPECT_EQ(*store_->UsedBytes("default"), 100'013);
  EXPECT_EQ(*store_->UsedBytes("acme"), 100'013);
}

TEST_F(ModelStoreTest, QuotaCountsUploadsInFlight) {
  Reopen(250'000);
  const std::string a(200'000, 'a');
  Upload("default", a);
  auto over = store_->BeginUpload("default", Sha256Hex(std::string(100'000, 'b')), 100'000);
  EXPECT_EQ(over.status().code(), StatusCode::kInsufficientStorage);
  EXPECT_NE(over.status().message().find("models_quota_bytes"), std::string::npos);
  // A file it already holds adds nothing.
  auto again = store_->BeginUpload("default", Sha256Hex(a), 200'000);
  EXPECT_TRUE(again.ok());
  again->reset();
  // Two uploads at once may not pass the quota together.
  auto first = store_->BeginUpload("default", Sha256Hex(std::string(40'000, 'c')), 40'000);
  ASSERT_TRUE(first.ok());
  auto second = store_->BeginUpload("default", Sha256Hex(std::string(40'000, 'd')), 40'000);
  EXPECT_EQ(second.status().code(), StatusCode::kInsufficientStorage);
  first->reset();  // abandoned: its reservation goes back
  auto third = store_->BeginUpload("default", Sha256Hex(std::string(40'000, 'd')), 40'000);
  EXPECT_TRUE(third.ok());
  // Another tenant has its own quota.
  EXPECT_TRUE(store_->BeginUpload("acme", Sha256Hex(std::string(40'000, 'e')), 40'000).ok());
}

TEST_F(ModelStoreTest, MovedTagKeepsFilesForVersionsAndRemoveWaitsForThem) {
  const std::string old_sha = Upload("default", std::string(1000, 'o'));
  auto v1 = store_->Put("default", "digits", "v3", {{"model.bin", old_sha, 1000}});
  ASSERT_TRUE(v1.ok());
  auto resolved = store_->Resolve("default", "digits", "v3");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, v1->digest);
  in_use_.push_back({"default", "fn", 1, "digits", "v3", v1->digest});
  // The tag moves: the version deployed with the old files keeps them.
  const std::string new_sha = Upload("default", std::string(1000, 'n'));
  auto v2 = store_->Put("default", "digits", "v3", {{"model.bin", new_sha, 1000}});
  ASSERT_TRUE(v2.ok());
  EXPECT_NE(v2->digest, v1->digest);
  clock_.Advance(2 * 3600LL * 1'000'000);  // past every grace period
  ASSERT_TRUE(store_->Collect().ok());
  EXPECT_TRUE(PathExists(store_->TreeDir(v1->digest) + "/model.bin"));
  EXPECT_TRUE(PathExists(store_->TreeDir(v2->digest) + "/model.bin"));
  // In use: refused, with who uses it.
  Status st = store_->Remove("default", "digits", "v3");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("fn version 1"), std::string::npos) << st.message();
  // Once the function is gone the tag goes, and with it every file nothing else names.
  in_use_.clear();
  ASSERT_TRUE(store_->Remove("default", "digits", "v3").ok());
  EXPECT_EQ(store_->Get("default", "digits", "v3").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Count("trees"), 0u);
  EXPECT_EQ(Count("blobs"), 0u);
  EXPECT_EQ(*store_->UsedBytes("default"), 0);
  EXPECT_EQ(store_->Remove("default", "digits", "v3").code(), StatusCode::kNotFound);
}

TEST_F(ModelStoreTest, UnnamedUploadsExpireAndCrashLeftoversGo) {
  const std::string sha = Upload("default", std::string(5000, 'p'));
  // Leftovers of a crash: a half-written upload, a tree no row names, a blob no row names.
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/models/tmp/upload-dead", "x").ok());
  ASSERT_TRUE(MakeDirs(dir_ + "/models/trees/" + std::string(64, 'e')).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/models/blobs/" + std::string(64, 'f'), "y").ok());
  Reopen(1 << 20);
  ASSERT_TRUE(store_->Collect().ok());
  EXPECT_EQ(Count("tmp"), 0u);
  EXPECT_EQ(Count("trees"), 0u);
  EXPECT_EQ(Count("blobs"), 1u);  // the upload, within its grace period
  EXPECT_TRUE(store_->Holds("default", sha));
  clock_.Advance(2 * 3600LL * 1'000'000);
  ASSERT_TRUE(store_->Collect().ok());
  EXPECT_EQ(Count("blobs"), 0u);
  EXPECT_FALSE(store_->Holds("default", sha));
}

TEST_F(ModelStoreTest, PrefetchReadsEveryFileIntoThePageCache) {
  const std::string bytes(400 << 10, 'q');
  const std::string sha = Upload("default", bytes);
  auto m = store_->Put("default", "big", "v1", {{"w.bin", sha, 400 << 10}});
  ASSERT_TRUE(m.ok());
  const std::string path = store_->TreeDir(m->digest) + "/w.bin";
  // Drop the file's pages first where the kernel lets us (clean pages of a synced file).
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* map = ::mmap(nullptr, 400 << 10, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  std::vector<unsigned char> resident((400 << 10) / ::getpagesize());
  auto count_resident = [&] {
    EXPECT_EQ(::mincore(map, 400 << 10, resident.data()), 0);
    size_t n = 0;
    for (unsigned char r : resident) n += r & 1;
    return n;
  };
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const size_t before = count_resident();
  if (before == resident.size()) std::printf("the kernel kept the pages: a weaker check\n");
  auto done = store_->Prefetch(m->digest);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->files, 1);
  EXPECT_EQ(done->bytes, 400 << 10);
  EXPECT_GE(done->micros, 0);
  EXPECT_EQ(count_resident(), resident.size()) << "resident before: " << before;
  ::munmap(map, 400 << 10);
  ::close(fd);
  EXPECT_EQ(store_->Prefetch(std::string(64, '0')).status().code(), StatusCode::kNotFound);
}

// A second node: its own data dir on the same metadata. It lacks the files, takes them only when
// their bytes hash right (no tenant's upload, no quota), then builds the tree from them.
TEST_F(ModelStoreTest, AnotherNodeFetchesFilesCheckedAndBuildsTheTree) {
  const std::string weights(200'000, 'w'), vocab = "{\"a\": 1}";
  const std::string w = Upload("default", weights), v = Upload("default", vocab);
  auto m =
      store_->Put("default", "digits", "v1", {{"model.bin", w, 200'000}, {"tok/v.json", v, 8}});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  char tmpl[] = "/tmp/thaw-models-b-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string b_dir = tmpl;
  auto b = ModelStore::Open(StoreOptions{.data_dir = b_dir, .store = dir_ + "/thaw.db"});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(store_->HasTree(m->digest));
  EXPECT_EQ(store_->HeldTrees(), std::vector<std::string>{m->digest});
  EXPECT_FALSE((*b)->HasTree(m->digest));
  EXPECT_TRUE((*b)->HeldTrees().empty());
  auto files = (*b)->TreeFiles(m->digest);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*b)->TreeFiles(std::string(64, '0')).status().code(), StatusCode::kNotFound);
  // Not all files yet: no tree.
  EXPECT_EQ((*b)->InstallTree(m->digest).code(), StatusCode::kFailedPrecondition);
  // Other bytes than the digest says: refused, nothing left behind.
  {
    std::string corrupt = weights;
    corrupt[1000] = 'x';
    auto bad = (*b)->BeginFetch(w, 200'000);
    ASSERT_TRUE(bad.ok()) << bad.status().ToString();
    ASSERT_TRUE((*bad)->Write(corrupt).ok());
    Status st = (*bad)->Commit();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("sha256 mismatch"), std::string::npos) << st.message();
  }
  EXPECT_FALSE(PathExists((*b)->BlobPath(w)));
  EXPECT_TRUE(fs::is_empty(b_dir + "/models/tmp"));
  for (const auto& [sha, bytes] : {std::pair{w, weights}, std::pair{v, vocab}}) {
    auto up = (*b)->BeginFetch(sha, static_cast<int64_t>(bytes.size()));
    ASSERT_TRUE(up.ok()) << up.status().ToString();
    ASSERT_TRUE((*up)->Write(bytes).ok());
    Status st = (*up)->Commit();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  ASSERT_TRUE((*b)->InstallTree(m->digest).ok());
  EXPECT_TRUE((*b)->HasTree(m->digest));
  auto read = ReadFile((*b)->TreeDir(m->digest) + "/tok/v.json");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, vocab);
  EXPECT_EQ(Inode((*b)->TreeDir(m->digest) + "/model.bin"), Inode((*b)->BlobPath(w)));
  // The tenant's holdings are the cluster's rows: fetching added none.
  EXPECT_EQ(*store_->UsedBytes("default"), 200'008);
  // B's collection keeps what a live tag names.
  ASSERT_TRUE((*b)->Collect().ok());
  EXPECT_TRUE(PathExists((*b)->BlobPath(w)));
  EXPECT_TRUE((*b)->HasTree(m->digest));
  b->reset();
  (void)RemoveTree(b_dir);
}

}  // namespace
}  // namespace thaw::models

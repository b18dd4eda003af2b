// Shared truth at the store level, on a private PostgreSQL (tests/pg_server.h): a committed
// Db::Notify reaches a ChangeListener and a rolled-back one does not; two registries and two key
// stores on one database (two nodes) see each other's writes once they Reload; a fetched bundle
// is installed only when its digest matches. Skips, saying why, without PostgreSQL.
#include "store/change_listener.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "auth/keys.h"
#include "common/files.h"
#include "common/sha256.h"
#include "pg_server.h"
#include "registry/archive.h"
#include "registry/registry.h"
#include "store/db.h"

namespace thaw {
namespace {

using store::Change;

// What a listener handed over, for a test to wait on.
class Heard {
 public:
  Status Add(const std::vector<Change>& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    all_.insert(all_.end(), batch.begin(), batch.end());
    cv_.notify_all();
    return Status::Ok();
  }
  // Waits up to `ms` for `c` to be heard.
  bool WaitFor(const Change& c, int ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return HasLocked(c); });
  }
  bool Has(const Change& c) {
    std::lock_guard<std::mutex> lock(mu_);
    return HasLocked(c);
  }

 private:
  bool HasLocked(const Change& c) const {
    return std::find(all_.begin(), all_.end(), c) != all_.end();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Change> all_;
};

class ChangeListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    testing::PgServer* pg = testing::PgServer::Shared(why);
    if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL: " << why;
    url_ = pg->CreateDatabase();
    ASSERT_FALSE(url_.empty());
    char tmpl[] = "/tmp/thaw-listen-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }
  std::unique_ptr<store::ChangeListener> Listen(Heard& heard) {
    auto l = store::ChangeListener::Start(
        url_, [&heard](const std::vector<Change>& batch) { return heard.Add(batch); });
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    // The first batch, once LISTEN is in place: read everything.
    EXPECT_TRUE(heard.WaitFor({"*", ""}, 10000));
    return l.ok() ? std::move(*l) : nullptr;
  }
  std::unique_ptr<registry::Registry> OpenRegistry(const std::string& node) {
    auto reg = registry::Registry::Open(dir_ + "/" + node, registry::UnpackLimits{}, url_);
    EXPECT_TRUE(reg.ok()) << reg.status().ToString();
    return reg.ok() ? std::move(*reg) : nullptr;
  }
  std::string Archive(const std::string& body) {
    const std::string src = dir_ + "/src-" + Sha256Hex(body).substr(0, 8);
    EXPECT_TRUE(MakeDirs(src).ok());
    EXPECT_TRUE(
        WriteFileAtomic(src + "/thaw.yaml", "name: hello\nruntime: python3\nhandler: app.handler\n")
            .ok());
    EXPECT_TRUE(WriteFileAtomic(src + "/app.py", body).ok());
    auto archive = registry::PackDirectory(src);
    EXPECT_TRUE(archive.ok());
    return archive.ok() ? *archive : "";
  }
  std::string url_, dir_;
};

TEST(ChangeTest, ParsesKindAndId) {
  EXPECT_EQ(store::ParseChange("registry:acme--hello"), (Change{"registry", "acme--hello"}));
  EXPECT_EQ(store::ParseChange("keys:AKTH1:x"), (Change{"keys", "AKTH1:x"}));
  EXPECT_EQ(store::ParseChange("tenants"), (Change{"tenants", ""}));
}

TEST_F(ChangeListenerTest, CommittedNoticesArriveAndRolledBackOnesDoNot) {
  Heard heard;
  auto listener = Listen(heard);
  ASSERT_TRUE(listener);
  auto db = store::Db::Open(url_);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Begin().ok());
  ASSERT_TRUE((*db)->Notify("keys", "rolled-back").ok());
  ASSERT_TRUE((*db)->Exec("ROLLBACK").ok());
  ASSERT_TRUE((*db)->Begin().ok());
  ASSERT_TRUE((*db)->Notify("keys", "committed").ok());
  EXPECT_FALSE(heard.WaitFor({"keys", "committed"}, 200)) << "heard before COMMIT";
  ASSERT_TRUE((*db)->Exec("COMMIT").ok());
  EXPECT_TRUE(heard.WaitFor({"keys", "committed"}, 1000));
  // Notices arrive in commit order: the rolled-back one would have come first.
  EXPECT_FALSE(heard.Has({"keys", "rolled-back"}));
  EXPECT_EQ(listener->connects(), 1);
}

TEST_F(ChangeListenerTest, TwoRegistriesOnOneStoreSeeEachOthersVersions) {
  auto a = OpenRegistry("a");
  auto b = OpenRegistry("b");
  ASSERT_TRUE(a && b);
  Heard heard;
  auto listener = Listen(heard);
  const std::string one = Archive("def handler(e, c):\n  return 1\n");
  auto v1 = a->Deploy("hello", one);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_TRUE(heard.WaitFor({"registry", "hello"}, 1000));
  EXPECT_FALSE(b->Get("hello").ok());  // B's cache, until it reloads
  auto changed = b->Reload();
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ((*changed)[0].function, "hello");
  ASSERT_TRUE((*changed)[0].latest);
  EXPECT_EQ((*changed)[0].latest->version, 1);
  auto resolved = b->Resolve("hello", "");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ((*resolved)->sha256, (*v1)->sha256);
  // B holds no code yet: only the archive whose digest matches is installed.
  EXPECT_FALSE(PathExists((*resolved)->bundle_dir));
  EXPECT_EQ(b->InstallBundle((*v1)->sha256, one + "x").code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(PathExists((*resolved)->bundle_dir));
  ASSERT_TRUE(b->InstallBundle((*v1)->sha256, one).ok());
  EXPECT_TRUE(PathExists((*resolved)->bundle_dir + "/app.py"));
  EXPECT_EQ(*ReadFile(b->BlobPath((*v1)->sha256)), one);
  // Nothing new: B keeps the same Version object, and reports no change.
  changed = b->Reload();
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(changed->empty());
  EXPECT_EQ(b->Resolve("hello", "")->get(), resolved->get());

  // B's next version is numbered from the store; A hears of it and of the delete.
  auto v2 = b->Deploy("hello", Archive("def handler(e, c):\n  return 2\n"));
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ((*v2)->version, 2);
  changed = a->Reload();
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ((*changed)[0].latest->version, 2);
  ASSERT_TRUE(b->Delete("hello").ok());
  changed = a->Reload();
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ((*changed)[0].latest, nullptr);
  EXPECT_FALSE(a->Get("hello").ok());
}

TEST_F(ChangeListenerTest, KeyStoresOnOneStoreSeeRevocationsOnReload) {
  const std::string master(32, 'm');
  auto a = auth::KeyStore::Open(url_, master, "admin-a");
  auto b = auth::KeyStore::Open(url_, master, "admin-b");
  ASSERT_TRUE(a.ok() && b.ok());
  Heard heard;
  auto listener = Listen(heard);
  ASSERT_TRUE((*a)->CreateTenant("acme", {}).ok());
  auto key = (*a)->CreateKey("acme", auth::Role::kTenant, "");
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(heard.WaitFor({"tenants", "acme"}, 1000));
  EXPECT_TRUE(heard.WaitFor({"keys", key->first.id}, 1000));
  EXPECT_FALSE((*b)->Bearer(key->second).has_value());
  ASSERT_TRUE((*b)->Reload().ok());
  auto caller = (*b)->Bearer(key->second);
  ASSERT_TRUE(caller.has_value());
  EXPECT_EQ(caller->tenant, "acme");
  auth::TenantLimits limits;
  limits.concurrency = 3;
  ASSERT_TRUE((*a)->UpdateTenant("acme", limits).ok());
  ASSERT_TRUE((*a)->RevokeKey(key->first.id).ok());
  ASSERT_TRUE((*b)->Reload().ok());
  EXPECT_FALSE((*b)->Bearer(key->second).has_value());
  EXPECT_EQ((*b)->GetTenant("acme")->limits.concurrency, 3);
}

}  // namespace
}  // namespace thaw

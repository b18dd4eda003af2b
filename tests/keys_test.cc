// KeyStore: tenants and API keys in SQLite, secrets derived and never stored.
#include "auth/keys.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>
#include <thread>

#include "common/files.h"
#include "common/sha256.h"

namespace thaw::auth {
namespace {

const std::string kMaster(64, 'm');

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-keys-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    db_ = dir_ + "/thaw.db";
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::unique_ptr<KeyStore> Open(const std::string& master = kMaster) {
    auto store = KeyStore::Open(db_, master, "thaw_admin");
    EXPECT_TRUE(store.ok()) << store.status().message();
    return store.ok() ? std::move(*store) : nullptr;
  }
  std::string dir_, db_;
};

// What a Bearer key is looked up by: SHA-256 through a context each thread keeps and resets,
// so a digest must not depend on what the thread hashed before (FIPS 180-2 vectors).
TEST(Sha256HexTest, StandardVectorsOnAnyThreadAndAfterOtherInput) {
  auto check = [] {
    for (int round = 0; round < 3; ++round) {
      EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
      EXPECT_EQ(Sha256Hex("abc"),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
      EXPECT_EQ(Sha256Hex(std::string(1000, 'a')),
                "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    }
  };
  check();
  std::thread other(check);
  other.join();
}

TEST_F(KeyStoreTest, DefaultTenantAndBootstrapAdminKeyExist) {
  auto store = Open();
  ASSERT_TRUE(store->GetTenant("default").ok());
  auto admin = store->Bearer("thaw_admin");
  ASSERT_TRUE(admin);
  EXPECT_TRUE(admin->admin());
  EXPECT_EQ(admin->tenant, "default");
  EXPECT_FALSE(store->Bearer("thaw_admin2"));
  EXPECT_FALSE(store->Bearer(""));
}

TEST_F(KeyStoreTest, KeysAuthenticateByBearerAndSigningKeyUntilRevoked) {
  auto store = Open();
  ASSERT_TRUE(store->CreateTenant("acme", {}).ok());
  auto key = store->CreateKey("acme", Role::kTenant, "ci");
  ASSERT_TRUE(key.ok()) << key.status().message();
  const auto& [info, secret] = *key;
  EXPECT_EQ(info.id.size(), 20u);
  EXPECT_EQ(info.id.substr(0, 4), "AKTH");
  EXPECT_EQ(secret.size(), 40u);
  auto caller = store->Bearer(secret);
  ASSERT_TRUE(caller);
  EXPECT_EQ(caller->tenant, "acme");
  EXPECT_FALSE(caller->admin());
  EXPECT_EQ(caller->key_id, info.id);
  auto signing = store->SigningKey(info.id);
  ASSERT_TRUE(signing);
  EXPECT_EQ(signing->second, secret);

  // Reopened: the same key works, its secret derived again from the master key.
  store.reset();
  store = Open();
  ASSERT_TRUE(store->Bearer(secret));
  EXPECT_EQ(store->SigningKey(info.id)->second, secret);
  // Under another master key the stored hash no longer matches anything derivable.
  store.reset();
  auto other = Open(std::string(64, 'x'));
  EXPECT_NE(other->SigningKey(info.id)->second, secret);
  other.reset();
  store = Open();

  ASSERT_TRUE(store->RevokeKey(info.id).ok());
  EXPECT_FALSE(store->Bearer(secret));
  EXPECT_FALSE(store->SigningKey(info.id));
  EXPECT_EQ(store->RevokeKey(info.id).code(), StatusCode::kNotFound);
}

TEST_F(KeyStoreTest, TheDatabaseHoldsNoSecret) {
  std::string secret;
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateTenant("acme", {}).ok());
    secret = store->CreateKey("acme", Role::kTenant, "").value().second;
  }
  for (const char* suffix : {"", "-wal"}) {
    auto bytes = ReadFile(db_ + suffix);
    if (!bytes.ok()) continue;
    EXPECT_EQ(bytes->find(secret), std::string::npos) << "secret found in thaw.db" << suffix;
  }
}

TEST_F(KeyStoreTest, TenantsValidateAndDeletingOneRevokesItsKeys) {
  auto store = Open();
  EXPECT_EQ(store->CreateTenant("Bad_Name", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->CreateTenant("-x", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->CreateTenant(std::string(33, 'a'), {}).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->CreateTenant("acme", TenantLimits{5, 10, 1'000'000}).ok());
  EXPECT_EQ(store->CreateTenant("acme", {}).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store->CreateKey("nope", Role::kTenant, "").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store->UpdateTenant("acme", TenantLimits{std::nullopt, 3, std::nullopt}).ok());
  store.reset();
  store = Open();
  auto acme = store->GetTenant("acme");
  ASSERT_TRUE(acme.ok());
  EXPECT_FALSE(acme->limits.concurrency);
  EXPECT_EQ(acme->limits.rate_per_second, 3);
  EXPECT_FALSE(acme->limits.monthly_budget_micros);

  const std::string secret = store->CreateKey("acme", Role::kTenant, "").value().second;
  EXPECT_EQ(store->ListKeys("acme").size(), 1u);
  ASSERT_TRUE(store->DeleteTenant("acme").ok());
  EXPECT_FALSE(store->Bearer(secret));
  EXPECT_TRUE(store->ListKeys("").empty());
  EXPECT_EQ(store->DeleteTenant("default").code(), StatusCode::kFailedPrecondition);
}

// Limits remembers what this thread read: a created, changed or deleted tenant's limits apply
// to the very next read.
TEST_F(KeyStoreTest, LimitsFollowEveryChangeAtOnce) {
  auto store = Open();
  EXPECT_FALSE(store->Limits("acme").concurrency) << "unknown: none";
  ASSERT_TRUE(store->CreateTenant("acme", TenantLimits{5, std::nullopt, std::nullopt}).ok());
  EXPECT_EQ(store->Limits("acme").concurrency, 5);
  EXPECT_EQ(store->Limits("acme").concurrency, 5);
  ASSERT_TRUE(store->UpdateTenant("acme", TenantLimits{2, 7, std::nullopt}).ok());
  EXPECT_EQ(store->Limits("acme").concurrency, 2);
  EXPECT_EQ(store->Limits("acme").rate_per_second, 7);
  ASSERT_TRUE(store->DeleteTenant("acme").ok());
  EXPECT_FALSE(store->Limits("acme").concurrency);
}

// Bearer remembers what this thread verified: the remembered verdicts must end with any change
// (a revoke here or on another thread, a tenant deleted, a Reload after another node's change),
// and must never vouch for another token or in another store.
TEST_F(KeyStoreTest, CachedBearerVerdictsEndAtOnceWithTheKey) {
  auto store = Open();
  ASSERT_TRUE(store->CreateTenant("acme", {}).ok());
  auto [info, secret] = store->CreateKey("acme", Role::kTenant, "").value();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->Bearer(secret));
  std::string near = secret;
  near.back() = near.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(store->Bearer(near));
  EXPECT_FALSE(store->Bearer(secret.substr(0, 39)));
  EXPECT_FALSE(store->Bearer(secret + "x"));
  // Revoked on another thread: refused here as soon as RevokeKey has returned.
  std::thread revoker([&] { ASSERT_TRUE(store->RevokeKey(info.id).ok()); });
  revoker.join();
  EXPECT_FALSE(store->Bearer(secret));

  // Deleting the tenant ends its keys' remembered verdicts too.
  auto second = store->CreateKey("acme", Role::kAdmin, "").value().second;
  ASSERT_TRUE(store->Bearer(second));
  ASSERT_TRUE(store->DeleteTenant("acme").ok());
  EXPECT_FALSE(store->Bearer(second));

  // Another node (a second store on the same database) revokes: this one refuses once it has
  // reloaded, as it did before verdicts were remembered.
  ASSERT_TRUE(store->CreateTenant("beta", {}).ok());
  auto [beta, beta_secret] = store->CreateKey("beta", Role::kTenant, "").value();
  ASSERT_TRUE(store->Bearer(beta_secret));
  {
    auto other = Open();
    ASSERT_TRUE(other->RevokeKey(beta.id).ok());
  }
  ASSERT_TRUE(store->Reload().ok());
  EXPECT_FALSE(store->Bearer(beta_secret));

  // A verdict from one store never vouches in another (here: a fresh database, same master key).
  auto [gamma, gamma_secret] = store->CreateKey("beta", Role::kTenant, "").value();
  ASSERT_TRUE(store->Bearer(gamma_secret));
  store.reset();
  ASSERT_TRUE(RemoveTree(dir_).ok());
  ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  store = Open();
  EXPECT_FALSE(store->Bearer(gamma_secret));
  EXPECT_TRUE(store->Bearer("thaw_admin"));
}

}  // namespace
}  // namespace thaw::auth

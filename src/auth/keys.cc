#include "auth/keys.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <mutex>

#include "common/base64.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/sha256.h"
#include "common/tenant.h"
#include "store/db.h"

namespace thaw::auth {
namespace {

constexpr size_t kSecretChars = 40;  // as long as an AWS secret access key

void BindOptional(store::Stmt& stmt, int index, const std::optional<int64_t>& value) {
  if (value) {
    stmt.Bind(index, *value);
  } else {
    stmt.BindNull(index);
  }
}

std::optional<int64_t> OptionalInt(const store::Stmt& stmt, int col) {
  if (stmt.IsNull(col)) return std::nullopt;
  return stmt.Int(col);
}

// Every KeyStore's generations come from here, so no two stores (nor one store before and after
// a change) ever share one.
std::atomic<uint64_t> next_generation{1};
uint64_t NewGeneration() { return next_generation.fetch_add(1, std::memory_order_relaxed); }

// What this thread looked up in a store lately, each entry stamped with the store's
// generation when it was read: an entry of another generation is stale (0: empty). A few
// entries, not one: a connection's Screen and Serve of one request may have other
// connections' requests between them on a shard.
template <typename Value, size_t N>
class StampedCache {
 public:
  // The value cached for `key` at `generation`, or null; `same` compares two keys.
  template <typename Same>
  const Value* Find(uint64_t generation, std::string_view key, Same same) const {
    for (const Entry& e : entries_) {
      if (e.generation == generation && same(e.key, key)) return &e.value;
    }
    return nullptr;
  }
  void Put(uint64_t generation, std::string_view key, const Value& value) {
    Entry& e = entries_[next_];
    next_ = (next_ + 1) % N;
    e.generation = generation;
    e.key.assign(key);
    e.value = value;
  }

 private:
  struct Entry {
    uint64_t generation = 0;
    std::string key;
    Value value;
  };
  std::array<Entry, N> entries_;
  size_t next_ = 0;  // the entry the next miss replaces
};

// The Bearer tokens this thread verified, and the tenant limits it read.
thread_local StampedCache<Caller, 4> bearer_cache;
thread_local StampedCache<TenantLimits, 8> limits_cache;

// Constant time in the tokens' contents: a cached token is another caller's secret.
bool SameToken(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

const char* RoleName(Role role) { return role == Role::kAdmin ? "admin" : "tenant"; }

std::optional<Role> ParseRole(std::string_view text) {
  if (text == "admin") return Role::kAdmin;
  if (text == "tenant") return Role::kTenant;
  return std::nullopt;
}

KeyStore::KeyStore(std::unique_ptr<store::Db> db, std::string master_key, std::string admin_key)
    : db_(std::move(db)),
      master_key_(std::move(master_key)),
      admin_key_sha256_(Sha256Hex(admin_key)),
      generation_(NewGeneration()) {}

KeyStore::~KeyStore() = default;

StatusOr<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& db_path,
                                                   std::string master_key, std::string admin_key) {
  if (master_key.size() < 32) return InvalidArgument("the master key is shorter than 32 bytes");
  auto db = store::Db::Open(db_path);
  if (!db.ok()) return db.status();
  std::unique_ptr<KeyStore> store(
      new KeyStore(std::move(*db), std::move(master_key), std::move(admin_key)));
  THAW_RETURN_IF_ERROR(store->Load());
  return store;
}

Status KeyStore::Load() {
  std::unique_lock lock(mu_);
  return ReadAllLocked();
}

Status KeyStore::Reload() {
  std::unique_lock lock(mu_);
  InvalidateLocked();
  return ReadAllLocked();
}

void KeyStore::InvalidateLocked() { generation_.store(NewGeneration(), std::memory_order_release); }

Status KeyStore::ReadAllLocked() {
  std::unordered_map<std::string, KeyInfo> fresh_keys;
  std::unordered_map<std::string, std::string> fresh_by_hash;
  std::unordered_map<std::string, Tenant> fresh_tenants;
  auto tenants = db_->Prepare(
      "SELECT name, concurrency, rate_per_second, monthly_budget_micros, created_us FROM tenants");
  if (!tenants.ok()) return tenants.status();
  for (;;) {
    auto row = tenants->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Tenant t{tenants->Text(0),
             {OptionalInt(*tenants, 1), OptionalInt(*tenants, 2), OptionalInt(*tenants, 3)},
             tenants->Int(4)};
    fresh_tenants[t.name] = std::move(t);
  }
  auto keys =
      db_->Prepare("SELECT id, tenant, role, secret_sha256, description, created_us FROM api_keys");
  if (!keys.ok()) return keys.status();
  for (;;) {
    auto row = keys->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    KeyInfo k{keys->Text(0), keys->Text(1), ParseRole(keys->Text(2)).value_or(Role::kTenant),
              keys->Text(4), keys->Int(5)};
    fresh_by_hash[keys->Text(3)] = k.id;
    fresh_keys[k.id] = std::move(k);
  }
  keys_ = std::move(fresh_keys);
  by_hash_ = std::move(fresh_by_hash);
  tenants_ = std::move(fresh_tenants);
  return Status::Ok();
}

Status KeyStore::WriteWithNotice(std::string_view kind, std::string_view id,
                                 const std::function<Status()>& body) {
  THAW_RETURN_IF_ERROR(db_->Begin());
  Status st = db_->Notify(kind, id);
  if (st.ok()) st = body();
  if (st.ok()) st = db_->Exec("COMMIT");
  if (!st.ok()) (void)db_->Exec("ROLLBACK");
  return st;
}

std::string KeyStore::SecretFor(std::string_view id) const {
  // Derived, not stored: the same id always yields the same secret under one master key.
  const std::string data = "thaw key secret v1:" + std::string(id);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), master_key_.data(), static_cast<int>(master_key_.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), len))
      .substr(0, kSecretChars);
}

std::string KeyStore::WebhookSecret(std::string_view function) const {
  const std::string data = "thaw webhook secret v1:" + std::string(function);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), master_key_.data(), static_cast<int>(master_key_.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return "whsec_" + HexEncode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

std::optional<Caller> KeyStore::Bearer(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  // A stamp read before the lookup: a change that lands during it makes the entry stale at
  // once rather than cache a verdict from before the change.
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  if (const Caller* known = bearer_cache.Find(generation, token, SameToken)) return *known;
  std::optional<Caller> caller = BearerUncached(token);
  if (caller) bearer_cache.Put(generation, token, *caller);
  return caller;
}

std::optional<Caller> KeyStore::BearerUncached(std::string_view token) const {
  const std::string hash = Sha256Hex(token);
  if (hash == admin_key_sha256_)
    return Caller{std::string(kDefaultTenant), Role::kAdmin, "admin.key"};
  std::shared_lock lock(mu_);
  auto by = by_hash_.find(hash);
  if (by == by_hash_.end()) return std::nullopt;
  const KeyInfo& k = keys_.at(by->second);
  return Caller{k.tenant, k.role, k.id};
}

std::optional<std::pair<Caller, std::string>> KeyStore::SigningKey(std::string_view key_id) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(std::string(key_id));
  if (it == keys_.end()) return std::nullopt;
  const KeyInfo& k = it->second;
  return std::make_pair(Caller{k.tenant, k.role, k.id}, SecretFor(k.id));
}

StatusOr<std::pair<KeyInfo, std::string>> KeyStore::CreateKey(const std::string& tenant, Role role,
                                                              const std::string& description) {
  if (description.size() > 256) return InvalidArgument("description: at most 256 characters");
  std::unique_lock lock(mu_);
  if (!tenants_.contains(tenant)) return NotFound("tenant not found: " + tenant);
  KeyInfo k;
  k.id = "AKTH" + RandomHex(8);
  for (char& c : k.id) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  k.tenant = tenant;
  k.role = role;
  k.description = description;
  k.created_us = WallNowMicros();
  std::string secret = SecretFor(k.id);
  const std::string hash = Sha256Hex(secret);
  auto insert = db_->Prepare(
      "INSERT INTO api_keys (id, tenant, role, secret_sha256, description, created_us) "
      "VALUES (?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, k.id).Bind(2, k.tenant).Bind(3, RoleName(role)).Bind(4, hash);
  insert->Bind(5, k.description).Bind(6, k.created_us);
  THAW_RETURN_IF_ERROR(WriteWithNotice("keys", k.id, [&] { return insert->Run(); }));
  by_hash_[hash] = k.id;
  keys_[k.id] = k;
  InvalidateLocked();
  return std::make_pair(std::move(k), std::move(secret));
}

std::vector<KeyInfo> KeyStore::ListKeys(std::string_view tenant) const {
  std::vector<KeyInfo> out;
  {
    std::shared_lock lock(mu_);
    for (const auto& [id, k] : keys_) {
      if (tenant.empty() || k.tenant == tenant) out.push_back(k);
    }
  }
  std::sort(out.begin(), out.end(), [](const KeyInfo& a, const KeyInfo& b) {
    return std::tie(a.tenant, a.created_us, a.id) < std::tie(b.tenant, b.created_us, b.id);
  });
  return out;
}

StatusOr<KeyInfo> KeyStore::GetKey(std::string_view id) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(std::string(id));
  if (it == keys_.end()) return NotFound("key not found: " + std::string(id));
  return it->second;
}

Status KeyStore::RevokeKey(std::string_view id) {
  std::unique_lock lock(mu_);
  auto it = keys_.find(std::string(id));
  if (it == keys_.end()) return NotFound("key not found: " + std::string(id));
  auto del = db_->Prepare("DELETE FROM api_keys WHERE id = ?");
  if (!del.ok()) return del.status();
  del->Bind(1, id);
  THAW_RETURN_IF_ERROR(WriteWithNotice("keys", id, [&] { return del->Run(); }));
  by_hash_.erase(Sha256Hex(SecretFor(id)));
  keys_.erase(it);
  InvalidateLocked();
  return Status::Ok();
}

StatusOr<Tenant> KeyStore::CreateTenant(const std::string& name, const TenantLimits& limits) {
  if (!IsValidTenantName(name)) {
    return InvalidArgument(
        "tenant name must be 1-32 of a-z, 0-9 and '-', not starting with '-', got '" + name + "'");
  }
  std::unique_lock lock(mu_);
  if (tenants_.contains(name)) {
    return Status(StatusCode::kAlreadyExists, "tenant already exists: " + name);
  }
  Tenant t{name, limits, WallNowMicros()};
  auto insert = db_->Prepare(
      "INSERT INTO tenants (name, concurrency, rate_per_second, monthly_budget_micros, "
      "created_us) VALUES (?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->Bind(1, name);
  BindOptional(*insert, 2, limits.concurrency);
  BindOptional(*insert, 3, limits.rate_per_second);
  BindOptional(*insert, 4, limits.monthly_budget_micros);
  insert->Bind(5, t.created_us);
  THAW_RETURN_IF_ERROR(WriteWithNotice("tenants", name, [&] { return insert->Run(); }));
  tenants_[name] = t;
  InvalidateLocked();  // Limits remembers an unknown tenant's (none)
  return t;
}

Status KeyStore::UpdateTenant(const std::string& name, const TenantLimits& limits) {
  std::unique_lock lock(mu_);
  auto it = tenants_.find(name);
  if (it == tenants_.end()) return NotFound("tenant not found: " + name);
  auto update = db_->Prepare(
      "UPDATE tenants SET concurrency = ?, rate_per_second = ?, monthly_budget_micros = ? "
      "WHERE name = ?");
  if (!update.ok()) return update.status();
  BindOptional(*update, 1, limits.concurrency);
  BindOptional(*update, 2, limits.rate_per_second);
  BindOptional(*update, 3, limits.monthly_budget_micros);
  update->Bind(4, name);
  THAW_RETURN_IF_ERROR(WriteWithNotice("tenants", name, [&] { return update->Run(); }));
  it->second.limits = limits;
  InvalidateLocked();
  return Status::Ok();
}

Status KeyStore::DeleteTenant(const std::string& name) {
  if (name == kDefaultTenant) return FailedPrecondition("the default tenant cannot be deleted");
  std::unique_lock lock(mu_);
  if (!tenants_.contains(name)) return NotFound("tenant not found: " + name);
  THAW_RETURN_IF_ERROR(db_->Exec("BEGIN"));
  Status st = db_->Notify("tenants", name);
  for (const char* sql :
       {"DELETE FROM api_keys WHERE tenant = ?", "DELETE FROM tenants WHERE name = ?"}) {
    auto del = db_->Prepare(sql);
    if (!st.ok()) break;
    st = del.ok() ? del->Bind(1, name).Run() : del.status();
  }
  if (!st.ok()) {
    (void)db_->Exec("ROLLBACK");
    return st;
  }
  THAW_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->second.tenant == name) {
      by_hash_.erase(Sha256Hex(SecretFor(it->first)));
      it = keys_.erase(it);
    } else {
      ++it;
    }
  }
  tenants_.erase(name);
  InvalidateLocked();
  return Status::Ok();
}

std::vector<Tenant> KeyStore::ListTenants() const {
  std::vector<Tenant> out;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, t] : tenants_) out.push_back(t);
  }
  std::sort(out.begin(), out.end(),
            [](const Tenant& a, const Tenant& b) { return a.name < b.name; });
  return out;
}

TenantLimits KeyStore::Limits(std::string_view tenant) const {
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  if (const TenantLimits* known = limits_cache.Find(
          generation, tenant, [](std::string_view a, std::string_view b) { return a == b; })) {
    return *known;
  }
  TenantLimits limits;
  {
    std::shared_lock lock(mu_);
    if (auto it = tenants_.find(std::string(tenant)); it != tenants_.end()) {
      limits = it->second.limits;
    }
  }
  limits_cache.Put(generation, tenant, limits);
  return limits;
}

StatusOr<Tenant> KeyStore::GetTenant(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(std::string(name));
  if (it == tenants_.end()) return NotFound("tenant not found: " + std::string(name));
  return it->second;
}

}  // namespace thaw::auth

// KeyStore: tenants and their API keys. A key is an id (AKTH + 16 hex digits, used as the AWS
// access key id) and a 40-character secret (the AWS secret access key, or a Bearer token for
// the native API). The secret is never stored: it is derived as HMAC-SHA256(master key, id)
// when a SigV4 signature has to be checked, and the database holds only its SHA-256, which is
// what a Bearer token is looked up by. The master key is <data-dir>/master.key (mode 0600); a
// copy of thaw.db alone yields no usable secret.
//
// Reads are served from memory (loaded at open); changes write through to the store first, and
// tell the other nodes on it (store::Db::Notify), which Reload. Each thread remembers the last
// few Bearer tokens it verified (compared in constant time), valid only while no key or tenant
// has changed since: a call's second check and the next calls on a connection skip the SHA-256,
// and a revoked key is refused as soon as RevokeKey returns. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace thaw::store {
class Db;
}

namespace thaw::auth {

enum class Role { kAdmin, kTenant };
const char* RoleName(Role role);
std::optional<Role> ParseRole(std::string_view text);

// Who is calling: every authenticated request has one.
struct Caller {
  std::string tenant = "default";
  Role role = Role::kAdmin;
  std::string key_id;  // "admin.key" for the bootstrap key; empty with auth off
  bool admin() const { return role == Role::kAdmin; }
};

// Absent limits are not enforced.
struct TenantLimits {
  std::optional<int64_t> concurrency;            // invocations running at once
  std::optional<int64_t> rate_per_second;        // sustained requests/s (bursts up to 1 s worth)
  std::optional<int64_t> monthly_budget_micros;  // USD micro-units per calendar month (UTC)
};

struct Tenant {
  std::string name;
  TenantLimits limits;
  int64_t created_us = 0;
};

struct KeyInfo {
  std::string id;
  std::string tenant;
  Role role = Role::kTenant;
  std::string description;
  int64_t created_us = 0;
};

class KeyStore {
 public:
  // `admin_key` is the bootstrap Bearer key (admin.key); `master_key` derives key secrets.
  static StatusOr<std::unique_ptr<KeyStore>> Open(const std::string& db_path,
                                                  std::string master_key, std::string admin_key);
  ~KeyStore();

  // The caller a Bearer token belongs to; nullopt for an unknown or revoked one.
  std::optional<Caller> Bearer(std::string_view token) const;
  // For SigV4: the caller an access key id belongs to, and that key's secret.
  std::optional<std::pair<Caller, std::string>> SigningKey(std::string_view key_id) const;

  // Returns the new key and its secret (shown once: it is not kept).
  StatusOr<std::pair<KeyInfo, std::string>> CreateKey(const std::string& tenant, Role role,
                                                      const std::string& description);
  std::vector<KeyInfo> ListKeys(std::string_view tenant) const;  // empty tenant: all
  StatusOr<KeyInfo> GetKey(std::string_view id) const;
  Status RevokeKey(std::string_view id);

  StatusOr<Tenant> CreateTenant(const std::string& name, const TenantLimits& limits);
  Status UpdateTenant(const std::string& name, const TenantLimits& limits);
  // Revokes the tenant's keys too. The caller checks that it has no functions left.
  Status DeleteTenant(const std::string& name);
  std::vector<Tenant> ListTenants() const;
  StatusOr<Tenant> GetTenant(std::string_view name) const;
  // The tenant's limits (none for an unknown tenant): GetTenant's, remembered by the thread
  // until the next change to the keys or tenants, so each admission does not take the lock.
  TenantLimits Limits(std::string_view tenant) const;
  // The secret that signs function `function`'s webhook deliveries (X-Thaw-Signature):
  // derived from the master key like key secrets, so it is never stored or logged; shown only
  // to the function's owner.
  std::string WebhookSecret(std::string_view function) const;
  // Reads every tenant and key from the store again: another node changed them.
  Status Reload();

 private:
  KeyStore(std::unique_ptr<store::Db> db, std::string master_key, std::string admin_key);
  Status Load();
  Status ReadAllLocked();  // replaces the maps; mu_ held exclusively
  // Runs `body` (a write) in a transaction that also notifies the other nodes.
  Status WriteWithNotice(std::string_view kind, std::string_view id,
                         const std::function<Status()>& body);
  std::string SecretFor(std::string_view id) const;
  // Bearer without the thread's cache.
  std::optional<Caller> BearerUncached(std::string_view token) const;
  // After a change to the keys or tenants (mu_ held exclusively): every thread's cached Bearer
  // verifications are void from here on.
  void InvalidateLocked();

  std::unique_ptr<store::Db> db_;  // guarded by mu_ (exclusive)
  const std::string master_key_;
  const std::string admin_key_sha256_;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, KeyInfo> keys_;         // by id
  std::unordered_map<std::string, std::string> by_hash_;  // secret SHA-256 -> id
  std::unordered_map<std::string, Tenant> tenants_;
  // What the thread caches of Bearer are stamped with: unique across the process's KeyStores
  // (drawn from one counter), replaced at every change, so a stamp from before it, or from
  // another store, never matches.
  std::atomic<uint64_t> generation_;
};

}  // namespace thaw::auth

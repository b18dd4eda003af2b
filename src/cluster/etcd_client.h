// EtcdClient: the few etcd v3 calls thaw needs (leases, put, range, delete, watch), spoken as
// JSON over etcd's gRPC gateway (HTTP POST /v3/...; keys and values base64), one short HTTP/1.1
// exchange per call, and for a watch one long-lived streamed answer (EtcdWatch). No state but
// the endpoint: thread-safe; calls are coroutines on the caller's executor.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace thaw::cluster {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t lease = 0;  // 0: none
  int64_t mod_revision = 0;
};

// A range read and the store revision it was read at.
struct RangeAt {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;
};

struct LeaseTtl {
  int64_t ttl_s = -1;  // seconds left; -1: the lease is gone
  int64_t granted_ttl_s = 0;
};

// One change a watch saw: a put (the key's new value) or a delete (the key only).
struct WatchEvent {
  bool deleted = false;
  KeyValue kv;
};

// An open watch: etcd's streamed answer to POST /v3/watch, one JSON message per batch of
// changes, in revision order. Next and Close are called from the executor the watch was
// opened on, one coroutine at a time (Close may end a Next that waits).
class EtcdWatch {
 public:
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // The next batch of changes (never empty). Unavailable when the stream broke or was closed;
  // FailedPrecondition when etcd cancelled the watch (its start revision was compacted: read
  // again).
  boost::asio::awaitable<StatusOr<std::vector<WatchEvent>>> Next();
  // Closes the stream: a waiting Next returns Unavailable.
  void Close();

 private:
  friend class EtcdClient;
  struct Impl;
  explicit EtcdWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class EtcdClient {
 public:
  // InvalidArgument unless `url` is http://HOST:PORT (no TLS: keep etcd on a private network).
  static StatusOr<EtcdClient> Create(const std::string& url,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(2));

  // A new lease of `ttl_s` seconds: its id.
  boost::asio::awaitable<StatusOr<int64_t>> GrantLease(int64_t ttl_s);
  // Renews `lease`: NotFound when it has already expired (the caller grants a new one).
  boost::asio::awaitable<Status> KeepAlive(int64_t lease);
  boost::asio::awaitable<StatusOr<LeaseTtl>> TimeToLive(int64_t lease);
  boost::asio::awaitable<Status> Revoke(int64_t lease);
  // `lease` 0: the key outlives its writer.
  boost::asio::awaitable<Status> Put(const std::string& key, const std::string& value,
                                     int64_t lease = 0);
  // Every key starting with `prefix`, in key order.
  boost::asio::awaitable<StatusOr<std::vector<KeyValue>>> RangePrefix(const std::string& prefix);
  boost::asio::awaitable<StatusOr<RangeAt>> RangePrefixAt(const std::string& prefix);
  // Puts `key` in one transaction that first checks that no key starting with `prefix` was
  // changed or created after `revision` (keys deleted since do not fail it): true when written,
  // false when the check failed (read again and retry).
  boost::asio::awaitable<StatusOr<bool>> PutIfUnchangedSince(const std::string& prefix,
                                                             int64_t revision,
                                                             const std::string& key,
                                                             const std::string& value,
                                                             int64_t lease = 0);
  boost::asio::awaitable<Status> Delete(const std::string& key);
  // Keys in [key, range_end), read at one revision (range_end "": `key` alone).
  boost::asio::awaitable<StatusOr<RangeAt>> RangeBetween(const std::string& key,
                                                         const std::string& range_end);
  // Watches [key, range_end) from `start_revision` on (every change after a range read at R is
  // seen by a watch from R + 1): open once etcd said the watch is created.
  boost::asio::awaitable<StatusOr<std::unique_ptr<EtcdWatch>>> Watch(const std::string& key,
                                                                     const std::string& range_end,
                                                                     int64_t start_revision);

  const std::string& url() const { return url_; }

 private:
  EtcdClient(std::string url, std::string host, std::string port, std::chrono::milliseconds timeout)
      : url_(std::move(url)), host_(std::move(host)), port_(std::move(port)), timeout_(timeout) {}
  // POSTs `body` to `path`: the answer's body (Unavailable when etcd did not answer 200).
  boost::asio::awaitable<StatusOr<std::string>> Post(const std::string& path,
                                                     const std::string& body) const;

  std::string url_, host_, port_;
  std::chrono::milliseconds timeout_;
};

// The key after every key starting with `prefix` (etcd's range_end for a prefix). Pure.
std::string PrefixEnd(const std::string& prefix);

}  // namespace thaw::cluster

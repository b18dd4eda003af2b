// EtcdClient: the few etcd v3 calls thaw needs (leases, put, range, delete), spoken as JSON over
// etcd's gRPC gateway (HTTP POST /v3/...; keys and values base64), one short HTTP/1.1 exchange
// per call. No state but the endpoint: thread-safe; calls are coroutines on the caller's
// executor.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
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

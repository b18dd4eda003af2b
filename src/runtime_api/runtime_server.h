// RuntimeServer: the AWS Lambda Runtime API (2018-06-01) served to instances. Each instance
// gets its own listener, so the address it is given identifies it and no instance can take
// another's events by guessing a request id: on the host's loopback behind a peer check, or
// inside the instance's own network namespace (network: none). Thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pool/pool.h"

namespace thaw::runtime_api {

class RuntimeChannel;

struct LoopbackPeer {
  uid_t uid = 0;
  uint64_t inode = 0;  // of the peer's socket, as /proc/PID/fd shows it ("socket:[inode]")
};

// The loopback TCP socket at `peer_port` connected to `local_port` (asked of the kernel
// through sock_diag); nullopt when not found.
std::optional<LoopbackPeer> FindLoopbackPeer(uint16_t local_port, uint16_t peer_port);

// Whether a process in the tree rooted at `root` (an instance's first process, the PID 1 of
// its namespace, so every process of the instance is below it) holds socket `inode`.
bool ProcessTreeHoldsSocket(pid_t root, uint64_t inode);

class RuntimeServer final : public pool::RuntimeEndpoints {
 public:
  // `max_response_bytes`: a whole response; `max_stream_bytes`: a streamed one, whose bytes
  // go to the caller as they arrive.
  // `shards`: one io_context per shard (common/shard.h), each run by one thread; an instance's
  // endpoint and channel run on the one its `shard` names (any shard, in turn, for -1).
  RuntimeServer(std::vector<boost::asio::io_context*> shards, int64_t max_response_bytes,
                int64_t max_stream_bytes = 20 << 20)
      : shards_(std::move(shards)),
        max_response_bytes_(max_response_bytes),
        max_stream_bytes_(max_stream_bytes) {}
  RuntimeServer(boost::asio::io_context& ioc, int64_t max_response_bytes,
                int64_t max_stream_bytes = 20 << 20)
      : RuntimeServer(std::vector<boost::asio::io_context*>{&ioc}, max_response_bytes,
                      max_stream_bytes) {}
  ~RuntimeServer() override;

  StatusOr<std::string> Open(std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                             pool::PeerCheck check, int shard) override;
  void SetPeer(const std::string& address, pid_t pid, uid_t uid) override;
  StatusOr<std::string> Adopt(std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                              UniqueFd listener, int shard) override;
  Status AttachChannel(const std::string& key, std::shared_ptr<pool::FunctionPool> pool,
                       uint64_t instance_id, UniqueFd channel) override;
  void Close(const std::string& key) override;
  void Drain(const std::string& key, std::function<void()> done) override;
  void CloseAll();

  struct Endpoint;  // one instance's listener and routes (runtime_server.cc)

 private:
  boost::asio::io_context& ShardFor(int shard);
  const std::vector<boost::asio::io_context*> shards_;
  std::atomic<size_t> next_shard_{0};  // for endpoints no shard asked for
  const int64_t max_response_bytes_;
  const int64_t max_stream_bytes_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;  // guarded by mu_
  // Native channels, by the key of their instance's endpoint. Guarded by mu_.
  std::map<std::string, std::shared_ptr<RuntimeChannel>> channels_;
  uint64_t adopted_ = 0;  // guarded by mu_
};

}  // namespace thaw::runtime_api

// RuntimeServer: the AWS Lambda Runtime API (2018-06-01) served to instances. Each instance
// gets its own listener on loopback, so the address it is given identifies it and no instance
// can take another's events by guessing a request id. Thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "pool/pool.h"

namespace thaw::runtime_api {

// The uid owning the loopback TCP socket at `peer_port` connected to `local_port` (asked of
// the kernel through sock_diag); nullopt when not found.
std::optional<uid_t> LoopbackPeerUid(uint16_t local_port, uint16_t peer_port);

class RuntimeServer final : public pool::RuntimeEndpoints {
 public:
  RuntimeServer(boost::asio::io_context& ioc, int64_t max_response_bytes)
      : ioc_(ioc), max_response_bytes_(max_response_bytes) {}
  ~RuntimeServer() override;

  StatusOr<std::string> Open(std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                             uid_t uid) override;
  void Close(const std::string& address) override;
  void CloseAll();

 private:
  struct Endpoint;
  boost::asio::io_context& ioc_;
  const int64_t max_response_bytes_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_;  // guarded by mu_
};

}  // namespace thaw::runtime_api

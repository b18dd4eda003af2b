// RuntimeChannel: thaw's end of one instance's native channel (channel_frame.h), the
// socketpair thaw's own runtimes use instead of the HTTP Runtime API. The runtime's frames are
// read on the io loop (a posix::stream_descriptor on a strand, no thread of its own) and handed
// to the instance's pool; each event the pool delivers is written with one writev by the
// thread that delivers it. No pool lock is held while the socket is read or written. The read
// side moves to the shard whose calls keep coming from elsewhere (shard_affinity.h), between
// two reads, so one connection's calls stay on one thread.
// Owned by RuntimeServer (and the operations in flight); Start once, then Close and the pool's
// deliveries may come from any thread.
#pragma once

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "pool/pool.h"
#include "runtime_api/shard_affinity.h"

namespace thaw::runtime_api {

struct Frame;

class RuntimeChannel final : public std::enable_shared_from_this<RuntimeChannel> {
 public:
  // `fd`: thaw's end, non-blocking. `max_response_bytes`: the largest response body a frame
  // may carry (a larger one is the caller's Function.ResponseSizeTooLarge). `shards`: every
  // shard's io_context; the channel starts on `shards[home]` (one shard, or home -1: it never
  // moves).
  RuntimeChannel(std::vector<boost::asio::io_context*> shards, int home,
                 std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                 int64_t max_response_bytes, UniqueFd fd);
  RuntimeChannel(const RuntimeChannel&) = delete;
  RuntimeChannel& operator=(const RuntimeChannel&) = delete;

  void Start();
  // Closes thaw's end: the runtime sees EOF and exits. Idempotent.
  void Close();
  // Calls `done` once the channel is closed (read to its end, or closed by thaw); at once
  // when it is already. Any thread.
  void OnEnd(std::function<void()> done);

 private:
  void ReadMore();
  void OnRead(const boost::system::error_code& ec, size_t n);
  // Parses and handles the frames read so far; false when the channel must close.
  bool HandleBuffered();
  void Handle(const Frame& frame);
  // A frame over the limit: reports its call's error once its id is in, and skips its bytes.
  // Returns how many buffered bytes it took, or 0 to wait for more; sets *bad on a bad frame.
  size_t SkipOversized(std::string_view buffered, size_t frame_size, bool* bad);
  void ReportTooLarge(const std::string& request_id);
  void AskNext();
  pool::NextHandler NextHandlerForDeliver();  // completes with Deliver
  void Deliver(pool::InvocationPtr inv);      // any thread
  void FlushOutbox();                         // on the strand
  void DoClose();                             // on the strand
  // Moves the read side to the shard a Deliver asked for, if any; true when it did (the next
  // read is then posted there). On the strand, with no read or write wait outstanding.
  bool MaybeMove();

  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  const std::vector<boost::asio::io_context*> shards_;
  // Changed by MaybeMove only, under write_mu_; read under write_mu_ off the strand.
  Strand strand_;
  boost::asio::posix::stream_descriptor desc_;  // on strand_ only
  const int fd_;
  const std::shared_ptr<pool::FunctionPool> pool_;
  const uint64_t instance_id_;
  const std::string invoked_arn_;
  const size_t max_response_bytes_;
  const size_t max_frame_;  // a frame past it is skipped without being buffered
  // The read side, used on the strand only.
  // Bytes read, [0, filled_). Never zero-filled: a std::string's resize zeroed (and so
  // faulted in) 64 KB per channel at each start, on the spawner reply thread's path.
  class ReadBuffer {
   public:
    char* data() { return bytes_.get(); }
    size_t size() const { return size_; }
    void resize(size_t n) {  // keeps the first min(n, size()) bytes
      auto bigger = std::make_unique_for_overwrite<char[]>(n);
      if (size_ > 0) std::memcpy(bigger.get(), bytes_.get(), std::min(n, size_));
      bytes_ = std::move(bigger);
      size_ = n;
    }

   private:
    std::unique_ptr<char[]> bytes_;
    size_t size_ = 0;
  };
  ReadBuffer buf_;
  size_t filled_ = 0;
  size_t discard_ = 0;  // bytes of an oversized frame still to skip
  // The write side: writers hold write_mu_ while they write, so Close never closes the fd
  // under a writev.
  std::mutex write_mu_;
  bool closed_ = false;           // guarded by write_mu_
  std::function<void()> on_end_;  // guarded by write_mu_
  std::string outbox_;            // guarded by write_mu_: bytes a full socket did not take yet
  ShardAffinity affinity_;        // guarded by write_mu_
  int move_to_ = -1;              // guarded by write_mu_: the shard MaybeMove should go to
};

}  // namespace thaw::runtime_api

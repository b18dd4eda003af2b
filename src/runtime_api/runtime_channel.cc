#include "runtime_api/runtime_channel.h"

#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/shard.h"
#include "runtime_api/channel_frame.h"

namespace thaw::runtime_api {
namespace {

namespace asio = boost::asio;

constexpr size_t kReadChunk = 64 * 1024;
// Room for a frame's ids and headers beside its body.
constexpr size_t kFrameOverhead = 64 * 1024;
constexpr size_t kMaxRequestId = 1024;

}  // namespace

RuntimeChannel::RuntimeChannel(std::vector<asio::io_context*> shards, int home,
                               std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                               int64_t max_response_bytes, UniqueFd fd)
    : shards_(std::move(shards)),
      strand_(asio::make_strand(*shards_.at(home < 0 ? 0 : static_cast<size_t>(home)))),
      desc_(strand_, fd.get()),
      fd_(fd.release()),
      pool_(std::move(pool)),
      instance_id_(instance_id),
      invoked_arn_(pool_->arn()),
      max_response_bytes_(static_cast<size_t>(max_response_bytes)),
      max_frame_(max_response_bytes_ + kFrameOverhead) {
  buf_.resize(kReadChunk);
  affinity_.home = shards_.size() > 1 ? home : -1;
}

void RuntimeChannel::Start() {
  asio::dispatch(strand_, [self = shared_from_this()] { self->ReadMore(); });
}

void RuntimeChannel::Close() {
  std::lock_guard<std::mutex> lock(write_mu_);
  asio::post(strand_, [self = shared_from_this()] { self->DoClose(); });
}

void RuntimeChannel::OnEnd(std::function<void()> done) {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (!closed_) {
      on_end_ = std::move(done);
      return;
    }
  }
  done();
}

void RuntimeChannel::DoClose() {
  std::function<void()> on_end;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (closed_) return;
    // Posted before the channel moved: the descriptor is the new strand's now.
    if (!strand_.running_in_this_thread()) {
      asio::post(strand_, [self = shared_from_this()] { self->DoClose(); });
      return;
    }
    closed_ = true;
    outbox_.clear();
    on_end = std::move(on_end_);
  }
  boost::system::error_code ec;
  desc_.close(ec);
  if (on_end) on_end();
}

void RuntimeChannel::ReadMore() {
  if (filled_ == buf_.size()) buf_.resize(buf_.size() * 2);
  desc_.async_read_some(asio::buffer(buf_.data() + filled_, buf_.size() - filled_),
                        [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                          self->OnRead(ec, n);
                        });
}

void RuntimeChannel::OnRead(const boost::system::error_code& ec, size_t n) {
  // EOF: the runtime exited (its exit event reports it) or gave the channel up.
  if (ec) return DoClose();
  filled_ += n;
  if (!HandleBuffered()) return DoClose();
  if (MaybeMove()) return;
  ReadMore();
}

bool RuntimeChannel::MaybeMove() {
  int to = -1;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    to = std::exchange(move_to_, -1);
    // A pending write waits on the descriptor: move on a later read, once it is out.
    if (to < 0 || to == affinity_.home || closed_ || !outbox_.empty()) return false;
    // SAFETY: no operation is outstanding on desc_ (this is a read's completion, the next read
    // is not started, and an empty outbox has no write wait), so it can let the fd go and a
    // descriptor on the new shard's reactor take it; fd_ stays open throughout.
    (void)desc_.release();
    strand_ = asio::make_strand(*shards_[static_cast<size_t>(to)]);
    desc_ = asio::posix::stream_descriptor(strand_, fd_);
    affinity_.home = to;
    asio::post(strand_, [self = shared_from_this()] { self->ReadMore(); });
  }
  spdlog::debug("{}: instance {}: native channel moved to shard {}", pool_->version().function,
                instance_id_, to);
  pool_->SetServingShard(instance_id_, to);
  return true;
}

bool RuntimeChannel::HandleBuffered() {
  size_t at = 0;
  size_t want = 0;  // the size of the frame being read, once its header is in
  while (at < filled_) {
    if (discard_ > 0) {
      const size_t skip = std::min(discard_, filled_ - at);
      discard_ -= skip;
      at += skip;
      continue;
    }
    std::string_view rest(buf_.data() + at, filled_ - at);
    Frame frame;
    size_t size = 0;
    const ParseResult r = ParseFrame(rest, frame, &size);
    if (r == ParseResult::kMalformed) {
      spdlog::warn("{}: instance {} sent a malformed channel frame: closing its channel",
                   pool_->version().function, instance_id_);
      return false;
    }
    if (r == ParseResult::kNeedMore) {
      if (size > max_frame_) {
        bool bad = false;
        const size_t took = SkipOversized(rest, size, &bad);
        if (bad) return false;
        if (took > 0) {
          at += took;
          continue;
        }
        break;  // its request id is not all in yet
      }
      want = size;
      break;
    }
    Handle(frame);
    at += size;
  }
  // Keep the partial frame at the front, with room for all of it.
  if (at > 0) {
    std::memmove(buf_.data(), buf_.data() + at, filled_ - at);
    filled_ -= at;
  }
  const size_t room = std::max(kReadChunk, std::min(want, max_frame_));
  if (buf_.size() < room) buf_.resize(room);
  if (buf_.size() > kReadChunk && filled_ == 0 && want == 0) {
    buf_.resize(kReadChunk);
  }
  return true;
}

size_t RuntimeChannel::SkipOversized(std::string_view buffered, size_t frame_size, bool* bad) {
  const char type = buffered[4];
  if (type != kFrameResponse && type != kFrameError) {
    *bad = true;
    return 0;
  }
  if (buffered.size() < kFrameHeaderBytes + 4) return 0;
  const size_t id_len = ReadU32(buffered.data() + kFrameHeaderBytes);
  if (id_len > kMaxRequestId) {
    *bad = true;
    return 0;
  }
  if (buffered.size() < kFrameHeaderBytes + 4 + id_len) return 0;
  const std::string id(buffered.substr(kFrameHeaderBytes + 4, id_len));
  ReportTooLarge(id);
  discard_ = frame_size - buffered.size();
  AskNext();
  return buffered.size();
}

// The caller gets the error Lambda gives, at once; the runtime, which is not answered on the
// channel, gets its next event.
void RuntimeChannel::ReportTooLarge(const std::string& request_id) {
  const std::string message = "Response payload size exceeded maximum allowed payload size (" +
                              std::to_string(max_response_bytes_) + " bytes).";
  (void)pool_->ReportError(
      instance_id_, request_id,
      boost::json::serialize(boost::json::object{{"errorMessage", message},
                                                 {"errorType", "Function.ResponseSizeTooLarge"}}),
      "Function.ResponseSizeTooLarge");
}

void RuntimeChannel::Handle(const Frame& frame) {
  Status st = Status::Ok();
  switch (frame.type) {
    case kFrameNext:
      return AskNext();
    case kFrameResponse:
      if (frame.fields[1].size() > max_response_bytes_) {
        ReportTooLarge(std::string(frame.fields[0]));
        break;
      }
      // The answer and the ask for the next event in one go: one pool lock, not two.
      st = pool_->RespondAndNext(instance_id_, std::string(frame.fields[0]),
                                 std::string(frame.fields[1]), NextHandlerForDeliver());
      if (!st.ok()) {
        spdlog::warn("{}: instance {}: {}", pool_->version().function, instance_id_, st.message());
      }
      return;
    case kFrameError:
      st = pool_->ReportError(instance_id_, std::string(frame.fields[0]),
                              std::string(frame.fields[2]), std::string(frame.fields[1]));
      break;
    case kFrameInitError:
      return pool_->ReportInitError(instance_id_, std::string(frame.fields[1]),
                                    std::string(frame.fields[0]));
    default:  // an event: thaw's to send, never the runtime's
      spdlog::warn("{}: instance {} sent a frame of type '{}' on its channel: ignored",
                   pool_->version().function, instance_id_, frame.type);
      return;
  }
  // The HTTP Runtime API answers an unknown request id with 400; here the runtime is told
  // nothing (it would ignore it), and still asked for its next event.
  if (!st.ok()) {
    spdlog::warn("{}: instance {}: {}", pool_->version().function, instance_id_, st.message());
  }
  AskNext();
}

pool::NextHandler RuntimeChannel::NextHandlerForDeliver() {
  // Deliver is thread-safe (write_mu_): it runs inline on the thread that hands the event over
  // (the caller's shard), where a queued hop to another executor would cost a wake-up.
  return pool::NextHandler(
      [self = shared_from_this()](pool::InvocationPtr inv) { self->Deliver(std::move(inv)); },
      asio::system_executor());
}

void RuntimeChannel::AskNext() { pool_->NextWith(instance_id_, NextHandlerForDeliver()); }

void RuntimeChannel::Deliver(pool::InvocationPtr inv) {
  if (!inv) return Close();  // the instance is being stopped
  // The event is delivered exactly once; the invocation no longer needs its copy.
  const std::string payload = std::move(inv->payload);
  const std::string head =
      EncodeEventHead(inv->id, inv->deadline_wall_ms,
                      inv->qualifier.empty() ? invoked_arn_ : invoked_arn_ + ":" + inv->qualifier,
                      inv->trace_id, inv->client_context, inv->cognito_identity, payload.size());
  std::lock_guard<std::mutex> lock(write_mu_);
  if (closed_) return;  // the runtime is gone: its exit event ends the call
  if (const int to = NoteCall(affinity_, CurrentShard());
      to >= 0 && static_cast<size_t>(to) < shards_.size()) {
    move_to_ = to;
  }
  if (!outbox_.empty()) {
    outbox_ += head;
    outbox_ += payload;
    return;
  }
  iovec iov[2] = {{const_cast<char*>(head.data()), head.size()},
                  {const_cast<char*>(payload.data()), payload.size()}};
  ssize_t n;
  do {
    // SAFETY: fd_ stays open while write_mu_ is held and closed_ is false (DoClose).
    n = ::writev(fd_, iov, payload.empty() ? 1 : 2);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return;  // the runtime is gone: its exit event ends the call
  const size_t wrote = n < 0 ? 0 : static_cast<size_t>(n);
  if (wrote == head.size() + payload.size()) return;
  // A full socket (a large event): the rest goes out as the runtime reads.
  if (wrote < head.size()) {
    outbox_.assign(head, wrote);
    outbox_ += payload;
  } else {
    outbox_.assign(payload, wrote - head.size());
  }
  asio::post(strand_, [self = shared_from_this()] { self->FlushOutbox(); });
}

void RuntimeChannel::FlushOutbox() {
  desc_.async_wait(asio::posix::descriptor_base::wait_write,
                   [self = shared_from_this()](const boost::system::error_code& ec) {
                     if (ec) return;
                     std::lock_guard<std::mutex> lock(self->write_mu_);
                     if (self->closed_ || self->outbox_.empty()) return;
                     ssize_t n = ::write(self->fd_, self->outbox_.data(), self->outbox_.size());
                     if (n < 0 && errno != EAGAIN && errno != EINTR) {
                       self->outbox_.clear();
                       return;
                     }
                     if (n > 0) self->outbox_.erase(0, static_cast<size_t>(n));
                     if (!self->outbox_.empty()) self->FlushOutbox();
                   });
}

}  // namespace thaw::runtime_api

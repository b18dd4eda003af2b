// ResponseSink: one streamed response on its way from a runtime to its caller. The runtime's
// side (its Runtime API connection) writes chunks as they arrive; the pool ends the sink with
// the invocation's final Result (error, billed time: what faces send as trailers); the
// caller's side (a face: native, Lambda event stream, function URL, SSE) reads the chunks in
// order and forwards each at once; chunks that queued while it was busy come as one piece.
// Nothing is buffered whole: a writer waits while kMaxBufferedBytes are unread, so a slow
// caller slows the runtime, not thaw's memory.
//
// Thread-safe. One writer and one reader, each with at most one operation pending; their
// completions run on the executor associated with their handlers, never under the lock.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "pool/pool.h"

namespace thaw::pool {

namespace asio = boost::asio;

class ResponseSink {
 public:
  static constexpr size_t kMaxBufferedBytes = 1 << 20;
  // A read takes every queued chunk at once, up to this many bytes (more when one chunk is).
  static constexpr size_t kMaxPieceBytes = 64 << 10;

  // One read: a chunk, or the end (`end` set: no chunk, and result() is final).
  struct Piece {
    std::string bytes;
    bool end = false;
  };

  // `content_type`: what the runtime declared for its body.
  explicit ResponseSink(std::string content_type) : content_type_(std::move(content_type)) {}
  ResponseSink(const ResponseSink&) = delete;
  ResponseSink& operator=(const ResponseSink&) = delete;

  const std::string& content_type() const { return content_type_; }

  // Writer: queues `bytes`; completes with false once the reader is gone (Cancel) or the
  // sink has ended, else true once the buffer has room again.
  template <typename Token>
  auto Write(std::string bytes, Token&& token) {
    return asio::async_initiate<Token, void(bool)>(
        [this](auto handler, std::string bytes) {
          auto ex = asio::get_associated_executor(handler, asio::system_executor());
          StartWrite(std::move(bytes), Completion<void(bool)>(std::move(handler), std::move(ex)));
        },
        token, std::move(bytes));
  }

  // The pool, once the invocation is over (any way it ends): wakes the reader. Later writes
  // complete with false. Only the first call counts.
  void Finish(Result result);

  // Reader: the next chunk, or the end once every chunk was read and the sink has finished.
  template <typename Token>
  auto Read(Token&& token) {
    return asio::async_initiate<Token, void(Piece)>(
        [this](auto handler) {
          auto ex = asio::get_associated_executor(handler, asio::system_executor());
          StartRead(Completion<void(Piece)>(std::move(handler), std::move(ex)));
        },
        token);
  }

  // Reader: the caller went away. Queued chunks are dropped and the writer is told (its
  // pending and later writes complete with false).
  void Cancel();

  // Valid once Read returned the end.
  const Result& result() const { return result_; }
  bool cancelled() const;
  int64_t bytes_written() const;

 private:
  void StartWrite(std::string bytes, Completion<void(bool)> done);
  void StartRead(Completion<void(Piece)> done);

  const std::string content_type_;
  mutable std::mutex mu_;
  std::deque<std::string> chunks_;                       // guarded by mu_
  size_t buffered_ = 0;                                  // bytes in chunks_; guarded by mu_
  int64_t written_ = 0;                                  // guarded by mu_
  bool finished_ = false;                                // guarded by mu_
  bool cancelled_ = false;                               // guarded by mu_
  Result result_;                                        // set once finished_; guarded by mu_
  std::optional<Completion<void(bool)>> blocked_write_;  // guarded by mu_
  std::optional<Completion<void(Piece)>> pending_read_;  // guarded by mu_
};

}  // namespace thaw::pool

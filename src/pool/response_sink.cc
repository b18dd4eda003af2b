#include "pool/response_sink.h"

#include <boost/asio/dispatch.hpp>
#include <utility>

namespace thaw::pool {
namespace {

// Moves a waiting completion out of `from` (Completion cannot be move-assigned).
template <typename T>
void Take(std::optional<T>& from, std::optional<T>& to) {
  if (from) to.emplace(std::move(*from));
  from.reset();
}

}  // namespace

void ResponseSink::StartWrite(std::string bytes, Completion<void(bool)> done) {
  std::optional<Completion<void(Piece)>> reader;
  Piece piece;
  bool accepted = false, wait = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_ && !cancelled_) {
      accepted = true;
      written_ += static_cast<int64_t>(bytes.size());
      if (pending_read_) {
        // The reader is waiting, so nothing is queued: hand the chunk over directly.
        Take(pending_read_, reader);
        piece.bytes = std::move(bytes);
      } else {
        buffered_ += bytes.size();
        chunks_.push_back(std::move(bytes));
        wait = buffered_ > kMaxBufferedBytes;
      }
      if (wait) blocked_write_.emplace(std::move(done));
    }
  }
  if (reader) Complete(std::move(*reader), std::move(piece));
  if (!wait) Complete(std::move(done), accepted);
}

void ResponseSink::StartRead(Completion<void(Piece)> done) {
  std::optional<Completion<void(bool)>> writer;
  Piece piece;
  bool ready = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!chunks_.empty()) {
      // Everything queued goes as one piece (up to kMaxPieceBytes): a reader that fell behind
      // catches up in one write to its caller instead of one per chunk.
      piece.bytes = std::move(chunks_.front());
      chunks_.pop_front();
      while (!chunks_.empty() && piece.bytes.size() + chunks_.front().size() <= kMaxPieceBytes) {
        piece.bytes += chunks_.front();
        chunks_.pop_front();
      }
      buffered_ -= piece.bytes.size();
      if (blocked_write_ && buffered_ <= kMaxBufferedBytes) {
        Take(blocked_write_, writer);
      }
    } else if (finished_ || cancelled_) {
      piece.end = true;
    } else {
      ready = false;
      pending_read_.emplace(std::move(done));
    }
  }
  if (writer) Complete(std::move(*writer), true);
  if (ready) Complete(std::move(done), std::move(piece));
}

void ResponseSink::Finish(Result result) {
  std::optional<Completion<void(bool)>> writer;
  std::optional<Completion<void(Piece)>> reader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    result_ = std::move(result);
    Take(blocked_write_, writer);
    if (chunks_.empty()) {
      Take(pending_read_, reader);
    }
  }
  if (writer) Complete(std::move(*writer), false);
  if (reader) Complete(std::move(*reader), Piece{.bytes = {}, .end = true});
}

void ResponseSink::Cancel() {
  std::optional<Completion<void(bool)>> writer;
  std::optional<Completion<void(Piece)>> reader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    chunks_.clear();
    buffered_ = 0;
    Take(blocked_write_, writer);
    Take(pending_read_, reader);
  }
  if (writer) Complete(std::move(*writer), false);
  if (reader) Complete(std::move(*reader), Piece{.bytes = {}, .end = true});
}

bool ResponseSink::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

int64_t ResponseSink::bytes_written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_;
}

}  // namespace thaw::pool

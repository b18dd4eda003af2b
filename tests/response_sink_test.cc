// ResponseSink (pool/response_sink.h): order, the bounded buffer that slows a writer down to
// its reader, the final Result, and a reader that goes away.
#include "pool/response_sink.h"

#include <gtest/gtest.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace thaw::pool {
namespace {

struct Reads {
  std::vector<std::string> chunks;
  bool ended = false;
};

// Reads everything `sink` has now, on `ioc`, without blocking.
void Drain(boost::asio::io_context& ioc, ResponseSink& sink, Reads& out) {
  bool waiting = false;
  std::function<void()> next = [&] {
    waiting = true;
    sink.Read(boost::asio::bind_executor(ioc, [&](ResponseSink::Piece p) {
      waiting = false;
      if (p.end) {
        out.ended = true;
        return;
      }
      out.chunks.push_back(std::move(p.bytes));
      next();
    }));
  };
  next();
  ioc.poll();
  ioc.restart();
  (void)waiting;
}

TEST(ResponseSinkTest, ChunksArriveInOrderThenTheEndWithItsResult) {
  boost::asio::io_context ioc;
  ResponseSink sink("text/plain");
  std::vector<bool> written;
  for (const char* c : {"a", "b", "c"}) {
    sink.Write(c, boost::asio::bind_executor(ioc, [&](bool ok) { written.push_back(ok); }));
  }
  ioc.poll();
  ioc.restart();
  EXPECT_EQ(written, (std::vector<bool>{true, true, true}));
  Result end;
  end.billed_ms = 7;
  sink.Finish(end);
  Reads reads;
  Drain(ioc, sink, reads);
  // Queued while no one read: one piece, in order.
  EXPECT_EQ(reads.chunks, (std::vector<std::string>{"abc"}));
  EXPECT_TRUE(reads.ended);
  EXPECT_EQ(sink.result().billed_ms, 7);
  EXPECT_EQ(sink.bytes_written(), 3);
  EXPECT_EQ(sink.content_type(), "text/plain");
}

TEST(ResponseSinkTest, AReaderThatFellBehindTakesWhatQueuedInPiecesOfBoundedSize) {
  boost::asio::io_context ioc;
  ResponseSink sink("");
  const std::string big(ResponseSink::kMaxPieceBytes - 1, 'x');
  for (const std::string& c : {big, std::string("yz"), std::string("w")}) {
    sink.Write(c, boost::asio::bind_executor(ioc, [](bool) {}));
  }
  ioc.poll();
  ioc.restart();
  sink.Finish(Result{});
  Reads reads;
  Drain(ioc, sink, reads);
  // "yz" would pass the bound after `big`: it starts the next piece, and "w" joins it.
  EXPECT_EQ(reads.chunks, (std::vector<std::string>{big, "yzw"}));
  EXPECT_TRUE(reads.ended);
}

TEST(ResponseSinkTest, AWriterWaitsWhileTheBufferIsFull) {
  boost::asio::io_context ioc;
  ResponseSink sink("");
  std::optional<bool> first, second;
  sink.Write(std::string(ResponseSink::kMaxBufferedBytes, 'x'),
             boost::asio::bind_executor(ioc, [&](bool ok) { first = ok; }));
  sink.Write(std::string("y"), boost::asio::bind_executor(ioc, [&](bool ok) { second = ok; }));
  ioc.poll();
  ioc.restart();
  EXPECT_EQ(first, true);
  EXPECT_FALSE(second.has_value());  // over the bound: waits for the reader
  Reads reads;
  sink.Read(boost::asio::bind_executor(
      ioc, [&](ResponseSink::Piece p) { reads.chunks.push_back(std::move(p.bytes)); }));
  ioc.poll();
  ioc.restart();
  ASSERT_EQ(reads.chunks.size(), 1u);
  EXPECT_EQ(second, true);
}

TEST(ResponseSinkTest, CancelTellsTheWriterAndEndsReads) {
  boost::asio::io_context ioc;
  ResponseSink sink("");
  std::optional<bool> blocked, later;
  sink.Write(std::string(ResponseSink::kMaxBufferedBytes + 1, 'x'),
             boost::asio::bind_executor(ioc, [&](bool ok) { blocked = ok; }));
  sink.Cancel();
  ioc.poll();
  ioc.restart();
  EXPECT_EQ(blocked, false);
  sink.Write(std::string("z"), boost::asio::bind_executor(ioc, [&](bool ok) { later = ok; }));
  ioc.poll();
  ioc.restart();
  EXPECT_EQ(later, false);
  EXPECT_TRUE(sink.cancelled());
  Reads reads;
  Drain(ioc, sink, reads);
  EXPECT_TRUE(reads.chunks.empty());
  EXPECT_TRUE(reads.ended);
}

TEST(ResponseSinkTest, AWaitingReaderWakesOnFinishAndLaterWritesFail) {
  boost::asio::io_context ioc;
  ResponseSink sink("");
  std::optional<bool> ended;
  sink.Read(boost::asio::bind_executor(ioc, [&](ResponseSink::Piece p) { ended = p.end; }));
  ioc.poll();
  ioc.restart();
  EXPECT_FALSE(ended.has_value());
  Result timeout;
  timeout.kind = Result::Kind::kTimeout;
  sink.Finish(timeout);
  ioc.poll();
  ioc.restart();
  EXPECT_EQ(ended, true);
  EXPECT_EQ(sink.result().kind, Result::Kind::kTimeout);
  std::optional<bool> late;
  sink.Write(std::string("x"), boost::asio::bind_executor(ioc, [&](bool ok) { late = ok; }));
  ioc.poll();
  EXPECT_EQ(late, false);
}

}  // namespace
}  // namespace thaw::pool

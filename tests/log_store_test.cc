// LogStore (logs/log_store.h): the in-memory ring's bounds, the writer queue's bound and its
// dropped-line count, file rotation, and lines a full disk refuses (/dev/full stands in for it).
#include "logs/log_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/shard.h"

namespace thaw::logs {
namespace {

namespace fs = std::filesystem;

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw_log_store_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::string File(const std::string& name) const {
    auto text = ReadFile(dir_ + "/" + name);
    return text.ok() ? *text : "";
  }
  std::string dir_;
};

size_t CountLines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

// Regression: the ring kept 10,000 lines whatever their size (64 KB each: 640 MB per function).
TEST_F(LogStoreTest, RingIsBoundedInBytesAndKeepsTheNewest) {
  LogStore store("", LogOptions{.max_lines = 10'000, .max_ring_bytes = 1 << 20});
  const std::string line(64 << 10, 'x');
  for (int i = 0; i < 100; ++i) store.Append("f", "r", "stdout", std::to_string(i) + line);
  auto lines = store.Read("f", 0, 100'000);
  ASSERT_FALSE(lines.empty());
  EXPECT_LE(lines.size(), 16u);  // 1 MiB of 64 KiB lines
  EXPECT_GE(lines.size(), 14u);
  EXPECT_TRUE(lines.back().text.starts_with("99")) << lines.back().text.substr(0, 8);
  // A line bigger than the whole ring is still kept, alone.
  store.Append("f", "r", "stdout", std::string(2 << 20, 'y'));
  lines = store.Read("f", 0, 100'000);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].text.size(), 2u << 20);
}

TEST_F(LogStoreTest, RingIsStillBoundedInLines) {
  LogStore store("", LogOptions{.max_lines = 10});
  for (int i = 0; i < 25; ++i) store.Append("f", "r", "stdout", std::to_string(i));
  auto lines = store.Read("f", 0, 100);
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines.front().text, "15");
}

// Regression: the writer queue had no bound (1 GB of output held 1.7 GB). Lines past it stay in
// the ring, are counted, and the file says how many it lacks. The file is a FIFO here, so the
// writer stalls in open() on its first batch, like a writer behind a slow disk, until the
// reader below opens it.
TEST_F(LogStoreTest, FullWriterQueueDropsCountsAndSaysSoInTheFile) {
  const std::string fifo = dir_ + "/f.log";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string written;
  const int n = 2000;
  {
    LogStore store(dir_, LogOptions{.max_ring_bytes = 16 << 20, .max_queue_bytes = 128 << 10});
    const std::string line(4 << 10, 'x');
    for (int i = 0; i < n; ++i) store.Append("f", "r", "stdout", line);
    // The disk catches up: a reader, and a writer end of our own held open so the reader sees
    // EOF only once we let go, however the store's writer opens and closes between batches.
    int rfd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(rfd, 0);
    int hold = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(hold, 0);
    ASSERT_EQ(::fcntl(rfd, F_SETFL, 0), 0);
    std::thread reader([&] {
      char buf[65536];
      for (ssize_t got; (got = ::read(rfd, buf, sizeof(buf))) > 0;) written.append(buf, got);
    });
    store.Flush();
    ::close(hold);
    reader.join();
    ::close(rfd);
    const DroppedLines dropped = store.Dropped();
    // At most the stalled batch and one more queue-full got through.
    EXPECT_GT(dropped.queue_full, n - 2 * (128 << 10) / (4 << 10));
    EXPECT_EQ(dropped.write_failed, 0);
    EXPECT_EQ(store.Read("f", 0, 10'000).size(), static_cast<size_t>(n));  // the ring has all
    // The request's REPORT line says how many of its lines were left out, once.
    EXPECT_EQ(store.TakeDroppedFor("r"), dropped.queue_full);
    EXPECT_EQ(store.TakeDroppedFor("r"), 0);

    size_t data_lines = 0;
    int64_t noted = 0;
    const std::string note = " log lines were not written here: the log writer queue was full";
    for (size_t pos = 0, end; (end = written.find('\n', pos)) != std::string::npos; pos = end + 1) {
      const std::string text = written.substr(pos, end - pos);
      if (size_t at = text.find("thaw: "); at != std::string::npos && text.ends_with(note)) {
        noted += std::stoll(text.substr(at + 6));
      } else {
        ++data_lines;
      }
    }
    EXPECT_EQ(noted, dropped.queue_full);
    EXPECT_EQ(data_lines, static_cast<size_t>(n - dropped.queue_full));
  }
}

// Regression: files never rotated (one invocation wrote a 1 GB file).
// A call's END and REPORT lines go in under one lock; REPORT says how many of the request's
// lines the file lost (counted once), before the status tail.
TEST_F(LogStoreTest, EndReportCarriesTheRequestsDroppedLines) {
  // A writer queue of one byte: every line is kept in the ring but left out of the file.
  LogStore store(dir_, LogOptions{.max_queue_bytes = 1});
  for (int i = 0; i < 3; ++i) store.Append("f", "r", "stdout", "line");
  store.AppendEndReport("f", "r", "REPORT RequestId: r", "\tStatus: timeout");
  auto lines = store.ReadRequest("f", "r");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[3].text, "END RequestId: r");
  EXPECT_EQ(lines[3].stream, "platform");
  EXPECT_EQ(lines[4].text, "REPORT RequestId: r\tLog Lines Dropped: 3\tStatus: timeout");
  EXPECT_LT(lines[3].seq, lines[4].seq);
  store.AppendEndReport("f", "q", "REPORT RequestId: q", "");
  EXPECT_EQ(store.ReadRequest("f", "q").back().text, "REPORT RequestId: q");
}

TEST_F(LogStoreTest, FilesRotateBySizeKeepingTheNewest) {
  LogStore store(dir_, LogOptions{.max_file_bytes = 10'000, .files_kept = 2});
  const std::string line(900, 'x');  // ~940 bytes with the tab-separated fields
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 10; ++i) store.Append("f", "r", "stdout", std::to_string(round) + line);
    store.Flush();  // one batch per round: ~9.4 KB, so every round after the first rotates
  }
  EXPECT_LE(File("f.log").size(), 10'000u);
  EXPECT_NE(File("f.log").find("\t5x"), std::string::npos);
  EXPECT_NE(File("f.log.1").find("\t4x"), std::string::npos);
  EXPECT_NE(File("f.log.2").find("\t3x"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ + "/f.log.3"));
}

TEST_F(LogStoreTest, NoKeptFilesMeansTheFileStartsOver) {
  LogStore store(dir_, LogOptions{.max_file_bytes = 2'000, .files_kept = 0});
  for (int round = 0; round < 3; ++round) {
    store.Append("f", "r", "stdout", std::to_string(round) + std::string(1500, 'x'));
    store.Flush();
  }
  EXPECT_NE(File("f.log").find("\t2x"), std::string::npos);
  EXPECT_EQ(File("f.log").find("\t1x"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir_ + "/f.log.1"));
}

// Regression: at disk full the lines were dropped without a count. /dev/full answers every
// write with ENOSPC; pointing the file there and back stands in for a disk that fills up and
// is then freed.
TEST_F(LogStoreTest, LinesRefusedByAFullDiskAreCountedAndNotedOnceWritable) {
  LogStore store(dir_, LogOptions{});
  ASSERT_EQ(::symlink("/dev/full", (dir_ + "/f.log").c_str()), 0);
  for (int i = 0; i < 5; ++i) store.Append("f", "r", "stdout", "lost " + std::to_string(i));
  store.Flush();
  EXPECT_EQ(store.Dropped().write_failed, 5);
  store.Append("f", "r", "stdout", "also lost");
  store.Flush();
  EXPECT_EQ(store.Dropped().write_failed, 6);
  ASSERT_EQ(::unlink((dir_ + "/f.log").c_str()), 0);  // space again
  store.Flush();  // the count is written without waiting for a new line
  EXPECT_NE(File("f.log").find("thaw: 6 log lines"), std::string::npos);
  store.Append("f", "r", "stdout", "kept");
  store.Flush();
  const std::string text = File("f.log");
  EXPECT_NE(text.find("thaw: 6 log lines were not written here: failed to write"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("No space left on device"), std::string::npos) << text;
  EXPECT_NE(text.find("\tkept\n"), std::string::npos) << text;
  EXPECT_EQ(CountLines(text), 2u);
  EXPECT_EQ(store.Dropped().write_failed, 6);  // reported, not dropped again
}

// Appends from two shards go to their own buffers; a follower reading while they append still
// sees every line once, in the order they were numbered (a line numbered before the newest it
// sees is never found later), each shard's lines in the order it appended them, and the file
// gets them all.
TEST_F(LogStoreTest, AFollowerSeesEveryShardsLinesOnceAndInOrder) {
  LogStore store(dir_, LogOptions{.max_lines = 1'000'000, .max_ring_bytes = 256u << 20});
  constexpr int kPerShard = 20'000;
  std::atomic<int> done{0};
  std::vector<std::thread> shards;
  for (int shard = 0; shard < 2; ++shard) {
    shards.emplace_back([&, shard] {
      SetCurrentShard(shard);
      for (int i = 0; i < kPerShard; ++i) {
        if (i % 2 == 0) {
          store.Append("f", "r", "stdout", std::to_string(shard) + " " + std::to_string(i));
        } else {
          store.AppendEndReport("f", std::to_string(shard) + " " + std::to_string(i), "REPORT", "");
        }
      }
      done.fetch_add(1);
    });
  }
  std::vector<Line> seen;
  int64_t after = 0;
  for (bool last = false; !last;) {
    last = done.load() == 2;
    for (Line& line : store.Read("f", after, 1'000'000)) {
      ASSERT_GT(line.seq, after);
      after = line.seq;
      seen.push_back(std::move(line));
    }
  }
  for (auto& t : shards) t.join();
  // Every Append is one line, every AppendEndReport two.
  ASSERT_EQ(seen.size(), 2u * (kPerShard / 2 + 2 * (kPerShard / 2)));
  for (size_t i = 1; i < seen.size(); ++i) ASSERT_EQ(seen[i].seq, seen[i - 1].seq + 1);
  std::map<std::string, int> next_of_shard;
  for (const Line& line : seen) {
    if (line.stream != "stdout") continue;
    const std::string shard = line.text.substr(0, 1);
    const int i = std::stoi(line.text.substr(2));
    EXPECT_EQ(i, next_of_shard[shard]) << line.text;
    next_of_shard[shard] = i + 2;
  }
  store.Flush();
  EXPECT_EQ(CountLines(File("f.log")), seen.size());
}

}  // namespace
}  // namespace thaw::logs

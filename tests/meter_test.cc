// Meter (meter/meter.h): billing arithmetic, and the usage ledger on a real SQLite file in a
// temp folder. Flush() is the synchronisation point, so no test waits on the writer's timer.
#include "meter/meter.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/shard.h"
#include "store/db.h"

namespace thaw::meter {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kAllTime = std::numeric_limits<int64_t>::max();
constexpr int64_t kT0 = 1'700'000'000'000'000;  // a wall-clock timestamp, microseconds

// ---------------------------------------------------------------------------------------------
// BilledMillis: rounded up to the next millisecond, at least one.

struct BilledCase {
  std::string name;
  int64_t duration_us;
  int64_t billed_ms;
};

void PrintTo(const BilledCase& c, std::ostream* os) { *os << c.duration_us << "us"; }

class BilledMillisTest : public ::testing::TestWithParam<BilledCase> {};

TEST_P(BilledMillisTest, RoundsUp) {
  EXPECT_EQ(BilledMillis(GetParam().duration_us), GetParam().billed_ms);
}

INSTANTIATE_TEST_SUITE_P(Cases, BilledMillisTest,
                         ::testing::Values(BilledCase{"Zero", 0, 1}, BilledCase{"Negative", -5, 1},
                                           BilledCase{"OneMicro", 1, 1},
                                           BilledCase{"JustUnderOneMilli", 999, 1},
                                           BilledCase{"ExactlyOneMilli", 1000, 1},
                                           BilledCase{"JustOverOneMilli", 1001, 2},
                                           BilledCase{"OneAndAHalfMillis", 1500, 2},
                                           BilledCase{"ExactlyTwoMillis", 2000, 2},
                                           BilledCase{"ThreeSecondsAndOneMicro", 3'000'001, 3001}),
                         [](const ::testing::TestParamInfo<BilledCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Journal lines.

TEST(JournalLineTest, RoundTripsEveryField) {
  Record r;
  r.request_id = "0a1b2c3d-0000-4000-8000-000000000001";
  r.function = "acme.resize";
  r.version = "12";
  r.tenant = "acme";
  r.start_us = 1'700'000'000'000'001;
  r.end_us = 1'700'000'000'500'002;
  r.duration_us = 500'001;
  r.billed_ms = 501;
  r.memory_mb = 2048;
  r.max_memory_used_mb = 77;
  r.cpu_us = 123'456;
  r.gpu_us = 654'321;
  r.cold_start = true;
  r.forked = true;
  r.init_us = 31'000;
  r.status = "error";
  // A runtime chooses its error type: every byte that could break a line must survive.
  r.error_type = "Bad\\tType\\\\ with\ttab,\nnewline,\rcr and \\\\n";
  r.error_type += std::string("a NUL \0 and \\0", 14);
  r.bytes_in = 6 << 20;
  r.bytes_out = -1;
  r.prompt_tokens = 17;
  r.completion_tokens = 42;
  r.batch_size = 16;
  std::string line;
  EncodeJournalLine(r, line);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  // A NUL in a line marks bytes a killed copy never stored (the replay skips such a line).
  EXPECT_EQ(line.find('\0'), std::string::npos);
  Record back;
  ASSERT_TRUE(DecodeJournalLine(std::string_view(line).substr(0, line.size() - 1), back));
  EXPECT_EQ(back.request_id, r.request_id);
  EXPECT_EQ(back.function, r.function);
  EXPECT_EQ(back.version, r.version);
  EXPECT_EQ(back.tenant, r.tenant);
  EXPECT_EQ(back.start_us, r.start_us);
  EXPECT_EQ(back.end_us, r.end_us);
  EXPECT_EQ(back.duration_us, r.duration_us);
  EXPECT_EQ(back.billed_ms, r.billed_ms);
  EXPECT_EQ(back.memory_mb, r.memory_mb);
  EXPECT_EQ(back.max_memory_used_mb, r.max_memory_used_mb);
  EXPECT_EQ(back.cpu_us, r.cpu_us);
  EXPECT_EQ(back.gpu_us, r.gpu_us);
  EXPECT_EQ(back.cold_start, r.cold_start);
  EXPECT_EQ(back.forked, r.forked);
  EXPECT_EQ(back.init_us, r.init_us);
  EXPECT_EQ(back.status, r.status);
  EXPECT_EQ(back.error_type, r.error_type);
  EXPECT_EQ(back.bytes_in, r.bytes_in);
  EXPECT_EQ(back.bytes_out, r.bytes_out);
  EXPECT_EQ(back.prompt_tokens, r.prompt_tokens);
  EXPECT_EQ(back.completion_tokens, r.completion_tokens);
  EXPECT_EQ(back.batch_size, r.batch_size);
}

// Each start kind survives the journal: warm, full, fork and restore (the nodejs templates').
TEST(JournalLineTest, StartKindsRoundTrip) {
  for (int kind = 0; kind < 4; ++kind) {
    SCOPED_TRACE(kind);
    Record r;
    r.request_id = "r";
    r.function = "f";
    r.cold_start = kind != 0;
    r.forked = kind == 2;
    r.restored = kind == 3;
    std::string line;
    EncodeJournalLine(r, line);
    Record back;
    ASSERT_TRUE(DecodeJournalLine(std::string_view(line).substr(0, line.size() - 1), back));
    EXPECT_EQ(back.cold_start, r.cold_start);
    EXPECT_EQ(back.forked, r.forked);
    EXPECT_EQ(back.restored, r.restored);
  }
}

// A journal a thaw without token counts left behind still replays (its lines have no tokens).
TEST(JournalLineTest, LineWithoutTokensIsRead) {
  Record r;
  r.request_id = "r";
  r.function = "f";
  r.gpu_us = 9;
  std::string line;
  EncodeJournalLine(r, line);
  line.pop_back();
  for (int i = 0; i < 3; ++i) line.erase(line.rfind('\t'));
  Record back;
  ASSERT_TRUE(DecodeJournalLine(line, back)) << line;
  EXPECT_EQ(back.gpu_us, 9);
  EXPECT_EQ(back.prompt_tokens, 0);
  EXPECT_EQ(back.completion_tokens, 0);
  EXPECT_EQ(back.batch_size, 0);
}

// A journal a thaw without batch sizes left behind still replays (its calls were unbatched).
TEST(JournalLineTest, LineWithoutBatchSizeIsRead) {
  Record r;
  r.request_id = "r";
  r.function = "f";
  r.completion_tokens = 5;
  r.batch_size = 8;
  std::string line;
  EncodeJournalLine(r, line);
  line.pop_back();
  line.erase(line.rfind('\t'));
  Record back;
  ASSERT_TRUE(DecodeJournalLine(line, back)) << line;
  EXPECT_EQ(back.completion_tokens, 5);
  EXPECT_EQ(back.batch_size, 0);
}

TEST(JournalLineTest, RefusesMalformedLines) {
  Record r;
  r.request_id = "r";
  r.function = "f";
  std::string good;
  EncodeJournalLine(r, good);
  good.pop_back();
  Record out;
  ASSERT_TRUE(DecodeJournalLine(good, out));

  auto replace_field = [&](size_t index, const std::string& value) {
    std::vector<std::string> fields;
    size_t start = 0;
    for (size_t tab; (tab = good.find('\t', start)) != std::string::npos; start = tab + 1) {
      fields.push_back(good.substr(start, tab - start));
    }
    fields.push_back(good.substr(start));
    fields.at(index) = value;
    std::string line;
    for (const auto& f : fields) line += (line.empty() ? "" : "\t") + f;
    return line;
  };
  struct Case {
    const char* name;
    std::string line;
  };
  const Case cases[] = {
      {"Empty", ""},
      {"OtherFormatTag", replace_field(0, "m2")},
      {"NoRequestId", replace_field(1, "")},
      {"UnknownEscape", replace_field(6, "bad\\x")},
      {"TrailingBackslash", replace_field(6, "bad\\")},
      {"NotANumber", replace_field(7, "12a")},
      {"EmptyNumber", replace_field(9, "")},
      // 0 warm, 1 a full cold start, 2 a forked one, 3 a restored one (Record::restored).
      {"ColdStartOutOfRange", replace_field(14, "4")},
      // One field short is a line from before batch sizes (read); two short is neither.
      {"MissingTwoFields", good.substr(0, good.rfind('\t', good.rfind('\t') - 1))},
      {"ExtraField", good + "\t0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(DecodeJournalLine(c.line, out)) << c.line;
  }
}

// ---------------------------------------------------------------------------------------------
// The ledger.

Record Rec(std::string request_id, std::string function, std::string status, int64_t start_us,
           int64_t duration_us, int64_t memory_mb = 128, bool cold_start = false) {
  Record r;
  r.request_id = std::move(request_id);
  r.function = std::move(function);
  r.version = "1";
  r.start_us = start_us;
  r.duration_us = duration_us;
  r.end_us = start_us + duration_us;
  r.billed_ms = BilledMillis(duration_us);
  r.memory_mb = memory_mb;
  r.cold_start = cold_start;
  r.status = std::move(status);
  return r;
}

class MeterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw_meter_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    db_path_ = dir_ + "/thaw.db";
    Reopen();
  }
  void TearDown() override {
    meter_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void Reopen() {
    meter_.reset();
    auto m = Meter::Open(db_path_);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    meter_ = std::move(*m);
  }

  // Per-function totals the way the usage API computes them: the ledger's rows for the window
  // (Samples), summed in C++ (Aggregate).
  struct UsageRow {
    std::string function;
    int64_t invocations = 0, errors = 0, throttles = 0, cold_starts = 0, billed_ms = 0;
    double gb_seconds = 0;
    int64_t avg_duration_us = 0;
  };
  std::vector<UsageRow> UsageOrDie(const std::string& function, int64_t from, int64_t to) {
    auto samples = meter_->Samples(function, from, to);
    EXPECT_TRUE(samples.ok()) << samples.status().ToString();
    std::vector<UsageRow> rows;
    if (!samples.ok()) return rows;
    for (const Group& g : Aggregate(*samples, GroupBy::kFunction)) {
      const Sums& s = g.sums;
      rows.push_back({g.key, s.invocations, s.error + s.timeout + s.crash, s.throttled,
                      s.cold_starts, s.billed_ms,
                      static_cast<double>(s.billed_mb_ms) / 1024.0 / 1000.0,
                      s.duration_us / s.invocations});
    }
    return rows;
  }

  std::string dir_;
  std::string db_path_;
  std::unique_ptr<Meter> meter_;
};

TEST_F(MeterTest, UsageRecordSetsTheTokensOfItsInvocation) {
  meter_->Add(Rec("a", "chat", "success", kT0, 1000));
  meter_->AddUsage("a", "chat", kT0 + 5, 12, 30);
  meter_->Add(Rec("b", "chat", "success", kT0 + 1, 1000));
  meter_->AddUsage("missing", "chat", kT0 + 5, 5, 5);  // no such invocation: nothing to amend
  auto samples = meter_->Samples("", kT0, kT0 + 10);
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();
  ASSERT_EQ(samples->size(), 2u);  // a usage record is not an invocation
  Sums sums;
  for (const Sample& s : *samples) AddSample(s, sums);
  EXPECT_EQ(sums.invocations, 2);
  EXPECT_EQ(sums.prompt_tokens, 12);
  EXPECT_EQ(sums.completion_tokens, 30);
  // Replayed after a restart, the amendment is applied once more, to the same figures.
  Reopen();
  samples = meter_->Samples("", kT0, kT0 + 10);
  ASSERT_TRUE(samples.ok());
  EXPECT_EQ(samples->size(), 2u);
}

TEST_F(MeterTest, EmptyLedgerHasNoRows) {
  EXPECT_TRUE(UsageOrDie("", 0, kAllTime).empty());
  EXPECT_EQ(meter_->pending(), 0);
}

TEST_F(MeterTest, UsageSumsEveryColumn) {
  // resize: 6 invocations, 3 errors (error, timeout, crash), 1 throttle, 2 cold starts.
  meter_->Add(Rec("r1", "resize", "success", kT0 + 1, 1500, 128, true));       // 2 ms
  meter_->Add(Rec("r2", "resize", "error", kT0 + 2, 10'000, 128));             // 10 ms
  meter_->Add(Rec("r3", "resize", "timeout", kT0 + 3, 3'000'000, 128, true));  // 3000 ms
  meter_->Add(Rec("r4", "resize", "crash", kT0 + 4, 1, 128));                  // 1 ms
  meter_->Add(Rec("r5", "resize", "throttled", kT0 + 5, 0, 128));              // 1 ms
  meter_->Add(Rec("r6", "resize", "success", kT0 + 6, 999, 128));              // 1 ms
  // echo: one success at 1 GiB for exactly one second: 1 GB-second.
  meter_->Add(Rec("e1", "echo", "success", kT0 + 7, 1'000'000, 1024));
  ASSERT_TRUE(meter_->Flush().ok());
  EXPECT_EQ(meter_->pending(), 0);

  auto rows = UsageOrDie("", 0, kAllTime);
  ASSERT_EQ(rows.size(), 2u);
  const UsageRow& echo = rows[0];  // ordered by function name
  const UsageRow& resize = rows[1];

  EXPECT_EQ(echo.function, "echo");
  EXPECT_EQ(echo.invocations, 1);
  EXPECT_EQ(echo.errors, 0);
  EXPECT_EQ(echo.billed_ms, 1000);
  EXPECT_DOUBLE_EQ(echo.gb_seconds, 1.0);
  EXPECT_EQ(echo.avg_duration_us, 1'000'000);

  EXPECT_EQ(resize.function, "resize");
  EXPECT_EQ(resize.invocations, 6);
  EXPECT_EQ(resize.errors, 3);
  EXPECT_EQ(resize.throttles, 1);
  EXPECT_EQ(resize.cold_starts, 2);
  const int64_t billed = 2 + 10 + 3000 + 1 + 1 + 1;
  EXPECT_EQ(resize.billed_ms, billed);
  EXPECT_DOUBLE_EQ(resize.gb_seconds, billed * 128 / 1024.0 / 1000.0);
  EXPECT_EQ(resize.avg_duration_us, (1500 + 10'000 + 3'000'000 + 1 + 0 + 999) / 6);
}

TEST_F(MeterTest, GbSecondsUseEachRecordsMemory) {
  meter_->Add(Rec("a", "f", "success", kT0, 100'000, 256));   // 100 ms x 256 MB
  meter_->Add(Rec("b", "f", "success", kT0, 200'000, 2048));  // 200 ms x 2048 MB
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].billed_ms, 300);
  EXPECT_DOUBLE_EQ(rows[0].gb_seconds, (100.0 * 256 + 200.0 * 2048) / 1024.0 / 1000.0);
}

TEST_F(MeterTest, SameRequestIdIsCountedOnceInOneBatch) {
  meter_->Add(Rec("dup", "f", "success", kT0, 1000));
  meter_->Add(Rec("dup", "f", "error", kT0, 50'000));  // a replay: must not bill again
  ASSERT_TRUE(meter_->Flush().ok());
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 1);
  EXPECT_EQ(rows[0].errors, 0);  // the first record wins
  EXPECT_EQ(rows[0].billed_ms, 1);
}

// The writer inserts 64, then 8, then 1 rows per statement: a batch of 139 invocations (two
// full statements, one of 8, three single rows) with usage amendments and a duplicate among them
// keeps every row's figures, each amendment, and the first of the duplicates.
TEST_F(MeterTest, MultiRowInsertsKeepEveryRowAndAmendment) {
  constexpr int kCalls = 139;
  int64_t billed = 0, prompt = 0, completion = 0, cold = 0;
  for (int i = 0; i < kCalls; ++i) {
    Record r = Rec("r" + std::to_string(i), i % 2 ? "odd" : "even", "success", kT0 + i,
                   1000 * i + 1, 128 + i, i % 7 == 0);
    r.forked = i % 14 == 0;
    r.cpu_us = i;
    billed += r.billed_ms;
    cold += r.cold_start ? 1 : 0;
    meter_->Add(std::move(r));
    if (i % 10 == 3) {
      meter_->AddUsage("r" + std::to_string(i), i % 2 ? "odd" : "even", kT0 + i, i, 2 * i);
      prompt += i;
      completion += 2 * i;
    }
    if (i == 70) meter_->Add(Rec("r5", "odd", "error", kT0, 99'000'000));  // a replayed id
  }
  auto samples = meter_->Samples("", kT0, kT0 + kCalls);
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();
  ASSERT_EQ(samples->size(), static_cast<size_t>(kCalls));
  Sums sums;
  int64_t cpu = 0, memory = 0, forked = 0;
  for (const Sample& s : *samples) {
    AddSample(s, sums);
    cpu += s.cpu_us;
    memory += s.memory_mb;
    forked += s.forked ? 1 : 0;
    const int i = static_cast<int>(s.start_us - kT0);
    EXPECT_EQ(s.function, i % 2 ? "odd" : "even");
    EXPECT_EQ(s.memory_mb, 128 + i);
    EXPECT_EQ(s.status, "success") << "r" << i;
  }
  EXPECT_EQ(sums.invocations, kCalls);
  EXPECT_EQ(sums.billed_ms, billed);
  EXPECT_EQ(sums.cold_starts, cold);
  EXPECT_EQ(sums.prompt_tokens, prompt);
  EXPECT_EQ(sums.completion_tokens, completion);
  EXPECT_EQ(cpu, kCalls * (kCalls - 1) / 2);
  EXPECT_EQ(forked, (kCalls + 13) / 14);
}

TEST_F(MeterTest, SameRequestIdIsCountedOnceAcrossBatchesAndReopens) {
  meter_->Add(Rec("dup", "f", "success", kT0, 1000));
  ASSERT_TRUE(meter_->Flush().ok());
  meter_->Add(Rec("dup", "f", "success", kT0, 1000));
  ASSERT_TRUE(meter_->Flush().ok());
  Reopen();
  meter_->Add(Rec("dup", "f", "success", kT0, 1000));
  meter_->Add(Rec("other", "f", "success", kT0, 1000));
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 2);
}

TEST_F(MeterTest, UsageFiltersByFunction) {
  meter_->Add(Rec("1", "alpha", "success", kT0, 1000));
  meter_->Add(Rec("2", "beta", "success", kT0, 1000));
  meter_->Add(Rec("3", "beta", "success", kT0, 1000));
  meter_->Add(Rec("4", "alphabet", "success", kT0, 1000));

  auto beta = UsageOrDie("beta", 0, kAllTime);
  ASSERT_EQ(beta.size(), 1u);
  EXPECT_EQ(beta[0].function, "beta");
  EXPECT_EQ(beta[0].invocations, 2);

  auto alpha = UsageOrDie("alpha", 0, kAllTime);  // exact match, not a prefix
  ASSERT_EQ(alpha.size(), 1u);
  EXPECT_EQ(alpha[0].invocations, 1);

  EXPECT_TRUE(UsageOrDie("gamma", 0, kAllTime).empty());
  EXPECT_EQ(UsageOrDie("", 0, kAllTime).size(), 3u);
}

// The range is [from, to) on the start timestamp.
TEST_F(MeterTest, UsageFiltersByTimeRange) {
  meter_->Add(Rec("before", "f", "success", kT0 - 1, 1000));
  meter_->Add(Rec("at-from", "f", "success", kT0, 2000));
  meter_->Add(Rec("inside", "f", "success", kT0 + 500, 3000));
  meter_->Add(Rec("at-to", "f", "success", kT0 + 1000, 4000));

  struct RangeCase {
    const char* name;
    int64_t from, to;
    int64_t invocations, billed_ms;
  };
  const RangeCase cases[] = {
      {"HalfOpenRange", kT0, kT0 + 1000, 2, 2 + 3},
      {"FromIsInclusive", kT0, kT0 + 1, 1, 2},
      {"ToIsExclusive", kT0 + 1000, kT0 + 1001, 1, 4},
      {"Everything", 0, kAllTime, 4, 1 + 2 + 3 + 4},
  };
  for (const RangeCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto rows = UsageOrDie("f", c.from, c.to);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].invocations, c.invocations);
    EXPECT_EQ(rows[0].billed_ms, c.billed_ms);
  }
  EXPECT_TRUE(UsageOrDie("f", kT0 + 1001, kAllTime).empty());
  EXPECT_TRUE(UsageOrDie("f", kT0, kT0).empty());
}

TEST_F(MeterTest, FlushedRecordsSurviveReopening) {
  meter_->Add(Rec("a", "f", "success", kT0, 1500, 512, true));
  meter_->Add(Rec("b", "f", "crash", kT0 + 1, 2500, 512));
  ASSERT_TRUE(meter_->Flush().ok());
  Reopen();
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 2);
  EXPECT_EQ(rows[0].errors, 1);
  EXPECT_EQ(rows[0].cold_starts, 1);
  EXPECT_EQ(rows[0].billed_ms, 2 + 3);
}

// The destructor flushes: records added just before shutdown are not lost.
TEST_F(MeterTest, DestructorCommitsPendingRecords) {
  for (int i = 0; i < 1000; ++i) {
    meter_->Add(Rec("req-" + std::to_string(i), "f", "success", kT0 + i, 1000));
  }
  Reopen();
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 1000);
  EXPECT_EQ(rows[0].billed_ms, 1000);
}

TEST_F(MeterTest, ManyRecordsAcrossBatchesAreAllCommitted) {
  constexpr int kRecords = 2000;  // several writer batches
  for (int i = 0; i < kRecords; ++i) {
    meter_->Add(Rec("req-" + std::to_string(i), i % 2 ? "odd" : "even",
                    i % 10 == 0 ? "error" : "success", kT0 + i, 1000));
  }
  ASSERT_TRUE(meter_->Flush().ok());
  EXPECT_EQ(meter_->pending(), 0);
  auto rows = UsageOrDie("", 0, kAllTime);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].function, "even");
  EXPECT_EQ(rows[0].invocations + rows[1].invocations, kRecords);
  EXPECT_EQ(rows[0].errors, kRecords / 10);  // every tenth is even
  EXPECT_EQ(rows[1].errors, 0);
}

// ---------------------------------------------------------------------------------------------
// Tenants and the observer.

TEST_F(MeterTest, TenantComesFromTheFunctionNameUnlessSet) {
  meter_->Add(Rec("1", "hello", "success", kT0, 1000));
  meter_->Add(Rec("2", "acme.hello", "success", kT0, 1000));
  meter_->Add(Rec("3", "acme.resize", "error", kT0, 1000));
  Record explicit_tenant = Rec("4", "hello", "success", kT0, 1000);
  explicit_tenant.tenant = "zeta";
  meter_->Add(explicit_tenant);

  auto all = meter_->Samples("", 0, kAllTime);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  std::multiset<std::string> tenants;
  for (const Sample& s : *all) tenants.insert(s.tenant);
  EXPECT_EQ(tenants, (std::multiset<std::string>{"acme", "acme", "default", "zeta"}));

  struct Case {
    std::string function, tenant;
    size_t rows;
  };
  const Case cases[] = {
      {"", "acme", 2},      {"", "default", 1}, {"acme.hello", "acme", 1},
      {"hello", "acme", 0}, {"", "nobody", 0},  {"hello", "", 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.function + "/" + c.tenant);
    auto rows = meter_->Samples(c.function, 0, kAllTime, c.tenant);
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(rows->size(), c.rows);
    for (const Sample& s : *rows) {
      if (!c.tenant.empty()) {
        EXPECT_EQ(s.tenant, c.tenant);
      }
    }
  }
}

TEST_F(MeterTest, ObserverSeesEveryRecordWithItsTenant) {
  std::vector<std::pair<std::string, std::string>> seen;  // request id, tenant
  meter_->SetObserver([&](const Record& r) { seen.emplace_back(r.request_id, r.tenant); });
  meter_->Add(Rec("a", "acme.f", "success", kT0, 1000));
  meter_->Add(Rec("b", "f", "throttled", kT0, 0));
  EXPECT_EQ(seen,
            (std::vector<std::pair<std::string, std::string>>{{"a", "acme"}, {"b", "default"}}));
  meter_->SetObserver(nullptr);
  meter_->Add(Rec("c", "f", "success", kT0, 1000));
  EXPECT_EQ(seen.size(), 2u);
  ASSERT_TRUE(meter_->Flush().ok());
  EXPECT_EQ(meter_->Samples("", 0, kAllTime)->size(), 3u);
}

// ---------------------------------------------------------------------------------------------
// The journal: a record whose Add() returned survives a kill -9.

class MeterJournalTest : public MeterTest {
 protected:
  // `sharded`: each thread runs as a shard of its own (its own stage buffer and segments).
  void KillNineMidLoad(bool staged, bool sharded = false);
  // Runs `body` against a fresh Meter on the same database in a child process that then
  // SIGKILLs itself: no destructor, no final flush, exactly what a kill -9 leaves.
  void AddThenCrash(const std::function<void(Meter&)>& body) {
    meter_.reset();  // one meter per database; and fork from a single-threaded process
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto m = Meter::Open(db_path_);
      if (!m.ok()) ::_exit(2);
      body(**m);
      ::raise(SIGKILL);
      ::_exit(3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  }

  std::vector<fs::path> Segments() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(Meter::JournalDir(db_path_))) {
      if (e.path().extension() == ".jnl") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Request id -> rows, read straight from the table (the primary key would hide a double
  // count from COUNT(*) queries only if it were missing, which is what this checks).
  std::vector<Sample> AllSamples() {
    auto rows = meter_->Samples("", 0, kAllTime);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : std::vector<Sample>{};
  }
};

std::string Id(int i) { return "req-" + std::to_string(i); }

TEST_F(MeterJournalTest, KillNineLosesNoAddedRecord) {
  constexpr int kRecords = 1500;  // several writer batches: some commit before the kill
  AddThenCrash([](Meter& m) {
    for (int i = 0; i < kRecords; ++i) {
      m.Add(Rec(Id(i), i % 3 ? "f" : "acme.f", "success", kT0 + i, 1000 + i));
      if (i == 700) (void)m.Flush();  // part of the ledger committed, part only journaled
    }
  });
  EXPECT_FALSE(Segments().empty());
  Reopen();
  EXPECT_EQ(meter_->pending(), 0);
  auto rows = UsageOrDie("", 0, kAllTime);
  int64_t total = 0;
  for (const auto& r : rows) total += r.invocations;
  EXPECT_EQ(total, kRecords);
  std::set<std::string> ids;
  int64_t acme = 0;
  for (const auto& s : AllSamples()) {
    ids.insert(s.function + "/" + std::to_string(s.start_us));
    acme += s.tenant == "acme";
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kRecords));
  EXPECT_EQ(acme, (kRecords + 2) / 3);
  // Replayed segments are gone; only the new meter's own (empty) segment is left.
  EXPECT_EQ(Segments().size(), 1u);
}

// Killed while several threads add and the writer commits and rotates segments: every record
// whose Add() returned (or, `staged`, that was staged before a Sync() that returned, the way the
// pool answers a loop turn's calls) is in the ledger; of the ones in flight, at most the ones
// each thread was adding since.
void MeterJournalTest::KillNineMidLoad(bool staged, bool sharded) {
  constexpr int kThreads = 4;
  constexpr int64_t kPerSync = 4;  // staged records per Sync() when `staged`
  const int64_t in_flight = staged ? kPerSync : 1;
  constexpr int64_t kMaxPerThread = 10'000'000;
  constexpr int64_t kKillAfter = 3000;  // per thread: several batches committed by then
  meter_.reset();
  // The child's progress, in memory both processes see: the last index each thread's Add()
  // returned for.
  void* shared = ::mmap(nullptr, sizeof(std::atomic<int64_t>) * kThreads, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* acked = static_cast<std::atomic<int64_t>*>(shared);
  for (int t = 0; t < kThreads; ++t) new (&acked[t]) std::atomic<int64_t>(-1);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto m = Meter::Open(db_path_);
    if (!m.ok()) ::_exit(2);
    std::vector<std::thread> adders;
    for (int t = 0; t < kThreads; ++t) {
      adders.emplace_back([&, t] {
        if (sharded) SetCurrentShard(t);
        StageTicket ticket;
        for (int64_t i = 0; i < kMaxPerThread; ++i) {
          Record rec = Rec(Id(t) + "-" + std::to_string(i), "f", "success",
                           kT0 + t * kMaxPerThread + i, 1000);
          if (!staged) {
            (*m)->Add(std::move(rec));
            acked[t].store(i, std::memory_order_release);
          } else {
            ticket = (*m)->Stage(std::move(rec));
            if (i % kPerSync == kPerSync - 1) {
              if (sharded) {
                (*m)->Sync(ticket);
              } else {
                (*m)->Sync();
              }
              acked[t].store(i, std::memory_order_release);
            }
          }
        }
      });
    }
    for (auto& a : adders) a.join();
    ::_exit(3);  // never killed: the test fails below
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  // Killed once the writer has also sealed segments (rotated twice) under the adders' feet.
  auto all_past = [&] {
    for (int t = 0; t < kThreads; ++t) {
      if (acked[t].load(std::memory_order_acquire) < kKillAfter) return false;
    }
    auto segments = Segments();
    return !segments.empty() && segments.back().filename().string() >= "00000000000000000003";
  };
  while (!all_past() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child status " << status;
  std::vector<int64_t> last(kThreads);
  for (int t = 0; t < kThreads; ++t) last[t] = acked[t].load();
  ::munmap(shared, sizeof(std::atomic<int64_t>) * kThreads);
  ASSERT_TRUE(std::all_of(last.begin(), last.end(), [](int64_t v) { return v >= kKillAfter; }));

  Reopen();
  std::vector<std::vector<bool>> present(kThreads);
  for (int t = 0; t < kThreads; ++t) present[t].assign(last[t] + 1 + in_flight, false);
  for (const Sample& s : AllSamples()) {
    const int64_t t = (s.start_us - kT0) / kMaxPerThread;
    const int64_t i = (s.start_us - kT0) % kMaxPerThread;
    ASSERT_LT(t, kThreads);
    ASSERT_LE(i, last[t] + in_flight) << "thread " << t << " never reached record " << i;
    ASSERT_FALSE(present[t][i]) << "billed twice: thread " << t << " record " << i;
    present[t][i] = true;
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int64_t i = 0; i <= last[t]; ++i) {
      ASSERT_TRUE(present[t][i]) << "lost: thread " << t << " record " << i;
    }
  }
}

TEST_F(MeterJournalTest, KillNineMidLoadLosesNoAcknowledgedRecord) { KillNineMidLoad(false); }

TEST_F(MeterJournalTest, KillNineMidLoadLosesNoStagedRecordOnceSynced) { KillNineMidLoad(true); }

TEST_F(MeterJournalTest, KillNineMidLoadLosesNoStagedRecordOnceSyncedPerShard) {
  KillNineMidLoad(true, true);
}

TEST_F(MeterJournalTest, KillNineMidLoadLosesNoAcknowledgedRecordPerShard) {
  KillNineMidLoad(false, true);
}

// A shard's records are journaled by Sync(ticket) on another shard's thread (the client's
// connection lives on another shard than the instance that answered): a kill -9 right after
// loses none.
TEST_F(MeterJournalTest, SyncOfATicketOnAnotherShardJournalsItsBuffer) {
  constexpr int kRecords = 300;
  AddThenCrash([](Meter& m) {
    SetCurrentShard(0);
    StageTicket last;
    std::thread stager([&] {
      SetCurrentShard(3);
      for (int i = 0; i < kRecords; ++i) last = m.Stage(Rec(Id(i), "f", "success", kT0 + i, 1000));
    });
    stager.join();
    EXPECT_EQ(last.slot, 3);
    m.Sync(last);
  });
  Reopen();
  EXPECT_EQ(UsageOrDie("f", 0, kAllTime).at(0).invocations, kRecords);
}

// A usage record added on one shard amends an invocation staged on another, whether the writer
// takes both in one batch (the usage record's buffer comes first) or a restart replays them from
// two segments (the usage record's segment is the older).
TEST_F(MeterJournalTest, UsageOnAnotherShardAmendsItsInvocation) {
  auto tokens_of = [&](const std::string& id) {
    int64_t prompt = -1;
    for (const Sample& s : AllSamples()) {
      if (s.start_us == kT0 + std::stoll(id.substr(1))) prompt = s.prompt_tokens;
    }
    return prompt;
  };
  auto on_shard = [](int shard, const std::function<void()>& body) {
    std::thread t([&] {
      SetCurrentShard(shard);
      body();
    });
    t.join();
  };
  on_shard(2, [&] { meter_->Sync(meter_->Stage(Rec("a1", "chat", "success", kT0 + 1, 1000))); });
  on_shard(1, [&] { meter_->AddUsage("a1", "chat", kT0 + 2, 7, 8); });
  ASSERT_TRUE(meter_->Flush().ok());
  EXPECT_EQ(tokens_of("a1"), 7);

  AddThenCrash([&](Meter& m) {
    on_shard(1, [&] { m.Add(Rec("a3", "other", "success", kT0 + 3, 1000)); });  // its segment
    on_shard(2, [&] { m.Sync(m.Stage(Rec("a4", "chat", "success", kT0 + 4, 1000))); });
    on_shard(1, [&] { m.AddUsage("a4", "chat", kT0 + 5, 9, 10); });
  });
  Reopen();
  EXPECT_EQ(tokens_of("a4"), 9);
}

// A turn's records staged on one thread are journaled by a Sync() on another (the thread that
// writes the answers), with no Add() and no writer pass between: a kill -9 right after loses
// none. Records staged after the last Sync() may be lost: the kill comes before any answer.
TEST_F(MeterJournalTest, SyncOnAnotherThreadJournalsWhatWasStaged) {
  constexpr int kRecords = 300;
  AddThenCrash([](Meter& m) {
    std::thread stager([&] {
      for (int i = 0; i < kRecords; ++i) m.Stage(Rec(Id(i), "f", "success", kT0 + i, 1000));
    });
    stager.join();
    m.Sync();
    m.Sync();  // nothing new: returns without writing
  });
  Reopen();
  EXPECT_EQ(UsageOrDie("f", 0, kAllTime).at(0).invocations, kRecords);
}

// Sync() writes the staged lines; until then (and until the writer's next pass) the journal
// does not hold them.
TEST_F(MeterJournalTest, StagedLinesReachTheJournalAtSync) {
  auto journal_lines = [&] {
    size_t lines = 0;
    for (const auto& seg : Segments()) {
      std::ifstream in(seg, std::ios::binary);
      const std::string data((std::istreambuf_iterator<char>(in)), {});
      lines += static_cast<size_t>(std::count(data.begin(), data.end(), '\n'));
    }
    return lines;
  };
  ASSERT_EQ(journal_lines(), 0u);
  for (int i = 0; i < 3; ++i) meter_->Stage(Rec(Id(i), "f", "success", kT0 + i, 1000));
  meter_->Sync();
  EXPECT_EQ(journal_lines(), 3u);
  ASSERT_TRUE(meter_->Flush().ok());
  EXPECT_EQ(UsageOrDie("f", 0, kAllTime).at(0).invocations, 3);
}

TEST_F(MeterJournalTest, TornLastLineIsSkipped) {
  AddThenCrash([](Meter& m) {
    for (int i = 0; i < 10; ++i) m.Add(Rec(Id(i), "f", "success", kT0 + i, 1000));
  });
  // The write of an eleventh record was cut short by the kill: even a whole record without
  // its '\n' was never acknowledged, so it must not be billed.
  std::string torn;
  EncodeJournalLine(Rec("torn", "f", "success", kT0 + 10, 1000), torn);
  torn.pop_back();
  auto segments = Segments();
  ASSERT_FALSE(segments.empty());
  std::ofstream(segments.back(), std::ios::app | std::ios::binary) << torn;
  Reopen();
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 10);
  for (const auto& s : AllSamples()) EXPECT_NE(s.start_us, kT0 + 10);
}

// A kill in the middle of a copy into the mapped segment can leave any of its bytes unstored
// (zeros, as the segment's reserved blocks read), even bytes after its '\n': such a line is
// skipped and the lines around it are replayed.
TEST_F(MeterJournalTest, LineWithUnstoredBytesIsSkipped) {
  AddThenCrash([](Meter& m) { m.Add(Rec("a", "f", "success", kT0, 1000)); });
  std::string hole;
  EncodeJournalLine(Rec("hole", "f", "success", kT0 + 1, 1000), hole);
  hole[4] = '\0';  // inside its request id, where a NUL would otherwise read as a byte of it
  std::string next;
  EncodeJournalLine(Rec("b", "f", "success", kT0 + 2, 1000), next);
  {
    const fs::path seg = Segments().back();
    std::ifstream in(seg, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), {});
    const size_t end = data.find_last_not_of('\0') + 1;  // after "a"'s line
    ASSERT_EQ(data[end - 1], '\n');
    std::fstream out(seg, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(end));
    out << hole << next;
  }
  Reopen();
  std::set<int64_t> starts;
  for (const auto& s : AllSamples()) starts.insert(s.start_us);
  EXPECT_EQ(starts, (std::set<int64_t>{kT0, kT0 + 2}));
}

TEST_F(MeterJournalTest, MalformedLinesAreSkippedAndTheRestReplayed) {
  AddThenCrash([](Meter& m) { m.Add(Rec("a", "f", "success", kT0, 1000)); });
  {
    std::ofstream out(Segments().back(), std::ios::app | std::ios::binary);
    out << "garbage\n";
    std::string line;
    EncodeJournalLine(Rec("b", "f", "success", kT0, 1000), line);
    out << line;
  }
  Reopen();
  EXPECT_EQ(AllSamples().size(), 2u);
}

// A crash after a batch commits but before its segment is deleted replays rows that exist.
TEST_F(MeterJournalTest, ReplayIsIdempotent) {
  AddThenCrash([](Meter& m) {
    for (int i = 0; i < 100; ++i) m.Add(Rec(Id(i), "f", "success", kT0 + i, 1000));
  });
  const fs::path backup = dir_ + "/backup";
  fs::create_directory(backup);
  for (const auto& seg : Segments()) fs::copy_file(seg, backup / seg.filename());
  Reopen();
  meter_->Add(Rec("after", "f", "success", kT0 + 100, 1000));
  ASSERT_TRUE(meter_->Flush().ok());
  meter_.reset();
  for (const auto& seg : fs::directory_iterator(backup)) {
    fs::copy_file(seg.path(), fs::path(Meter::JournalDir(db_path_)) / seg.path().filename());
  }
  Reopen();
  auto rows = UsageOrDie("f", 0, kAllTime);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].invocations, 101);
  EXPECT_EQ(rows[0].billed_ms, 101);
}

TEST_F(MeterJournalTest, CleanStopLeavesNoSegments) {
  for (int i = 0; i < 600; ++i) meter_->Add(Rec(Id(i), "f", "success", kT0 + i, 1000));
  meter_.reset();
  EXPECT_TRUE(Segments().empty());
  Reopen();
  EXPECT_EQ(UsageOrDie("f", 0, kAllTime).at(0).invocations, 600);
}

TEST_F(MeterJournalTest, CommittedSegmentsAreDeletedWhileRunning) {
  // Enough lines to fill a segment (256 KiB) many times over, in many batches.
  for (int i = 0; i < 30'000; ++i) {
    meter_->Add(Rec(Id(i), "f", "error", kT0 + i, 1000));
    if (i % 1000 == 999) {
      ASSERT_TRUE(meter_->Flush().ok());
    }
  }
  // The writer deletes the sealed segments before it reports the commit: only the segment
  // Add() writes to is left, and it is not the first one.
  auto segments = Segments();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_GT(segments[0].filename().string(), "00000000000000000002.jnl");
  EXPECT_EQ(UsageOrDie("f", 0, kAllTime).at(0).invocations, 30'000);
}

TEST_F(MeterJournalTest, SecondMeterOnTheSameDatabaseIsRefused) {
  auto second = Meter::Open(db_path_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another process"), std::string::npos)
      << second.status().ToString();
}

// GET /v1/functions/{name}/stats: buckets aggregated in SQL, percentiles by nearest rank as
// meter::Percentile computes them; billed time that is not an invocation is left out.
TEST_F(MeterTest, SeriesBucketsCountsAndPercentilesInSql) {
  constexpr int64_t kStep = 60'000'000;
  const int64_t from = 1000 * kStep;
  std::vector<int64_t> durations;
  for (int k = 1; k <= 100; ++k) {
    // Added out of order: the SQL must sort each bucket's durations itself.
    const int64_t d = ((k * 37) % 100 + 1) * 1000;
    durations.push_back(d);
    meter_->Add(Rec("a" + std::to_string(k), "f", "success", from + k * 1000, d, 128, k == 1));
  }
  Record idle = Rec("idle", "f", "gpu_idle", from + 4 * kStep, 999'000'000);
  meter_->Add(idle);
  meter_->Add(Rec("init", "f", "init_error", from + 5, 888'000'000));
  meter_->Add(Rec("other", "g", "success", from + 5, 7'000'000));
  meter_->Add(Rec("before", "f", "success", from - 1, 7'000'000));
  meter_->Add(Rec("after", "f", "success", from + 3 * kStep, 7'000'000));
  int i = 0;
  for (const char* status : {"error", "timeout", "crash", "throttled"}) {
    meter_->Add(Rec("b" + std::to_string(i), "f", status, from + 2 * kStep + i, 5000));
    ++i;
  }

  auto series = meter_->Series("f", from, from + 3 * kStep, kStep);
  ASSERT_TRUE(series.ok()) << series.status().ToString();
  ASSERT_EQ(series->size(), 2u);  // bucket 1 had no calls
  const SeriesBucket& b0 = (*series)[0];
  EXPECT_EQ(b0.index, 0);
  EXPECT_EQ(b0.calls, 100);
  EXPECT_EQ(b0.errors, 0);
  EXPECT_EQ(b0.cold_starts, 1);
  EXPECT_EQ(b0.duration_us, 5050 * 1000);
  std::sort(durations.begin(), durations.end());
  EXPECT_EQ(b0.p50_us, Percentile(durations, 50));
  EXPECT_EQ(b0.p99_us, Percentile(durations, 99));
  EXPECT_EQ(b0.p50_us, 50'000);
  EXPECT_EQ(b0.p99_us, 99'000);
  const SeriesBucket& b2 = (*series)[1];
  EXPECT_EQ(b2.index, 2);
  EXPECT_EQ(b2.calls, 4);
  EXPECT_EQ(b2.errors, 3);
  EXPECT_EQ(b2.throttles, 1);
  EXPECT_EQ(b2.p50_us, 5000);
  EXPECT_EQ(b2.p99_us, 5000);

  // One bucket over the window: the totals.
  auto total = meter_->Series("f", from, from + 3 * kStep, 3 * kStep);
  ASSERT_TRUE(total.ok());
  ASSERT_EQ(total->size(), 1u);
  EXPECT_EQ(total->front().calls, 104);

  auto last = meter_->LastCalled("f");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, from + 3 * kStep);  // "after"; not the later-billed gpu_idle record
  auto none = meter_->LastCalled("nobody");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
}

// Starts by kind come from the ledger's start_kind column as it is, grouped in SQL: warm calls,
// forked and full cold starts, a cold start from before start kinds ('' : full), and a kind
// this code never writes (another start path's) all come back; throttles started nothing.
TEST_F(MeterTest, StartKindsGroupTheLedgersColumn) {
  constexpr int64_t kStep = 60'000'000;
  const int64_t from = 1000 * kStep;
  meter_->Add(Rec("w1", "f", "success", from + 1, 1000));
  meter_->Add(Rec("w2", "f", "error", from + 2, 1000));
  Record fork = Rec("k1", "f", "success", from + 3, 1000, 128, true);
  fork.forked = true;
  meter_->Add(fork);
  meter_->Add(Rec("c1", "f", "success", from + kStep, 1000, 128, true));
  meter_->Add(Rec("t1", "f", "throttled", from + kStep + 1, 0));
  meter_->Add(Rec("g1", "g", "success", from + 4, 1000, 128, true));
  ASSERT_TRUE(meter_->Flush().ok());
  {
    auto db = store::Db::Open(db_path_);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(
        (*db)
            ->Exec("INSERT INTO invocations (request_id, function, version, start_us, "
                   "end_us, duration_us, billed_ms, memory_mb, max_memory_used_mb, cold_start, "
                   "init_us, status, error_type, bytes_in, bytes_out, start_kind) "
                   "VALUES ('r1', 'f', '1', " +
                   std::to_string(from + kStep + 2) +
                   ", 0, 5, 1, 128, 0, 1, 0, 'success', '', 0, 0, 'restore'), "
                   "('o1', 'f', '1', " +
                   std::to_string(from + 5) + ", 0, 5, 1, 128, 0, 1, 0, 'success', '', 0, 0, '')")
            .ok());
  }
  auto kinds = meter_->StartKinds("f", from, from + 2 * kStep, kStep);
  ASSERT_TRUE(kinds.ok()) << kinds.status().ToString();
  std::vector<std::string> got;
  for (const auto& k : *kinds) {
    got.push_back(std::to_string(k.index) + " " + k.kind + " " + std::to_string(k.count));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0 fork 1", "0 full 1", "0 warm 2", "1 full 1",
                                           "1 restore 1"}));
}

TEST(MeterOpenTest, UnopenablePathIsAnError) {
  auto m = Meter::Open("/nonexistent-thaw-dir/sub/thaw.db");
  EXPECT_FALSE(m.ok());
}

}  // namespace
}  // namespace thaw::meter

namespace thaw::meter {
namespace {

// A failed init is billed for its time (no request charge) and counts CPU, not an invocation.
TEST(InitFailureSampleTest, IsBilledButNotAnInvocation) {
  Sample init{.function = "f",
              .duration_us = 150'000,
              .billed_ms = 150,
              .memory_mb = 1024,
              .cpu_us = 90'000,
              .status = "init_error",
              .tenant = ""};
  Sums sums;
  AddSample(init, sums);
  EXPECT_EQ(sums.invocations, 0);
  EXPECT_EQ(sums.init_failures, 1);
  EXPECT_EQ(sums.billed_ms, 150);
  EXPECT_EQ(sums.cpu_us, 90'000);
  EXPECT_EQ(sums.duration_us, 0);  // no invocation's duration
  PriceSheet prices;
  EXPECT_EQ(LambdaCostPico(init, prices), 150LL * prices.gb_second_pico / 1000);
}

}  // namespace
}  // namespace thaw::meter

// Meter (meter/meter.h): billing arithmetic, and the usage ledger on a real SQLite file in a
// temp folder. Flush() is the synchronisation point, so no test waits on the writer's timer.
#include "meter/meter.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

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

  std::vector<UsageRow> UsageOrDie(const std::string& function, int64_t from, int64_t to) {
    auto rows = meter_->Usage(function, from, to);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : std::vector<UsageRow>{};
  }

  std::string dir_;
  std::string db_path_;
  std::unique_ptr<Meter> meter_;
};

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

TEST(MeterOpenTest, UnopenablePathIsAnError) {
  auto m = Meter::Open("/nonexistent-thaw-dir/sub/thaw.db");
  EXPECT_FALSE(m.ok());
}

}  // namespace
}  // namespace thaw::meter

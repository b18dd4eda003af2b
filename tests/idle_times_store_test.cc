// IdleTimesStore (pool/idle_times_store.h) and the histogram's text form: what a pool saves is
// what the next server's pool of the function loads, and text that is not a histogram is refused.
#include "pool/idle_times_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "common/files.h"

namespace thaw::pool {
namespace {

constexpr int64_t kMinute = 60'000'000;

TEST(IdleHistogramTextTest, RoundTrips) {
  IdleHistogram h;
  for (int i = 0; i < 20; ++i) h.Record(14 * kMinute + 54'000'000);
  h.Record(0);
  h.Record(239 * kMinute);
  h.Record(300 * kMinute);  // out of bounds
  EXPECT_EQ(h.Encode(), "0:1,14:20,239:1|1");
  auto back = IdleHistogram::Decode(h.Encode());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->in_bounds(), 22);
  EXPECT_EQ(back->out_of_bounds(), 1);
  EXPECT_EQ(back->bin(14), 20);
  EXPECT_EQ(back->PercentileBin(50), 14);
  EXPECT_EQ(back->Encode(), h.Encode());
  EXPECT_EQ(IdleHistogram().Encode(), "|0");
  EXPECT_EQ(IdleHistogram::Decode("|0")->total(), 0);
}

TEST(IdleHistogramTextTest, RefusesWhatIsNotAHistogram) {
  for (const char* bad : {"", "1:2", "1:2|", "|x", "240:1|0", "-1:1|0", "1:-1|0", "1:2,|0",
                          ",1:2|0", "1-2|0", "1:2|0|0", "a:1|0", "1:1 |0"}) {
    EXPECT_FALSE(IdleHistogram::Decode(bad).has_value()) << bad;
  }
}

class IdleTimesStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw-idle-times-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::unique_ptr<IdleTimesStore> Open() {
    auto s = IdleTimesStore::Open(dir_ + "/thaw.db");
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::string dir_;
};

TEST_F(IdleTimesStoreTest, SavedHistogramOutlivesTheStore) {
  IdleHistogram h;
  for (int i = 0; i < 12; ++i) h.Record(2 * kMinute + 1);
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto none = store->Load("f", true);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    ASSERT_TRUE(store->Save("f", true, h, 1).ok());
    h.Record(0);  // saved again: the newer one wins
    ASSERT_TRUE(store->Save("f", true, h, 2).ok());
    ASSERT_TRUE(store->Save("f", false, IdleHistogram(), 2).ok());
  }
  auto store = Open();  // a restarted server
  ASSERT_NE(store, nullptr);
  auto latest = store->Load("f", true);
  ASSERT_TRUE(latest.ok());
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->Encode(), "0:1,2:12|0");
  auto by_number = store->Load("f", false);
  ASSERT_TRUE(by_number.ok() && by_number->has_value());
  EXPECT_EQ((*by_number)->total(), 0);
  auto other = store->Load("g", true);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

}  // namespace
}  // namespace thaw::pool

// Instance uids: the free list and the host-wide leases (sandbox/uid_pool.h).
#include "sandbox/uid_pool.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <set>

#include "common/files.h"

namespace thaw::sandbox {
namespace {

TEST(UidPoolTest, AUidIsNeverHandedOutTwiceWhileTaken) {
  UidPool pool({10, 11, 12});
  std::set<uid_t> taken;
  for (int i = 0; i < 3; ++i) taken.insert(*pool.Take());
  EXPECT_EQ(taken, (std::set<uid_t>{10, 11, 12}));
  EXPECT_FALSE(pool.Take().has_value());  // all in use: none, never a repeat
  pool.Give(11);
  EXPECT_EQ(pool.Take(), 11u);
}

TEST(UidPoolTest, AGivenBackUidIsReusedLast) {
  UidPool pool({10, 11, 12});
  uid_t first = *pool.Take();
  pool.Give(first);
  EXPECT_EQ(pool.Take(), 11u);
  EXPECT_EQ(pool.Take(), 12u);
  EXPECT_EQ(pool.Take(), first);
}

TEST(UidPoolTest, GivingBackAUidNotTakenIsABrokenInvariant) {
  EXPECT_DEATH(
      {
        UidPool pool({10});
        pool.Give(10);
      },
      "given back but not taken");
}

class UidLeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw_uids.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::string dir_;
};

TEST_F(UidLeaseTest, TwoServersOnOneHostGetDisjointUids) {
  auto a = LeaseInstanceUids(dir_, 1500);  // two blocks
  ASSERT_TRUE(a.ok()) << a.status().message();
  auto b = LeaseInstanceUids(dir_, 10);
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(a->Describe(), "200000-201499");
  EXPECT_EQ(b->Describe(), "202000-202009");      // the next free block, not a's second
  a = Status(StatusCode::kInternal, "released");  // a's server stopped: its blocks are free
  auto c = LeaseInstanceUids(dir_, 1000);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->Describe(), "200000-200999");
}

TEST_F(UidLeaseTest, ABadCountIsRefused) {
  EXPECT_FALSE(LeaseInstanceUids(dir_, 0).ok());
  EXPECT_FALSE(LeaseInstanceUids(dir_ + "/missing/deeper", 1).ok());
}

}  // namespace
}  // namespace thaw::sandbox

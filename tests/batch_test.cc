// Batches on the wire (pool/batch.h): the batch event, its client context, splitting the
// handler's answer per caller (per-item errors, whole-batch failures) and the metering shares.
#include "pool/batch.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace thaw::pool {
namespace {

TEST(BatchEventTest, ConcatenatesEventsInOrder) {
  EXPECT_EQ(BatchEvent({R"({"a":1})", "[2]", "3"}), R"({"batch":[{"a":1},[2],3]})");
  EXPECT_EQ(BatchEvent({"{}"}), R"({"batch":[{}]})");
}

TEST(BatchEventTest, NonJsonEventTravelsAsAStringWithoutSpoilingTheOthers) {
  EXPECT_EQ(BatchEvent({R"({"a":1})", "not \"json", "{}"}),
            R"({"batch":[{"a":1},"not \"json",{}]})");
}

TEST(BatchEventTest, ClientContextNamesTheCallersInOrder) {
  EXPECT_EQ(BatchClientContext({"r1", "r2"}), R"({"custom":{"batch_request_ids":["r1","r2"]}})");
}

TEST(SplitBatchAnswerTest, OneItemPerCaller) {
  auto items = SplitBatchAnswer(R"([{"label":1}, 2.5, "x", null, [1,2]])", 5);
  ASSERT_TRUE(items.ok()) << items.status().ToString();
  ASSERT_EQ(items->size(), 5u);
  EXPECT_EQ((*items)[0].body, R"({"label":1})");
  EXPECT_EQ((*items)[1].body, "2.5");
  EXPECT_EQ((*items)[2].body, R"("x")");
  EXPECT_EQ((*items)[3].body, "null");
  EXPECT_EQ((*items)[4].body, "[1,2]");
  for (const auto& item : *items) EXPECT_FALSE(item.failed);
}

TEST(SplitBatchAnswerTest, ErrorItemFailsOnlyItsCaller) {
  auto items =
      SplitBatchAnswer(R"([{"ok":1}, {"error":"bad image"}, {"error":{"errorType":"ValueError",)"
                       R"("errorMessage":"pixels must be 64"}}, {"error":"x","other":1}])",
                       4);
  ASSERT_TRUE(items.ok()) << items.status().ToString();
  EXPECT_FALSE((*items)[0].failed);
  EXPECT_TRUE((*items)[1].failed);
  EXPECT_EQ((*items)[1].error_type, kBatchItemError);
  EXPECT_EQ((*items)[1].error_message, "bad image");
  EXPECT_EQ((*items)[1].body, R"({"errorMessage":"bad image","errorType":"BatchItemError"})");
  EXPECT_TRUE((*items)[2].failed);
  EXPECT_EQ((*items)[2].error_type, "ValueError");
  EXPECT_EQ((*items)[2].error_message, "pixels must be 64");
  // "error" beside other keys is a result that happens to have that field, not an error.
  EXPECT_FALSE((*items)[3].failed);
  EXPECT_EQ((*items)[3].body, R"({"error":"x","other":1})");
}

TEST(SplitBatchAnswerTest, WrongShapesFailTheWholeBatchSayingWhy) {
  struct Case {
    const char* body;
    size_t size;
    const char* says;
  };
  for (const Case& c : {Case{R"({"labels":[1,2]})", 2, "returned a JSON object"},
                        Case{"[1,2,3]", 2, "a list of 3 items"}, Case{"[]", 1, "a list of 0"},
                        Case{"not json", 2, "not JSON"}, Case{"", 2, "not JSON"}}) {
    auto items = SplitBatchAnswer(c.body, c.size);
    ASSERT_FALSE(items.ok()) << c.body;
    EXPECT_EQ(items.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(items.status().message().find(c.says), std::string::npos)
        << c.body << ": " << items.status().message();
  }
}

TEST(EvenShareTest, SharesAddUpToTheTotalAndDifferByAtMostOne) {
  struct Case {
    int64_t total, size;
    std::vector<int64_t> shares;
  };
  for (const Case& c :
       {Case{3, 16, {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}, Case{10, 4, {3, 3, 2, 2}},
        Case{8, 4, {2, 2, 2, 2}}, Case{5, 1, {5}}, Case{0, 3, {0, 0, 0}}}) {
    std::vector<int64_t> got;
    for (int64_t i = 0; i < c.size; ++i) got.push_back(EvenShare(c.total, c.size, i));
    EXPECT_EQ(got, c.shares) << c.total << " over " << c.size;
    EXPECT_EQ(std::accumulate(got.begin(), got.end(), int64_t{0}), c.total);
  }
}

}  // namespace
}  // namespace thaw::pool

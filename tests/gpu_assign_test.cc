// dispatch::AssignGpus as a table: which GPUs an instance gets, and why it gets none (busy now:
// 429 and retry; never on this node: refused at deploy).
#include "dispatch/gpu_assign.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace thaw::dispatch {
namespace {

constexpr int64_t kGb = int64_t{1} << 30;

GpuSlot H200(int index, bool held = false) { return {index, "NVIDIA H200", 141 * kGb, held}; }
GpuSlot A10(int index, bool held = false) { return {index, "NVIDIA A10G", 24 * kGb, held}; }
GpuSlot Static(int index, bool held = false) { return {index, "static", 0, held}; }

struct Case {
  const char* name;
  std::vector<GpuSlot> gpus;
  GpuAsk ask;
  std::vector<int> want;  // when code is kOk
  StatusCode code = StatusCode::kOk;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  return {
      {"NoAskNoGpus", {H200(0)}, {0, 0, ""}, {}},
      {"FirstFree", {H200(0), H200(1)}, {1, 0, ""}, {0}},
      {"SkipsHeld", {H200(0, true), H200(1)}, {1, 0, ""}, {1}},
      {"TwoOfThree", {H200(0), H200(1, true), H200(2), H200(3)}, {2, 0, ""}, {0, 2}},
      {"AllHeldIsBusy",
       {H200(0, true), H200(1, true)},
       {1, 0, ""},
       {},
       StatusCode::kResourceExhausted},
      {"TooFewFreeIsBusy",
       {H200(0), H200(1, true)},
       {2, 0, ""},
       {},
       StatusCode::kResourceExhausted},
      {"MoreThanTheNodeHas", {H200(0), H200(1)}, {3, 0, ""}, {}, StatusCode::kFailedPrecondition},
      {"NoGpusAtAll", {}, {1, 0, ""}, {}, StatusCode::kFailedPrecondition},
      {"KindMatchesName", {A10(0), H200(1)}, {1, 0, "H200"}, {1}},
      {"KindIgnoresCase", {A10(0), H200(1)}, {1, 0, "h200"}, {1}},
      {"KindNobodyHas", {A10(0), A10(1)}, {1, 0, "H100"}, {}, StatusCode::kFailedPrecondition},
      {"KindHeldIsBusy",
       {A10(0), H200(1, true)},
       {1, 0, "H200"},
       {},
       StatusCode::kResourceExhausted},
      {"MemoryFilters", {A10(0), H200(1)}, {1, 80, ""}, {1}},
      {"MemoryExactIsEnough", {A10(0)}, {1, 24, ""}, {0}},
      {"MemoryTooBig", {A10(0), H200(1)}, {1, 200, ""}, {}, StatusCode::kFailedPrecondition},
      {"SmallestFitFirst", {H200(0), A10(1)}, {1, 16, ""}, {1}},
      {"SmallestFitThenIndex", {H200(0), A10(3), A10(2)}, {2, 0, ""}, {2, 3}},
      {"UnknownMemoryFailsAMemoryAsk",
       {Static(0)},
       {1, 1, ""},
       {},
       StatusCode::kFailedPrecondition},
      {"UnknownMemoryServesAPlainAsk", {Static(0), Static(1, true)}, {1, 0, ""}, {0}},
  };
}

class AssignGpusTest : public ::testing::TestWithParam<Case> {};

TEST_P(AssignGpusTest, Decides) {
  const Case& c = GetParam();
  auto got = AssignGpus(c.gpus, c.ask);
  if (c.code == StatusCode::kOk) {
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, c.want);
  } else {
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), c.code) << got.status().ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(Table, AssignGpusTest, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(AssignGpusTest, BusyMessageSaysHowManyAreFree) {
  auto got = AssignGpus({H200(0, true), H200(1, true), A10(2)}, {1, 0, "H200"});
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("0 of 2 matching GPU(s) free"), std::string::npos)
      << got.status().message();
}

TEST(CheckGpusFitTest, CountsHeldGpusAndNamesTheField) {
  EXPECT_TRUE(CheckGpusFit({H200(0, true)}, {1, 0, ""}).ok());  // busy now is not "never"
  Status st = CheckGpusFit({A10(0)}, {1, 0, "H200"});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("field 'gpu'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("has 0 of the 1 GPU(s) of kind H200"), std::string::npos)
      << st.message();
  EXPECT_EQ(CheckGpusFit({}, {1, 0, ""}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace thaw::dispatch

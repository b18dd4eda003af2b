// The GPU inventory without a GPU: NVML absent is a reason, not a crash; the static `gpus` list
// parses or is refused by entry; an instance's device nodes, denials and environment follow
// from what it holds.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sandbox/gpu.h"

namespace thaw::sandbox {
namespace {

TEST(NvmlTest, AbsentLibraryIsAReason) {
  auto nvml = Nvml::Open("libthaw-no-such-nvml.so.1");
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(nvml.status().message().find("failed to load libthaw-no-such-nvml.so.1"),
            std::string::npos)
      << nvml.status().message();
}

TEST(NvmlTest, ALibraryWithoutNvmlIsAReason) {
  auto nvml = Nvml::Open("libm.so.6");  // loads, but has no nvmlInit_v2
  ASSERT_FALSE(nvml.ok());
  EXPECT_NE(nvml.status().message().find("NVML entry points"), std::string::npos)
      << nvml.status().message();
}

TEST(StaticGpusTest, Parses) {
  auto none = ParseStaticGpus("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto two = ParseStaticGpus("0,1");
  ASSERT_TRUE(two.ok()) << two.status().message();
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].index, 1);
  EXPECT_EQ((*two)[1].minor, 1);
  EXPECT_EQ((*two)[1].name, "static");
  EXPECT_EQ((*two)[1].memory_bytes, 0);
  EXPECT_EQ((*two)[1].uuid, "");
  auto named = ParseStaticGpus("3:H200:141,5:A10G");
  ASSERT_TRUE(named.ok()) << named.status().message();
  ASSERT_EQ(named->size(), 2u);
  EXPECT_EQ((*named)[0].index, 3);
  EXPECT_EQ((*named)[0].name, "H200");
  EXPECT_EQ((*named)[0].memory_bytes, int64_t{141} << 30);
  EXPECT_EQ((*named)[1].name, "A10G");
}

TEST(StaticGpusTest, RefusesByEntry) {
  for (const char* bad : {"x", "0,", ",0", "-1", "256", "0,0", "0:a:b", "0:a:1:2", "0;1"}) {
    auto got = ParseStaticGpus(bad);
    EXPECT_FALSE(got.ok()) << bad;
    if (!got.ok()) {
      EXPECT_NE(got.status().message().find("gpus: entry"), std::string::npos)
          << got.status().message();
    }
  }
}

std::vector<GpuDevice> Three() {
  auto g = ParseStaticGpus("0,1,2");
  return g.ok() ? *g : std::vector<GpuDevice>{};
}

TEST(GpuNodesTest, BindsItsOwnAndTheSharedNodesThatExist) {
  auto all = Three();
  // /nonexistent has no nvidiactl: only the GPU's own node is listed.
  EXPECT_EQ(GpuNodesToBind("/nonexistent", {all[1]}),
            std::vector<std::string>{"/nonexistent/nvidia1"});
  EXPECT_TRUE(GpuNodesToBind("/dev", {}).empty());
}

TEST(GpuNodesTest, DeniesEveryOtherGpu) {
  auto all = Three();
  EXPECT_EQ(GpuNodesToDeny("/d", all, {all[1]}),
            (std::vector<std::string>{"/d/nvidia0", "/d/nvidia2"}));
  EXPECT_EQ(GpuNodesToDeny("/d", all, all), std::vector<std::string>{});
}

TEST(GpuEnvironmentTest, NamesUuidsOrIndexes) {
  auto all = Three();
  EXPECT_EQ(GpuEnvironment({all[0], all[2]}),
            (std::vector<std::string>{"CUDA_VISIBLE_DEVICES=0,2", "NVIDIA_VISIBLE_DEVICES=0,2"}));
  GpuDevice nvml;
  nvml.index = 4;
  nvml.uuid = "GPU-1234";
  EXPECT_EQ(GpuEnvironment({nvml}), (std::vector<std::string>{"CUDA_VISIBLE_DEVICES=GPU-1234",
                                                              "NVIDIA_VISIBLE_DEVICES=GPU-1234"}));
}

TEST(DeviceRulesTest, V1DenyLines) {
  EXPECT_EQ(DeviceDenyLines({{'c', 195, 1}, {'b', 7, 0}}),
            (std::vector<std::string>{"c 195:1 rwm", "b 7:0 rwm"}));
}

TEST(DeviceRulesTest, DeviceNumbersOfANonDeviceIsAnError) {
  auto nums = DeviceNumbersOf({"/dev/null"});
  ASSERT_TRUE(nums.ok()) << nums.status().message();
  EXPECT_EQ((*nums)[0], (DeviceNumber{'c', 1, 3}));
  auto file = DeviceNumbersOf({"/etc/hostname"});
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("not a device node"), std::string::npos);
  EXPECT_FALSE(DeviceNumbersOf({"/nonexistent/nvidia9"}).ok());
}

}  // namespace
}  // namespace thaw::sandbox

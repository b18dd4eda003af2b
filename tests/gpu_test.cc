// GPU functions against the real server with fake GPUs: a static `gpus: 0,1` inventory whose
// device nodes are made with mknod in a test directory (gpu_device_dir). Each instance holds
// one GPU exclusively and sees only its node; a call that finds every GPU held waits for the
// function's own instances or is a 429; GPU-seconds reach the bill, idle-but-held ones too.
// Privileged (mknod, the jail, cgroups): skipped with the reason otherwise.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <future>
#include <set>

#include "common/files.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

// Reports its GPU environment and, for each node, whether /dev shows it and it opens.
constexpr char kProbe[] = R"py(import os, time
def handler(e, c):
    time.sleep(e.get("sleep", 0))
    seen = {}
    for n in ("nvidia0", "nvidia1", "nvidiactl"):
        p = "/dev/" + n
        if not os.path.exists(p):
            seen[n] = "absent"
            continue
        try:
            os.close(os.open(p, os.O_RDONLY))
            seen[n] = "open"
        except OSError:
            seen[n] = "refused"
    return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES"), "seen": seen}
)py";

class GpuTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: fake device nodes, the jail and cgroups";
    char tmpl[] = "/tmp/thaw_gpudev.XXXXXX";
    dev_ = ::mkdtemp(tmpl);
    // Real drivers behind fake names: /dev/full's, /dev/random's and /dev/zero's numbers.
    for (auto [name, maj, min] :
         {std::tuple{"nvidia0", 1u, 7u}, {"nvidia1", 1u, 8u}, {"nvidiactl", 1u, 5u}}) {
      const std::string path = dev_ + "/" + name;
      ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0666, makedev(maj, min)), 0) << path;
      ::chmod(path.c_str(), 0666);
    }
    server_ = ThawServer::Start({"--gpus", "0,1", "--gpu-device-dir", dev_});
    auto node = server_->Call("GET", "/v1/node");
    if (JsonField(node.body, "isolation").find("cgroup") == std::string::npos) {
      GTEST_SKIP() << "no cgroups on this machine: " << JsonField(node.body, "isolation");
    }
  }
  void TearDown() override {
    ServerTest::TearDown();
    server_.reset();
    if (!dev_.empty()) RemoveDir(dev_);
  }

  json::array NodeGpus() const {
    auto node = json::parse(server_->Call("GET", "/v1/node").body);
    return node.at("gpus").at("devices").as_array();
  }
  int64_t HeldGpus() const {
    int64_t n = 0;
    for (const auto& d : NodeGpus()) n += d.at("holder").is_null() ? 0 : 1;
    return n;
  }
  json::object Usage(const std::string& function) const {
    auto r = server_->Call("GET", "/v1/usage?function=" + function);
    auto v = json::parse(r.body);
    return v.at("total").as_object();
  }

  std::string dev_;
};

TEST_F(GpuTest, NodeListsTheStaticGpusFree) {
  auto gpus = NodeGpus();
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].at("index").to_number<int64_t>(), 0);
  EXPECT_EQ(gpus[1].at("name").as_string(), "static");
  EXPECT_TRUE(gpus[0].at("holder").is_null());
  auto node = json::parse(server_->Call("GET", "/v1/node").body);
  EXPECT_EQ(node.at("gpus").at("source").as_string(), "static");
}

TEST_F(GpuTest, EachInstanceHoldsOneGpuAndSeesOnlyIt) {
  DeployPython("probe", kProbe, "gpu: 1\nmax_instances: 2\ntimeout_s: 30\n");
  // Two calls at once: two instances, one GPU each.
  auto a =
      std::async(std::launch::async, [&] { return server_->Invoke("probe", R"({"sleep":1})"); });
  auto b =
      std::async(std::launch::async, [&] { return server_->Invoke("probe", R"({"sleep":1})"); });
  std::set<std::string> cuda;
  for (auto* f : {&a, &b}) {
    auto r = f->get();
    ASSERT_EQ(r.status, 200) << r.body;
    auto v = json::parse(r.body).as_object();
    const std::string mine = std::string(v.at("cuda").as_string());
    cuda.insert(mine);
    EXPECT_EQ(v.at("nvidia").as_string(), mine);
    const std::string other = mine == "0" ? "nvidia1" : "nvidia0";
    auto& seen = v.at("seen").as_object();
    EXPECT_EQ(seen.at("nvidia" + mine).as_string(), "open") << r.body;
    EXPECT_EQ(seen.at(other).as_string(), "absent") << r.body;
    EXPECT_EQ(seen.at("nvidiactl").as_string(), "open") << r.body;
  }
  EXPECT_EQ(cuda, (std::set<std::string>{"0", "1"}));
  // Warm instances keep their GPUs: both are held, and /metrics says by whom.
  EXPECT_EQ(HeldGpus(), 2);
  for (const auto& d : NodeGpus()) {
    EXPECT_NE(std::string(d.at("holder").as_string()).find("probe v1 #"), std::string::npos);
  }
  auto metrics = server_->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("thaw_gpu_held{gpu=\"0\",name=\"static\",holder=\"probe v1 #"),
            std::string::npos)
      << metrics;
  // Another GPU function finds none free: 429, saying so.
  DeployPython("other", kProbe, "gpu: 1\n");
  auto r = server_->Invoke("other");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_NE(r.body.find("no free GPU"), std::string::npos) << r.body;
  // A function without GPUs runs beside them, seeing none.
  DeployPython("plain", kProbe);
  auto p = server_->Invoke("plain");
  ASSERT_EQ(p.status, 200) << p.body;
  auto v = json::parse(p.body).as_object();
  EXPECT_EQ(v.at("cuda").as_string(), "") << p.body;  // CUDA: no devices
  EXPECT_EQ(v.at("nvidia").as_string(), "void") << p.body;
  EXPECT_EQ(v.at("seen").at("nvidia0").as_string(), "absent");
  EXPECT_EQ(v.at("seen").at("nvidiactl").as_string(), "absent");
}

// More calls than GPUs: the one that finds both held waits for the function's own instances
// instead of a 429.
TEST_F(GpuTest, CallsQueueForTheFunctionsOwnGpuInstances) {
  DeployPython("queued", kProbe, "gpu: 1\nmax_instances: 3\ntimeout_s: 30\n");
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async,
                               [&] { return server_->Invoke("queued", R"({"sleep":1})"); }));
  }
  for (auto& c : calls) {
    auto r = c.get();
    EXPECT_EQ(r.status, 200) << r.body;
  }
  EXPECT_EQ(HeldGpus(), 2);  // never a third instance: there is no third GPU
}

TEST_F(GpuTest, GpuSecondsAreBilledAndIdleHeldOnesWhenTheInstanceGoes) {
  DeployPython("billed", kProbe, "gpu: 1\nidle_timeout_s: 1\n");
  auto r = server_->Invoke("billed", R"({"sleep":0.3})");
  ASSERT_EQ(r.status, 200) << r.body;
  // The invocation: at least its 0.3 s on one GPU.
  ASSERT_TRUE(Eventually(
      [&] { return Usage("billed").at("invocations").to_number<int64_t>() == 1; }, 10'000));
  json::object u = Usage("billed");
  EXPECT_GE(u.at("gpu_seconds").to_number<double>(), 0.3);
  EXPECT_LT(u.at("gpu_seconds").to_number<double>(), 5.0);
  // Idle past idle_timeout_s, the instance goes and gives its GPU back; the time it held it
  // outside the call (init, idle) is billed too.
  ASSERT_TRUE(Eventually([&] { return HeldGpus() == 0; }, 20'000));
  ASSERT_TRUE(Eventually(
      [&] { return Usage("billed").at("gpu_idle_seconds").to_number<double>() > 0.5; }, 10'000));
  u = Usage("billed");
  EXPECT_EQ(u.at("invocations").to_number<int64_t>(), 1);  // idle time is not a call
  EXPECT_GT(u.at("gpu_seconds").to_number<double>(), u.at("gpu_idle_seconds").to_number<double>());
  // Priced at price_gpu_second_pico: at least the GPU-seconds x $0.001097.
  EXPECT_GE(u.at("cost_lambda").at("micro").to_number<int64_t>(),
            static_cast<int64_t>(u.at("gpu_seconds").to_number<double>() * 1097));
}

TEST_F(GpuTest, DeployThatNoGpuHereCouldServeIsRefusedByField) {
  dirs_.push_back(PythonBundle("h100", kProbe, "gpu: {count: 1, kind: H100}\n"));
  auto r = server_->Deploy("h100", dirs_.back());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("field 'gpu'"), std::string::npos) << r.body;
  dirs_.push_back(PythonBundle("three", kProbe, "gpu: 3\n"));
  r = server_->Deploy("three", dirs_.back());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("has 2 of the 3 GPU(s)"), std::string::npos) << r.body;
  dirs_.push_back(PythonBundle("warm3", kProbe, "gpu: 1\nmin_instances: 3\n"));
  r = server_->Deploy("warm3", dirs_.back());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("field 'min_instances'"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace thaw::testing

// Rootless mode: the real `thaw serve` run by an unprivileged uid, isolating instances with
// user namespaces. Run as root, this binary first drops to nobody (65534) for good: it is a
// binary of its own so that the drop touches no other test. Skipped, with the reason, where
// the kernel refuses user namespaces.
#include <grp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstring>

#include "sandbox_probes.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

constexpr uid_t kNobody = 65534;

// Empty on success, else why the drop failed.
std::string DropRootForGood() {
  if (::geteuid() != 0) return "";
  // SAFETY: supplementary groups and gid first, the uid last: afterwards nothing of root is
  // left to this process or to the server it starts.
  if (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
      ::setresuid(kNobody, kNobody, kNobody) != 0) {
    return std::string("failed to drop root: ") + std::strerror(errno);
  }
  return "";
}

class RootlessTest : public ServerTest {
 protected:
  void SetUp() override {
    std::string dropped = DropRootForGood();
    ASSERT_EQ(dropped, "");
    server_ = ThawServer::Start({"--pids-max", "64"});
    isolation_ = JsonField(server_->Call("GET", "/v1/node").body, "isolation");
    if (isolation_.find("user namespaces are refused") != std::string::npos) {
      GTEST_SKIP() << "this kernel refuses user namespaces here: " << isolation_;
    }
    port_ = server_->url().substr(server_->url().rfind(':') + 1);
  }
  std::string isolation_, port_;
};

TEST_F(RootlessTest, SaysItIsRootlessAndServesInvocations) {
  EXPECT_EQ(isolation_.rfind("rootless", 0), 0u) << isolation_;
  EXPECT_NE(isolation_.find("user namespaces"), std::string::npos) << isolation_;
  EXPECT_TRUE(server_->WaitForOutput("isolation: rootless", 1000)) << server_->Output();
  DeployPython("hello", "def handler(e, c):\n    return 'hi ' + e['name']\n");
  auto r = server_->Invoke("hello", R"({"name":"x"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "\"hi x\"");
  EXPECT_EQ(r.Header("x-thaw-cold-start"), "true");
}

TEST_F(RootlessTest, HostFilesProcessesAndPrivilegesAreOutOfReach) {
  // A fresh instance (template: off): a forked one also sees its template's processes
  // (docs/sandbox.md, "Forked siblings").
  DeployPython("probe", kHostProbe, "template: off\n");
  json::object event{{"key", server_->data_dir() + "/admin.key"}, {"data", server_->data_dir()}};
  auto r = server_->Invoke("probe", json::serialize(event));
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = json::parse(r.body).as_object();
  // The data dir and admin key belong to the instance's own uid: only the mount namespace
  // keeps them out of reach.
  EXPECT_EQ(o["admin_key"].as_string(), "No such file or directory");
  EXPECT_EQ(o["data_dir"].as_string(), "No such file or directory");
  EXPECT_EQ(o["write_task"].as_string(), "Read-only file system");
  EXPECT_EQ(o["read_etc"].as_string(), "allowed");
  EXPECT_EQ(json::serialize(o["pids"]), "[1]");  // only itself, as PID 1
  EXPECT_EQ(o["uid"].as_int64(), kNobody);       // thaw's uid, mapped: no other to give
  EXPECT_EQ(o["cap_eff"].as_string(), "0000000000000000");
  EXPECT_EQ(o["unshare"].as_string(), "Operation not permitted");
  EXPECT_EQ(o["task_root"].as_string(), "/var/task");
}

// Every rootless instance shares thaw's uid, so the Runtime API check is by process: the
// connecting socket must be held by one of the instance's own processes.
TEST_F(RootlessTest, AnotherInstancesRuntimeApiIsOutOfReach) {
  DeployPython("victim", kRuntimeApiVictim);
  DeployPython("thief", kRuntimeApiThief);
  const std::string thief = StealVictimsEvent(*server_);
  EXPECT_TRUE(thief == "\"refused: RemoteDisconnected\"" ||
              thief == "\"refused: ConnectionResetError\"")
      << thief;
  auto again = server_->Invoke("victim");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Header("x-thaw-cold-start"), "false");
}

TEST_F(RootlessTest, NetworkNoneHasNoWayOutAndEgressHas) {
  DeployPython("open", kNetworkProbe);
  DeployPython("sealed", kNetworkProbe, "network: none\n");
  const std::string event = "{\"port\":" + port_ + "}";
  auto open = server_->Invoke("open", event);
  ASSERT_EQ(open.status, 200) << open.body;
  EXPECT_EQ(JsonField(open.body, "gateway"), "connected");
  auto sealed = server_->Invoke("sealed", event);
  ASSERT_EQ(sealed.status, 200) << sealed.body;
  EXPECT_EQ(JsonField(sealed.body, "gateway"), "Connection refused");
  EXPECT_EQ(JsonField(sealed.body, "outside"), "Network is unreachable");
  EXPECT_EQ(JsonField(sealed.body, "interfaces"), R"(["lo"])");
  EXPECT_EQ(server_->Invoke("sealed", event).Header("x-thaw-cold-start"), "false");
}

// Without cgroups, RLIMIT_NPROC stands in for the pids limit; it counts per user namespace,
// so the instance's threads hit --pids-max while thaw's own (same uid) do not count.
TEST_F(RootlessTest, ThreadBombStopsAtThePidsLimit) {
  DeployPython("forker",
               "import threading, time\n"
               "def handler(e, c):\n"
               "    n = 0\n"
               "    try:\n"
               "        while n < 100000:\n"
               "            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
               "            n += 1\n"
               "    except RuntimeError as err:\n"
               "        return {'started': n, 'error': str(err)}\n"
               "    return {'started': n}\n",
               "timeout_s: 20\n");
  auto r = server_->Invoke("forker");
  ASSERT_EQ(r.status, 200) << r.body;
  int started = std::stoi(JsonField(r.body, "started"));
  EXPECT_LT(started, 64);
  EXPECT_GT(started, 10);
  DeployPython("bystander", "def handler(e, c):\n    return 'fine'\n");
  EXPECT_EQ(server_->Invoke("bystander").body, "\"fine\"");
}

// Without cgroups, RLIMIT_DATA stands in for memory_mb: allocations past it fail inside the
// function (Python's MemoryError) instead of growing on the host.
TEST_F(RootlessTest, MemoryBombFailsInsideTheFunction) {
  DeployPython("bomb",
               "def handler(e, c):\n"
               "    hog = []\n"
               "    while True: hog.append(bytearray(16 << 20))\n",
               "memory_mb: 128\n");
  auto r = server_->Invoke("bomb");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "MemoryError") << r.body;
}

}  // namespace
}  // namespace thaw::testing

// Containment, with probe functions against the real jail (privileged: skipped with the reason
// when thaw cannot isolate here). Each probe tries something a hostile function would.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "common/files.h"
#include "sandbox_probes.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

class SandboxTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: thaw only jails instances as root";
    server_ = ThawServer::Start({"--pids-max", "64"});
    auto node = server_->Call("GET", "/v1/node");
    if (JsonField(node.body, "isolation").find("cgroup") == std::string::npos) {
      GTEST_SKIP() << "no cgroups on this machine: " << JsonField(node.body, "isolation");
    }
  }
};

TEST_F(SandboxTest, MemoryBombIsOutOfMemoryAndContained) {
  DeployPython("bomb",
               "def handler(e, c):\n"
               "    hog = []\n"
               "    while True: hog.append(bytearray(16 << 20))\n",
               "memory_mb: 128\n");
  DeployPython("bystander", "def handler(e, c):\n    return 'fine'\n");
  ASSERT_EQ(server_->Invoke("bystander").status, 200);
  auto r = server_->Invoke("bomb");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.OutOfMemory") << r.body;
  EXPECT_NE(JsonField(r.body, "errorMessage").find("Max Memory Used"), std::string::npos);
  auto logs = server_->Call("GET", "/v1/functions/bomb/logs").body;
  EXPECT_NE(logs.find("Max Memory Used: 12"), std::string::npos) << logs;  // ~128 MB
  EXPECT_EQ(server_->Invoke("bystander").body, "\"fine\"");
  EXPECT_EQ(server_->Call("GET", "/healthz", "", {}, false).status, 200);
}

TEST_F(SandboxTest, ForkBombStopsAtThePidsLimit) {
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
  EXPECT_NE(JsonField(r.body, "error"), "");
}

TEST_F(SandboxTest, FillingTmpIsEnospcInsideTheInstanceOnly) {
  DeployPython("filler",
               "import errno\n"
               "def handler(e, c):\n"
               "    written = 0\n"
               "    try:\n"
               "        with open('/tmp/fill', 'wb') as f:\n"
               "            while written < (600 << 20):\n"
               "                f.write(b'x' * (1 << 20)); f.flush(); written += 1 << 20\n"
               "    except OSError as err:\n"
               "        return {'written': written, 'errno': err.errno == errno.ENOSPC}\n"
               "    return {'written': written, 'errno': False}\n",
               "memory_mb: 1024\ntimeout_s: 120\n");
  // /tmp is 512 MB (ephemeral_storage_mb's default): a disk of its own, or a tmpfs where loop
  // devices cannot be had (then memory_mb leaves room for it).
  auto r = server_->Invoke("filler");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(JsonField(r.body, "errno"), "true") << r.body;
  EXPECT_LE(std::stoll(JsonField(r.body, "written")), 512 << 20);
}

TEST_F(SandboxTest, HostFilesProcessesAndPrivilegesAreOutOfReach) {
  // A fresh instance (template: off): a forked one also sees its template's processes
  // (docs/sandbox.md, "Forked siblings").
  DeployPython("probe", kHostProbe, "template: off\n");
  json::object event{{"key", server_->data_dir() + "/admin.key"}, {"data", server_->data_dir()}};
  auto r = server_->Invoke("probe", json::serialize(event));
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = json::parse(r.body).as_object();
  EXPECT_EQ(o["admin_key"].as_string(), "No such file or directory");
  EXPECT_EQ(o["data_dir"].as_string(), "No such file or directory");
  EXPECT_EQ(o["write_task"].as_string(), "Read-only file system");
  EXPECT_EQ(o["read_etc"].as_string(), "allowed");
  EXPECT_EQ(o["pids"].as_array().size(), 1u) << r.body;  // only itself, as PID 1
  EXPECT_GE(o["uid"].as_int64(), 200000);                // a uid of its own, no host account's
  EXPECT_EQ(o["cap_eff"].as_string(), "0000000000000000");
  EXPECT_EQ(o["unshare"].as_string(), "Operation not permitted");
  EXPECT_EQ(o["task_root"].as_string(), "/var/task");
}

// Regression: io_uring_setup was allowed (a frequent kernel attack surface). The three io_uring
// calls answer ENOSYS, as on a kernel without it (before: a ring fd, and EBADF for fd -1).
TEST_F(SandboxTest, IoUringIsNotThere) {
  DeployPython(
      "uring",
      "import ctypes, errno\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "def call(nr, *args):\n"
      "    if libc.syscall(nr, *args) >= 0: return 'allowed'\n"
      "    return errno.errorcode[ctypes.get_errno()]\n"
      "def handler(e, c):\n"
      "    params = ctypes.create_string_buffer(120)\n"
      "    return {'setup': call(425, 4, params), 'enter': call(426, -1, 0, 0, 0, None, 0),\n"
      "            'register': call(427, -1, 0, None, 0)}\n");
  auto r = server_->Invoke("uring");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(JsonField(r.body, "setup"), "ENOSYS") << r.body;
  EXPECT_EQ(JsonField(r.body, "enter"), "ENOSYS") << r.body;
  EXPECT_EQ(JsonField(r.body, "register"), "ENOSYS") << r.body;
}

// Regression: /proc/self/mountinfo showed the data dir and the bundle's digest (each bind
// mount's source folder). The runtime's own view names no host path.
TEST_F(SandboxTest, MountInfoShowsNoHostPaths) {
  // A fresh instance (template: off): a forked one's mountinfo is not covered (docs/sandbox.md,
  // "Forked siblings").
  DeployPython("mounts", "def handler(e, c):\n    return open('/proc/self/mountinfo').read()\n",
               "template: off\n");
  auto r = server_->Invoke("mounts");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string text = json::parse(r.body).as_string().c_str();
  EXPECT_NE(text.find(" /var/task "), std::string::npos) << text;
  EXPECT_EQ(text.find(server_->data_dir()), std::string::npos) << text;
  EXPECT_EQ(text.find("bundles/"), std::string::npos) << text;
  EXPECT_EQ(text.find(THAW_BUILD_DIR), std::string::npos) << text;  // the runtimes folder
}

TEST_F(SandboxTest, AnotherInstancesRuntimeApiIsOutOfReach) {
  // The victim tells us where its Runtime API listens and then waits for its next event.
  DeployPython("victim", kRuntimeApiVictim);
  DeployPython("thief", kRuntimeApiThief);
  // Closed on sight; without the check the thief's GET would park and time out instead.
  const std::string thief = StealVictimsEvent(*server_);
  EXPECT_TRUE(thief == "\"refused: RemoteDisconnected\"" ||
              thief == "\"refused: ConnectionResetError\"")
      << thief;
  // The victim still gets its own events.
  auto again = server_->Invoke("victim");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Header("x-thaw-cold-start"), "false");
}

// Two thaw servers on one host: a function on one must not reach the other's instances. Both
// once gave their first instance uid 200000, which passed the other's peer check.
TEST_F(SandboxTest, AnotherServersFunctionCannotTakeThisServersEvents) {
  auto other = ThawServer::Start();
  const std::string ours = JsonField(server_->Call("GET", "/v1/node").body, "isolation");
  const std::string theirs = JsonField(other->Call("GET", "/v1/node").body, "isolation");
  auto range = [](const std::string& isolation) {
    size_t at = isolation.find("instance uids ");
    return at == std::string::npos ? "" : isolation.substr(at, isolation.find(' ', at + 14) - at);
  };
  ASSERT_NE(range(ours), "") << ours;
  EXPECT_NE(range(ours), range(theirs));
  DeployPython("victim", kRuntimeApiVictim);
  auto victim = server_->Invoke("victim");
  ASSERT_EQ(victim.status, 200) << victim.body;
  const std::string api = victim.body.substr(1, victim.body.size() - 2);
  dirs_.push_back(PythonBundle("thief", kRuntimeApiThief));
  ASSERT_EQ(other->Deploy("thief", dirs_.back()).status, 201);
  auto thief = other->Invoke("thief", "{\"api\":\"" + api + "\"}");
  ASSERT_EQ(thief.status, 200) << thief.body;
  EXPECT_TRUE(thief.body == "\"refused: RemoteDisconnected\"" ||
              thief.body == "\"refused: ConnectionResetError\"")
      << thief.body;
  auto again = server_->Invoke("victim");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.Header("x-thaw-cold-start"), "false");
}

// The pid of `parent`'s child named `comm`, or -1.
pid_t ChildNamed(pid_t parent, const std::string& comm) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && line.find("(" + comm + ")") != std::string::npos) return std::stoi(name);
  }
  return -1;
}

// The cgroups whose names start with `prefix`, in any of thaw's hierarchies (v1 or v2).
std::vector<std::string> ThawCgroups(const std::string& prefix) {
  std::vector<std::string> out;
  for (const char* parent : {"/sys/fs/cgroup/memory/thaw", "/sys/fs/cgroup/pids/thaw",
                             "/sys/fs/cgroup/cpu/thaw", "/sys/fs/cgroup/thaw"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(parent, ec)) {
      if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().string());
    }
  }
  return out;
}

// kill -9 takes the spawner with it (PDEATHSIG) before it removes its cgroups; the next thaw
// server on the host removes them.
TEST_F(SandboxTest, ARestartRemovesTheCgroupsOfAKilledServer) {
  DeployPython("hello", "def handler(e, c):\n    return 1\n");
  ASSERT_EQ(server_->Invoke("hello").status, 200);
  const pid_t spawner = ChildNamed(server_->pid(), "thaw-spawner");
  ASSERT_GT(spawner, 0);
  const std::string prefix = "shell-" + std::to_string(spawner) + "-";
  ASSERT_FALSE(ThawCgroups(prefix).empty());  // its ready shells and the instance
  server_->Kill9();
  ASSERT_TRUE(Eventually([&] { return !ProcessAlive(spawner); }, 10'000));
  EXPECT_FALSE(ThawCgroups(prefix).empty());  // left behind
  auto next = ThawServer::Start();
  EXPECT_TRUE(Eventually([&] { return ThawCgroups(prefix).empty(); }, 10'000))
      << ThawCgroups(prefix).front();
}

// network: none needs the jail, not cgroups.
class NetworkTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: tests/rootless_test.cc covers the rest";
    server_ = ThawServer::Start();
    port_ = server_->url().substr(server_->url().rfind(':') + 1);
  }
  json::object Probe(const std::string& name) {
    auto r = server_->Invoke(name, "{\"port\":" + port_ + "}");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body).as_object() : json::object{};
  }
  std::string port_;
};

TEST_F(NetworkTest, NetworkNoneHasOnlyLoopbackAndNoWayOut) {
  DeployPython("open", kNetworkProbe);
  DeployPython("sealed", kNetworkProbe, "network: none\n");
  json::object open = Probe("open");
  EXPECT_EQ(open["gateway"].as_string(), "connected");  // egress: the host's loopback and more
  json::object sealed = Probe("sealed");
  EXPECT_EQ(sealed["gateway"].as_string(), "Connection refused");  // its loopback is its own
  EXPECT_EQ(sealed["outside"].as_string(), "Network is unreachable");
  EXPECT_EQ(json::serialize(sealed["interfaces"]), R"(["lo"])");
  EXPECT_EQ(sealed["api"].as_string(), "127.0.0.1:9001");
  // It keeps getting its invocations through the Runtime API made inside its namespace.
  auto warm = server_->Invoke("sealed", "{\"port\":" + port_ + "}");
  EXPECT_EQ(warm.status, 200) << warm.body;
  EXPECT_EQ(warm.Header("x-thaw-cold-start"), "false");
  EXPECT_NE(server_->Call("GET", "/v1/functions/sealed").body.find(R"("network":"none")"),
            std::string::npos);
}

TEST_F(NetworkTest, NetworkNoneCannotReachAnotherInstancesRuntimeApi) {
  DeployPython("victim", kRuntimeApiVictim);
  DeployPython("thief", kRuntimeApiThief, "network: none\n");
  EXPECT_EQ(StealVictimsEvent(*server_), "\"refused: ConnectionRefusedError\"");
}

// Without the sandbox nothing can take the network away: such a function fails to start, and
// says why, rather than running with the host's network.
TEST(NetworkNoneTest, FailsClearlyWithoutTheSandbox) {
  auto server = ThawServer::Start({"--sandbox", "false"});
  std::string dir = PythonBundle("sealed", "def handler(e, c):\n    return 1\n", "network: none\n");
  auto deployed = server->Deploy("sealed", dir);
  RemoveDir(dir);
  ASSERT_EQ(deployed.status, 201) << deployed.body;
  auto r = server->Invoke("sealed");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.InitError") << r.body;
  EXPECT_NE(JsonField(r.body, "errorMessage").find("network: none needs the sandbox"),
            std::string::npos)
      << r.body;
  EXPECT_NE(JsonField(server->Call("GET", "/v1/node").body, "isolation")
                .find("network: none cannot be enforced"),
            std::string::npos);
}

// Jailed instances mount the runtimes folder: a server without one refuses to start and says
// why, rather than answering every call with a failed start.
TEST(RuntimesFolderTest, AJailedServerWithoutItRefusesToStart) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: thaw only jails instances as root";
  char tmpl[] = "/tmp/thaw-no-runtimes-XXXXXX";
  const std::string data_dir = ::mkdtemp(tmpl);
  const std::string missing = data_dir + "/no-runtimes-here";
  // A server that does start (no jail here) is stopped by the timeout, with status 124.
  ProcessResult r = RunProcess({"/usr/bin/timeout", "20", THAW_BINARY, "serve", "--listen",
                                "127.0.0.1:0", "--data-dir", data_dir, "--runtimes-dir", missing},
                               nullptr);
  RemoveDir(data_dir);
  const std::string said = r.out + r.err;
  if (r.exit_code == 124) GTEST_SKIP() << "instances are not jailed here: " << said;
  EXPECT_NE(r.exit_code, 0) << said;
  EXPECT_NE(said.find("runtimes folder " + missing + " is not there"), std::string::npos) << said;
}

}  // namespace
}  // namespace thaw::testing

// GPU isolation with fake device nodes (mknod in a test directory standing in for /dev): a
// jailed instance sees only the GPU nodes it holds and can open them; its device cgroup
// refuses another GPU's number even when that node is reachable; the cgroup v2 BPF device
// program refuses exactly the numbers it lists. Privileged: skips with the reason without root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/files.h"
#include "sandbox/gpu.h"
#include "sandbox/spawner.h"

namespace thaw::sandbox {
namespace {

// Stand-ins with real drivers behind them, which open for anyone and which the probe does not
// need: "GPU 0" is /dev/full's number, "GPU 1" /dev/random's, the control node /dev/zero's.
struct FakeNode {
  const char* name;
  unsigned major_number, minor_number;
};
constexpr FakeNode kFakeNodes[] = {{"nvidia0", 1, 7}, {"nvidia1", 1, 8}, {"nvidiactl", 1, 5}};

// Prints, for each node, "NAME open", "NAME refused" or "NAME absent" as /dev shows it.
constexpr char kProbe[] =
    "for n in nvidia0 nvidia1 nvidiactl; do "
    "if [ ! -e /dev/$n ]; then echo $n absent; "
    "elif (exec 3</dev/$n) 2>/dev/null; then echo $n open; else echo $n refused; fi; done";

class GpuIsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: device nodes, jails and cgroups";
    char tmpl[] = "/tmp/thaw_gpu.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    for (const char* sub : {"/jail", "/locks", "/bundle", "/runtimes", "/dev"}) {
      ASSERT_TRUE(MakeDirs(dir_ + sub).ok());
    }
    for (const FakeNode& n : kFakeNodes) {
      const std::string path = dir_ + "/dev/" + n.name;
      ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0666, makedev(n.major_number, n.minor_number)), 0)
          << "mknod " << path << ": " << strerror(errno);
      ::chmod(path.c_str(), 0666);
    }
  }
  void TearDown() override {
    client_.reset();
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }

  // Starts a jailed spawner; false (the test then skips) when this machine cannot jail.
  bool StartSpawner() {
    SpawnerOptions options;
    options.jail_root = dir_ + "/jail";
    options.runtimes_dir = dir_ + "/runtimes";
    options.tmp_bytes = 1 << 20;
    options.instance_uids = 3;
    options.uid_lock_dir = dir_ + "/locks";
    auto client = SpawnerClient::Start(options);
    EXPECT_TRUE(client.ok()) << client.status().message();
    if (!client.ok()) return false;
    client_ = std::move(*client);
    return client_->mode() == Isolation::kJail && client_->cgroups() != nullptr;
  }

  // Runs kProbe jailed with these nodes bound and denied; returns what it printed.
  std::string Probe(const std::vector<std::string>& bind, const std::vector<std::string>& deny) {
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    SpawnRequest req;
    req.argv = {"/bin/sh", "-c", kProbe};
    req.env = {"PATH=/usr/bin:/bin"};
    req.cwd = "/var/task";
    req.bundle_dir = dir_ + "/bundle";
    req.cgroup = "gpu-test";
    req.limits.memory_bytes = 64 << 20;
    req.limits.pids_max = 32;
    req.stdout_fd = out[1];
    req.stderr_fd = out[1];
    for (const auto& b : bind) req.gpu_bind.push_back(dir_ + "/dev/" + b);
    for (const auto& d : deny) req.gpu_deny.push_back(dir_ + "/dev/" + d);
    auto spawned = client_->SpawnAndWait(req);
    ::close(out[1]);
    EXPECT_TRUE(spawned.ok()) << spawned.status().message();
    std::string text;
    char buf[512];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    return text;
  }

  std::string dir_;
  std::unique_ptr<SpawnerClient> client_;
};

TEST_F(GpuIsolationTest, InstanceSeesAndOpensOnlyItsOwnGpu) {
  if (!StartSpawner()) GTEST_SKIP() << "no jail with cgroups here: " << client_->isolation();
  EXPECT_EQ(Probe({"nvidia0", "nvidiactl"}, {"nvidia1"}),
            "nvidia0 open\nnvidia1 absent\nnvidiactl open\n");
  EXPECT_EQ(Probe({"nvidia1", "nvidiactl"}, {"nvidia0"}),
            "nvidia0 absent\nnvidia1 open\nnvidiactl open\n");
}

// The mounts are one layer; the device cgroup is the other: with GPU 1's node bound in by
// mistake, the instance still cannot open it.
TEST_F(GpuIsolationTest, DeviceCgroupRefusesAnotherGpuEvenWhenItsNodeIsThere) {
  if (!StartSpawner()) GTEST_SKIP() << "no jail with cgroups here: " << client_->isolation();
  EXPECT_EQ(Probe({"nvidia0", "nvidia1", "nvidiactl"}, {"nvidia1"}),
            "nvidia0 open\nnvidia1 refused\nnvidiactl open\n");
  // Without the denial the same node opens: the refusal above is the cgroup's doing.
  EXPECT_EQ(Probe({"nvidia0", "nvidia1", "nvidiactl"}, {}),
            "nvidia0 open\nnvidia1 open\nnvidiactl open\n");
}

TEST(GpuBpfTest, VerifierAcceptsTheDenyProgram) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: BPF_PROG_LOAD";
  auto none = LoadDenyProgram({});
  ASSERT_TRUE(none.ok()) << none.status().message();
  auto some = LoadDenyProgram({{'c', 195, 1}, {'c', 195, 2}, {'b', 7, 0}});
  ASSERT_TRUE(some.ok()) << some.status().message();
}

// The v2 program attached to a cgroup of the unified hierarchy (cgroup v2, or the "unified"
// mount of a hybrid v1 host): a process in it cannot open the denied number, and can the rest.
TEST(GpuBpfTest, ProgramOnUnifiedCgroupRefusesTheDeniedDevice) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: cgroups and BPF";
  std::string unified;
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    if (PathExists(std::string(root) + "/cgroup.procs") &&
        PathExists(std::string(root) + "/cgroup.controllers")) {
      unified = root;
      break;
    }
  }
  if (unified.empty()) {
    GTEST_SKIP() << "no cgroup v2 (unified) hierarchy mounted: the BPF device program has nothing "
                    "to attach to (the v1 devices controller is tested instead)";
  }
  const std::string cg = unified + "/thaw-gpu-bpf-test-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(cg.c_str(), 0755), 0) << cg << ": " << strerror(errno);
  auto program = LoadDenyProgram({{'c', 1, 7}});  // /dev/full
  ASSERT_TRUE(program.ok()) << program.status().message();
  Status attached = AttachDeviceProgram(program->get(), cg);
  ASSERT_TRUE(attached.ok()) << attached.message();
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string me = std::to_string(::getpid());
    int fd = ::open((cg + "/cgroup.procs").c_str(), O_WRONLY);
    if (fd < 0 || ::write(fd, me.data(), me.size()) < 0) _exit(10);
    ::close(fd);
    const bool full_refused = ::open("/dev/full", O_RDONLY) < 0 && errno == EPERM;
    const bool null_opens = ::open("/dev/null", O_RDONLY) >= 0;
    _exit(full_refused && null_opens ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::rmdir(cg.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: could not join; 1: the program did not decide";
}

}  // namespace
}  // namespace thaw::sandbox

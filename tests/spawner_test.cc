// The spawner against real processes (privileged: jailed instances need root). Starts are
// asynchronous; every live instance has a uid no other live instance has, and uids come back
// only when an instance is gone, however many instances start over time.
#include "sandbox/spawner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "common/files.h"

namespace thaw::sandbox {
namespace {

// The uid /proc shows for `pid` (its real uid), or -1.
int64_t UidOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) return std::stoll(line.substr(4));
  }
  return -1;
}

class SpawnerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kUids = 3;

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: only jailed instances get uids of their own";
    char tmpl[] = "/tmp/thaw_spawner.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    for (const char* sub : {"/jail", "/locks", "/bundle", "/runtimes"}) {
      ASSERT_TRUE(MakeDirs(dir_ + sub).ok());
    }
    SpawnerOptions options;
    options.jail_root = dir_ + "/jail";
    options.runtimes_dir = dir_ + "/runtimes";
    options.tmp_bytes = 1 << 20;
    options.instance_uids = kUids;
    options.uid_lock_dir = dir_ + "/locks";
    Configure(options);
    auto client = SpawnerClient::Start(options);
    ASSERT_TRUE(client.ok()) << client.status().message();
    client_ = std::move(*client);
    if (client_->mode() != Isolation::kJail) GTEST_SKIP() << client_->isolation();
    null_ = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  }
  virtual void Configure(SpawnerOptions& options) {}
  void TearDown() override {
    client_.reset();
    if (null_ >= 0) ::close(null_);
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }

  SpawnRequest Sleeper() {
    SpawnRequest req;
    req.argv = {"/usr/bin/sleep", "60"};
    req.env = {"PATH=/usr/bin"};
    req.cwd = "/var/task";
    req.bundle_dir = dir_ + "/bundle";
    req.cgroup = "spawner-test-" + std::to_string(++count_);
    req.limits.memory_bytes = 64 << 20;
    req.limits.pids_max = 16;
    req.limits.cpu_weight = 100;
    req.stdout_fd = null_;
    req.stderr_fd = null_;
    return req;
  }

  // Kills `pid` and waits for its exit event.
  void KillAndAwait(pid_t pid) {
    client_->Kill(pid);
    for (;;) {
      ExitEvent ev;
      ASSERT_EQ(::recv(client_->exit_fd(), &ev, sizeof(ev), 0), ssize_t(sizeof(ev)));
      if (ev.pid == pid) return;
    }
  }

  std::string dir_;
  std::unique_ptr<SpawnerClient> client_;
  int null_ = -1;
  int count_ = 0;
};

TEST_F(SpawnerTest, ManyStartsInFlightGetUidsOfTheirOwn) {
  client_->StartReplyThread();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<StatusOr<Spawned>> results;
  // All sent before any is answered: Spawn returns without waiting for a child.
  for (int i = 0; i < kUids + 1; ++i) {
    client_->Spawn(Sleeper(), [&](StatusOr<Spawned> r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(std::move(r));
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20),
                          [&] { return results.size() == static_cast<size_t>(kUids + 1); }));
  std::set<uid_t> uids;
  int refused = 0;
  for (auto& r : results) {
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("instance uids are in use"), std::string::npos)
          << r.status().message();
      ++refused;
      continue;
    }
    EXPECT_EQ(UidOf(r->pid), r->uid);
    uids.insert(r->uid);
  }
  EXPECT_EQ(refused, 1);  // one more than the uids: refused, never given a uid in use
  EXPECT_EQ(uids, (std::set<uid_t>{200000, 200001, 200002}));
}

// How many children `pid` has now (its threads' children lists; the spawner has one thread).
size_t ChildrenOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  size_t n = 0;
  for (pid_t child; in >> child;) ++n;
  return n;
}

// The ext4 device mounted at /tmp in `pid`'s mount namespace ("" when none).
std::string TmpDeviceOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    if (mount_point == "/tmp" && line.find(" - ext4 ") != std::string::npos) return devno;
  }
  return "";
}

// A burst larger than the ready shells, with /tmp disks: the first starts take ready shells,
// the rest make theirs on demand, all at once, each copying the spawner's disk template and
// attaching a loop device of its own.
class SpawnerBurstTest : public SpawnerTest {
 protected:
  static constexpr size_t kReady = 4;
  static constexpr int kBurst = 10;
  void Configure(SpawnerOptions& options) override {
    options.ready_shells = kReady;
    options.instance_uids = kBurst;
    options.tmp_disk_dir = dir_ + "/disks";
    // The smallest size a function may ask for (sparse: nothing is written but the template's
    // metadata). Below 512 MB mkfs.ext4 picks 1 KB blocks, which the 4 KB loop devices refuse.
    options.tmp_bytes = 512LL << 20;
  }
};

TEST_F(SpawnerBurstTest, StartsPastTheReadyShellsEachWithATmpDiskOfItsOwn) {
  if (client_->tmp_storage() != "disk") GTEST_SKIP() << "no /tmp disks: " << client_->isolation();
  // Made while it is idle: kReady shells, and one network: none shell.
  for (int i = 0; i < 400 && ChildrenOf(client_->spawner_pid()) < kReady + 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ChildrenOf(client_->spawner_pid()), kReady + 1);
  client_->StartReplyThread();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<StatusOr<Spawned>> results;
  for (int i = 0; i < kBurst; ++i) {
    client_->Spawn(Sleeper(), [&](StatusOr<Spawned> r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(std::move(r));
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60),
                          [&] { return results.size() == static_cast<size_t>(kBurst); }));
  std::set<std::string> devices, cgroups;
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    const std::string device = TmpDeviceOf(r->pid);
    EXPECT_NE(device, "") << "no /tmp disk in instance " << r->pid;
    devices.insert(device);
    cgroups.insert(r->cgroup);
  }
  EXPECT_EQ(devices.size(), static_cast<size_t>(kBurst));  // no two share a disk
  EXPECT_EQ(cgroups.size(), static_cast<size_t>(kBurst));
}

TEST_F(SpawnerTest, UidsComeBackOnlyWhenTheInstanceIsGone) {
  std::vector<Spawned> live;
  for (int i = 0; i < kUids; ++i) {
    auto s = client_->SpawnAndWait(Sleeper());
    ASSERT_TRUE(s.ok()) << s.status().message();
    live.push_back(std::move(*s));
  }
  // Ten times the range, one at a time: each new instance takes the uid of the one just gone,
  // and never that of an instance still running.
  for (int i = 0; i < 10 * kUids; ++i) {
    const uid_t freed = live.front().uid;
    KillAndAwait(live.front().pid);
    live.erase(live.begin());
    auto s = client_->SpawnAndWait(Sleeper());
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ(s->uid, freed);
    for (const auto& other : live) EXPECT_NE(other.uid, s->uid);
    EXPECT_EQ(UidOf(s->pid), s->uid);
    live.push_back(std::move(*s));
  }
}

TEST_F(SpawnerTest, AFailedExecGivesItsUidBack) {
  for (int i = 0; i < 2 * kUids; ++i) {
    SpawnRequest req = Sleeper();
    req.argv = {"/var/task/missing"};
    auto s = client_->SpawnAndWait(req);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("missing"), std::string::npos) << s.status().message();
  }
  auto s = client_->SpawnAndWait(Sleeper());
  EXPECT_TRUE(s.ok()) << s.status().message();
}

}  // namespace
}  // namespace thaw::sandbox

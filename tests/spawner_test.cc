// The spawner against real processes (privileged: jailed instances need root). Starts are
// asynchronous; every live instance has a uid no other live instance has, and uids come back
// only when an instance is gone, however many instances start over time.
#include "sandbox/spawner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "common/files.h"
#include "sandbox/cgroup.h"
#include "sandbox/wire.h"

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

// Where the link at `path` points, or "".
std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
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
    options.shell_exe = THAW_SHELL_EXE;  // as `thaw serve` finds it beside itself
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

  // Runs `command` (/bin/sh -c) to its end in a new instance with a Sleeper's limits and bundle,
  // the bundle holding `hello`: `out` gets what it printed, `uid` the uid it ran as.
  void RunToEnd(const std::string& command, std::string& out, uid_t& uid) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/bundle/hello", "bundled\n").ok());
    SpawnRequest req = Sleeper();
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    req.argv = {"/bin/sh", "-c", command};
    req.stdout_fd = fds[1];
    auto s = client_->SpawnAndWait(req);
    ::close(fds[1]);
    if (s.ok()) {
      uid = s->uid;
      char buf[256];
      for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
    }
    ::close(fds[0]);
    ASSERT_TRUE(s.ok()) << s.status().message();
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

// The first of the spawner's ready shells once it waits on its control socket (it prepares
// first), or 0.
pid_t WaitingShell(pid_t spawner) {
  for (int i = 0; i < 400; ++i) {
    std::ifstream children("/proc/" + std::to_string(spawner) + "/task/" + std::to_string(spawner) +
                           "/children");
    pid_t shell = 0;
    if (children >> shell) {
      std::ifstream wchan("/proc/" + std::to_string(shell) + "/wchan");
      std::string at;
      wchan >> at;
      if (at == "__skb_wait_for_more_packets") return shell;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

// How many mappings `pid` has (lines of /proc/PID/maps).
size_t MappingsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// While idle the spawner makes its ready shells a batch at a time (8 per idle turn); a start
// that arrives during a batch waits for the shell being made, not for the rest of the batch
// (a burst's first calls used to wait behind up to 8 shells, 10-30 ms on a small machine).
class SpawnerRefillTest : public SpawnerTest {
 protected:
  static constexpr size_t kReady = 64;  // batches enough for every attempt
  void Configure(SpawnerOptions& options) override { options.ready_shells = kReady; }

  // Waits for a refill batch to begin: children added after a pause (the spawner's idle wait
  // between batches) with room below kReady for the rest of the batch. False after 10 s.
  bool AwaitBatchStart(pid_t spawner) {
    size_t seen = ChildrenOf(spawner);
    auto changed_at = std::chrono::steady_clock::now();
    const auto deadline = changed_at + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      const size_t now = ChildrenOf(spawner);
      if (now == seen) continue;
      const auto at = std::chrono::steady_clock::now();
      if (now > seen && at - changed_at >= std::chrono::milliseconds(10) && now + 8 < kReady) {
        return true;
      }
      seen = now;
      changed_at = at;
    }
    return false;
  }
};

TEST_F(SpawnerRefillTest, AStartDuringARefillWaitsForOneShellAtMost) {
  const pid_t spawner = client_->spawner_pid();
  client_->StartReplyThread();
  using std::chrono::steady_clock;
  // A reply read late (a loaded machine) could count shells of the spawner's next idle turn,
  // 20 ms after it: such an attempt says nothing and is made again.
  int timely = 0;
  for (int attempt = 0; attempt < 5 && timely == 0; ++attempt) {
    ASSERT_TRUE(AwaitBatchStart(spawner)) << ChildrenOf(spawner) << " children";
    std::promise<std::pair<size_t, steady_clock::time_point>> at_reply;
    pid_t instance = 0;
    client_->Spawn(Sleeper(), [&](StatusOr<Spawned> r) {
      if (r.ok()) instance = r->pid;
      at_reply.set_value({ChildrenOf(spawner), steady_clock::now()});
    });
    // Counted once the request is on its way: any shell begun after this began after it came.
    const auto sent = steady_clock::now();
    const size_t before = ChildrenOf(spawner);
    const auto [after, replied] = at_reply.get_future().get();
    ASSERT_NE(instance, 0) << "the start failed";
    if (replied - sent < std::chrono::milliseconds(15)) {
      ++timely;
      // The start took a ready shell (now its instance): besides it, at most the shell that was
      // being made when the request came.
      EXPECT_LE(after, before + 1);
    }
    KillAndAwait(instance);  // its uid back for the next attempt
  }
  EXPECT_EQ(timely, 1) << "every reply came late";
}

// Regression (the burst's exec teardown): a waiting jailed shell has become thaw-shell, a
// small static program, so the exec at a start tears down a dozen mappings instead of the
// shell's copy of the spawner's (some 250: thaw's libraries), most of a jailed start's CPU.
TEST_F(SpawnerTest, AWaitingShellIsThawShellWithFewMappings) {
  const pid_t shell = WaitingShell(client_->spawner_pid());
  ASSERT_NE(shell, 0) << "no shell waited";
  auto exe = ReadLink("/proc/" + std::to_string(shell) + "/exe");
  EXPECT_NE(exe.find("thaw-shell"), std::string::npos) << exe;
  EXPECT_LT(MappingsOf(shell), 20u);
  EXPECT_LT(MappingsOf(shell), MappingsOf(client_->spawner_pid()));  // what it would have had
  // It becomes an instance like any shell: its uid, its limits' cgroup, its bundle.
  std::string got;
  uid_t uid = 0;
  ASSERT_NO_FATAL_FAILURE(RunToEnd("cat /var/task/hello; id -u", got, uid));
  EXPECT_EQ(got, "bundled\n" + std::to_string(uid) + "\n");
}

// pids.max of `pid`'s pids cgroup (v1 or v2), or "".
std::string PidsMaxOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':'), second = line.find(':', colon + 1);
    const std::string controllers = line.substr(colon + 1, second - colon - 1);
    const std::string path = line.substr(second + 1);
    std::string file;
    if (controllers == "pids") file = "/sys/fs/cgroup/pids" + path + "/pids.max";
    if (controllers.empty() && !std::ifstream("/sys/fs/cgroup/pids").good()) {
      file = "/sys/fs/cgroup" + path + "/pids.max";
    }
    if (file.empty()) continue;
    std::string value;
    std::ifstream(file) >> value;
    return value;
  }
  return "";
}

// Shells are made with the limits the last start of their kind asked for, and a start asking
// the same skips writing them: every instance still runs under the limits it asked for, the
// same as the last start's or not.
TEST_F(SpawnerTest, EachInstanceGetsTheLimitsItAskedForWhateverItsShellWasMadeWith) {
  std::vector<Spawned> live;
  for (int64_t pids : {16, 16, 24}) {
    SpawnRequest req = Sleeper();
    req.limits.pids_max = pids;
    auto s = client_->SpawnAndWait(req);
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ(PidsMaxOf(s->pid), std::to_string(pids)) << "instance " << live.size();
    live.push_back(std::move(*s));
  }
  KillAndAwait(live.front().pid);
  SpawnRequest req = Sleeper();
  req.limits.pids_max = 16;  // its shell was made after a start that asked 24
  auto s = client_->SpawnAndWait(req);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(PidsMaxOf(s->pid), "16");
}

// Without thaw-shell (not installed beside thaw), shells wait as copies of the spawner and
// instances start as before.
class SpawnerWithoutShellExeTest : public SpawnerTest {
 protected:
  void Configure(SpawnerOptions& options) override { options.shell_exe = dir_ + "/missing"; }
};

TEST_F(SpawnerWithoutShellExeTest, ShellsWaitAsCopiesOfTheSpawnerAndStillStart) {
  const pid_t shell = WaitingShell(client_->spawner_pid());
  ASSERT_NE(shell, 0) << "no shell waited";
  EXPECT_EQ(ReadLink("/proc/" + std::to_string(shell) + "/exe"),
            ReadLink("/proc/" + std::to_string(client_->spawner_pid()) + "/exe"));
  auto s = client_->SpawnAndWait(Sleeper());
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(UidOf(s->pid), s->uid);
}

// A waiting shell has pivoted into its root already (the unmount of the host's tree, which
// waits for an RCU grace period under the host-wide mount lock, is no part of a start): its
// mount table holds the jail's mounts alone, none at the host path of the jail root.
TEST_F(SpawnerTest, AWaitingShellHasLeftTheHostsMountsBehind) {
  for (int i = 0; i < 400 && ChildrenOf(client_->spawner_pid()) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream children("/proc/" + std::to_string(client_->spawner_pid()) + "/task/" +
                         std::to_string(client_->spawner_pid()) + "/children");
  pid_t shell = 0;
  ASSERT_TRUE(children >> shell);
  // Its mount table once it waits on its control socket (it prepares first).
  std::string mounts;
  for (int i = 0; i < 400; ++i) {
    std::ifstream wchan("/proc/" + std::to_string(shell) + "/wchan");
    std::string at;
    wchan >> at;
    if (at == "__skb_wait_for_more_packets") {
      std::ifstream in("/proc/" + std::to_string(shell) + "/mountinfo");
      mounts.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(mounts.empty()) << "shell " << shell << " never waited";
  EXPECT_EQ(mounts.find(" " + dir_ + "/jail "), std::string::npos) << mounts;
  // And an instance started in it still gets its bundle, read-only, at /var/task.
  std::string got;
  uid_t uid = 0;
  ASSERT_NO_FATAL_FAILURE(
      RunToEnd("cat /var/task/hello; touch /var/task/x 2>/dev/null || echo ro", got, uid));
  EXPECT_EQ(got, "bundled\nro\n");
}

// Each datagram comes back whole and alone, a short one after a long one included (the
// receive buffer is scratch memory reused across calls), with its descriptors.
TEST(WireTest, RecvWithFdsReturnsEachDatagramWhole) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  const std::string long_one(150000, 'x');
  ASSERT_EQ(SendWithFds(sv[0], long_one, nullptr, 0), ssize_t(long_one.size()));
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_EQ(SendWithFds(sv[0], "short", pipe_fds, 2), 5);
  std::string buf;
  std::vector<int> fds;
  ASSERT_EQ(RecvWithFds(sv[1], buf, fds), ssize_t(long_one.size()));
  EXPECT_EQ(buf, long_one);
  EXPECT_TRUE(fds.empty());
  ASSERT_EQ(RecvWithFds(sv[1], buf, fds, 4096), 5);
  EXPECT_EQ(buf, "short");
  ASSERT_EQ(fds.size(), 2u);
  // The descriptors that came are the pipe's ends: a byte written into one comes out.
  ASSERT_EQ(::write(fds[1], "!", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(pipe_fds[0], &c, 1), 1);
  EXPECT_EQ(c, '!');
  for (int fd : {sv[0], sv[1], pipe_fds[0], pipe_fds[1], fds[0], fds[1]}) ::close(fd);
}

// A burst of starts is answered as its children exec, not once the spawner has forked the
// last of them: it takes a few requests per turn and then settles the starts in flight. When
// the first answer comes, most of the burst has not been forked yet (before, all had).
TEST(SpawnerPlainTest, AnswersStartsWhileRequestsKeepComing) {
  char tmpl[] = "/tmp/thaw_spawner_plain.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  SpawnerOptions options;
  options.sandbox = false;
  options.jail_root = dir;
  options.runtimes_dir = dir;
  auto started = SpawnerClient::Start(options);
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::unique_ptr<SpawnerClient> client = std::move(*started);
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  client->StartReplyThread();
  constexpr size_t kBurst = 200;
  std::mutex mu;
  std::condition_variable cv;
  size_t answered = 0, forked_at_first = 0;
  std::vector<pid_t> pids;
  for (size_t i = 0; i < kBurst; ++i) {
    SpawnRequest req;
    req.argv = {"/usr/bin/sleep", "60"};
    req.env = {"PATH=/usr/bin"};
    req.cwd = dir;
    req.stdout_fd = null;
    req.stderr_fd = null;
    client->Spawn(req, [&](StatusOr<Spawned> r) {
      const size_t forked = ChildrenOf(client->spawner_pid());
      std::lock_guard<std::mutex> lock(mu);
      if (answered++ == 0) forked_at_first = forked;
      if (r.ok()) pids.push_back(r->pid);
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered == kBurst; }));
  }
  EXPECT_EQ(pids.size(), kBurst);
  RecordProperty("forked_at_first_answer", static_cast<int>(forked_at_first));
  EXPECT_LT(forked_at_first, kBurst / 2)
      << "the first start was answered after " << forked_at_first << " of " << kBurst << " forks";
  for (pid_t pid : pids) client->Kill(pid);
  client.reset();
  ::close(null);
  (void)RemoveTree(dir);
}

// Plain children are cloned vfork-style (they share the spawner's memory until they exec): an
// exec that fails still says why, and the spawner goes on starting the next ones.
TEST(SpawnerPlainTest, AFailedExecSaysWhyAndTheNextStartWorks) {
  char tmpl[] = "/tmp/thaw_spawner_plain.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  SpawnerOptions options;
  options.sandbox = false;
  options.jail_root = dir;
  options.runtimes_dir = dir;
  auto started = SpawnerClient::Start(options);
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::unique_ptr<SpawnerClient> client = std::move(*started);
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  SpawnRequest req;
  req.env = {"PATH=/usr/bin", "GREETING=hello from the child"};
  req.cwd = dir;
  req.stdout_fd = out[1];
  req.stderr_fd = out[1];
  for (int i = 0; i < 3; ++i) {
    req.argv = {dir + "/missing"};
    auto failed = client->SpawnAndWait(req);
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.status().message().find(dir + "/missing"), std::string::npos)
        << failed.status().message();
    req.argv = {"/bin/sh", "-c", "echo \"$GREETING\""};
    auto ran = client->SpawnAndWait(req);
    ASSERT_TRUE(ran.ok()) << ran.status().message();
  }
  // Until EOF: every child has ended (the spawner closed its copies of the pipe at the start).
  ::close(out[1]);
  std::string got;
  char buf[256];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof(buf))) > 0;) got.append(buf, n);
  ::close(out[0]);
  client.reset();
  EXPECT_EQ(got, "hello from the child\nhello from the child\nhello from the child\n");
  (void)RemoveTree(dir);
}

// The spawner's cgroups made ahead for forks: a process joins one through its open
// cgroup.procs files, in every hierarchy, and a refused move is an error, not a silent miss.
TEST(CgroupProcsTest, AddMovesAProcessIntoEveryHierarchy) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: cgroups";
  auto cgroups = Cgroups::Detect();
  if (!cgroups.ok()) GTEST_SKIP() << cgroups.status().message();
  const std::string name = "procs-test-" + std::to_string(::getpid());
  ASSERT_TRUE((*cgroups)->Create(name, CgroupLimits{}).ok());
  auto procs = CgroupProcs::Open(**cgroups, name);
  ASSERT_TRUE(procs.ok()) << procs.status().message();
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  const Status added = procs->Add(child);
  std::vector<std::string> missing;  // hierarchies whose cgroup.procs does not list the child
  for (const std::string& file : (*cgroups)->ProcsFiles(name)) {
    std::ifstream in(file);
    std::set<std::string> pids{std::istream_iterator<std::string>(in), {}};
    if (!pids.contains(std::to_string(child))) missing.push_back(file);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(added.ok()) << added.message();
  EXPECT_TRUE(missing.empty()) << missing.front();
  EXPECT_FALSE(procs->Add(child).ok());  // reaped: no such process
  EXPECT_TRUE((*cgroups)->Remove(name).ok());
}

}  // namespace
}  // namespace thaw::sandbox

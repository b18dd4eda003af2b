// common/cpu_affinity.h: the shard-to-CPU map, and real pinning of a thread and of every
// thread of another process.
#include "common/cpu_affinity.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace thaw {
namespace {

std::vector<int> AffinityOf(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(tid, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

TEST(CpuAffinityTest, ShardCpuIsRoundRobinOverTheAllowedCpus) {
  const std::vector<int> cpus = {2, 5, 7};
  EXPECT_EQ(ShardCpu(cpus, 0), 2);
  EXPECT_EQ(ShardCpu(cpus, 1), 5);
  EXPECT_EQ(ShardCpu(cpus, 2), 7);
  EXPECT_EQ(ShardCpu(cpus, 3), 2);
  EXPECT_EQ(ShardCpu(cpus, -1), -1);  // not a shard thread
  EXPECT_EQ(ShardCpu({}, 0), -1);     // pinning off
}

TEST(CpuAffinityTest, AllowedCpusIsThisProcessMask) {
  EXPECT_EQ(AllowedCpus(), AffinityOf(0));
  EXPECT_FALSE(AllowedCpus().empty());
}

TEST(CpuAffinityTest, PinThisThreadLeavesOtherThreadsAlone) {
  const std::vector<int> all = AllowedCpus();
  if (all.size() < 2) GTEST_SKIP() << "needs two CPUs to tell a pinned thread apart";
  std::vector<int> inside;
  std::thread t([&] {
    ASSERT_TRUE(PinThisThread(all.back()).ok());
    inside = AffinityOf(0);
  });
  t.join();
  EXPECT_EQ(inside, std::vector<int>{all.back()});
  EXPECT_EQ(AffinityOf(0), all);
}

TEST(CpuAffinityTest, PinProcessPinsEveryThreadOfIt) {
  const std::vector<int> all = AllowedCpus();
  if (all.size() < 2) GTEST_SKIP() << "needs two CPUs to tell a pinned process apart";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // a second thread, then wait to be killed
    std::thread([] { ::pause(); }).detach();
    (void)::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  Status st = PinProcess(child, all.front());
  std::vector<std::vector<int>> threads;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(child) + "/task").c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') threads.push_back(AffinityOf(std::stoi(e->d_name)));
    }
    ::closedir(d);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(threads.size(), 2u);
  for (const auto& t : threads) EXPECT_EQ(t, std::vector<int>{all.front()});
}

TEST(CpuAffinityTest, PinProcessOfNoProcessFails) {
  const Status st = PinProcess(999'999'999, 0);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("failed to list threads on process 999999999"), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace thaw

// RemoveTree and WalkTree (common/files.h) on trees made here with *at() calls, including ones
// far deeper than PATH_MAX allows as a single path, and the registry's start-up clean-up that
// uses them.
#include "common/files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "registry/registry.h"
#include "store/db.h"

namespace thaw {
namespace {

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // tmpfs where there is one: 15,000 metadata operations take seconds on a busy disk.
    std::string tmpl =
        (PathExists("/dev/shm") ? "/dev/shm" : "/tmp") + std::string("/thaw_files_test.XXXXXX");
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(root_); }

  // Makes `levels` nested folders named "d" under `dir`, each holding a file "f"; every folder
  // (and file) read-only, as a deployed bundle is.
  void MakeDeep(const std::string& dir, int levels) {
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < levels; ++i) {
      int f = ::openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
      ASSERT_GE(f, 0);
      ::close(f);
      ASSERT_EQ(::mkdirat(fd, "d", 0755), 0) << "level " << i;
      int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ASSERT_GE(next, 0);
      ASSERT_EQ(::fchmod(fd, 0555), 0);
      ::close(fd);
      fd = next;
    }
    ::close(fd);
  }

  std::string root_;
};

long MaxRssKb() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// One folder open at a time: depth costs neither memory nor fds.
TEST_F(FilesTest, RemoveTreeOfFiveThousandReadOnlyLevelsStaysSmall) {
  const std::string tree = root_ + "/tree";
  MakeDeep(tree, 5000);
  const long before = MaxRssKb();
  Status st = RemoveTree(tree);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(PathExists(tree));
  EXPECT_LT(MaxRssKb() - before, 32 * 1024) << "peak RSS grew by more than 32 MB";
}

// Regression: the start-up clean-up of a deleted function's 5,000-deep bundle took 8.9 s and
// 1.9 GB (a recursive_directory_iterator restoring write bits keeps a path per level, each a
// list of every component). It now goes through RemoveTree.
TEST_F(FilesTest, RegistryStartUpCleanUpOfADeepOrphanBundleStaysSmall) {
  const std::string data = root_ + "/data";
  ASSERT_TRUE(MakeDirs(data + "/bundles").ok());
  MakeDeep(data + "/bundles/0123abcd", 5000);
  ASSERT_EQ(::chmod((data + "/bundles/0123abcd").c_str(), 0555), 0);
  const long before = MaxRssKb();
  auto reg = registry::Registry::Open(data, registry::UnpackLimits{});
  ASSERT_TRUE(reg.ok()) << reg.status().ToString();
  EXPECT_FALSE(PathExists(data + "/bundles/0123abcd"));
  EXPECT_LT(MaxRssKb() - before, 32 * 1024) << "peak RSS grew by more than 32 MB";
}

TEST_F(FilesTest, RemoveTreeNeverFollowsSymlinks) {
  const std::string outside = root_ + "/outside", tree = root_ + "/tree";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomic(outside + "/keep", "x").ok());
  ASSERT_EQ(::mkdir(tree.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (tree + "/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(tree).ok());
  EXPECT_FALSE(PathExists(tree));
  EXPECT_TRUE(PathExists(outside + "/keep"));
}

TEST_F(FilesTest, RemoveTreeOfFileOrMissingPath) {
  ASSERT_TRUE(WriteFileAtomic(root_ + "/file", "x").ok());
  EXPECT_TRUE(RemoveTree(root_ + "/file").ok());
  EXPECT_FALSE(PathExists(root_ + "/file"));
  EXPECT_TRUE(RemoveTree(root_ + "/missing").ok());
}

TEST_F(FilesTest, WalkTreeVisitsEverythingOnceAndStopsPastMaxDepth) {
  const std::string tree = root_ + "/tree";
  MakeDeep(tree, 10);
  std::multiset<std::string> seen;
  Status st = WalkTree(tree, 10, [&](int, const char* name, const struct stat& st) {
    seen.insert(std::string(name) + (S_ISDIR(st.st_mode) ? "/" : ""));
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(seen.count("d/"), 10u);
  EXPECT_EQ(seen.count("f"), 10u);
  EXPECT_EQ(seen.size(), 20u);
  st = WalkTree(tree, 9, [](int, const char*, const struct stat&) { return Status::Ok(); });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("deeper than 9 levels"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace thaw

// The pure parts of the jail (sandbox/jail.h); the jail itself is probed from inside by
// tests/sandbox_test.cc.
#include "sandbox/jail.h"

#include <gtest/gtest.h>

namespace thaw::sandbox {
namespace {

TEST(MountInfoTest, MountRootsAndPathOptionsAreHidden) {
  const std::string host =
      "21 20 0:40 / / ro,nosuid,nodev - tmpfs tmpfs ro,size=1024k,mode=755\n"
      "22 21 254:1 /srv/thaw/.thaw/bundles/5f3a9c /var/task ro,nosuid,nodev - ext4 /dev/vda1 "
      "rw\n"
      "23 21 254:1 /home/me/thaw/build/runtimes /opt/thaw ro master:1 - ext4 /dev/vda1 rw\n"
      "24 21 0:31 /usr /usr ro - overlay overlay "
      "rw,lowerdir=/var/lib/docker/l/A:/var/lib/docker/l/B,upperdir=/var/lib/docker/u,xino=off\n"
      "25 21 0:41 / /proc rw - proc proc rw\n"
      "garbage\n";
  const std::string want =
      "21 20 0:40 / / ro,nosuid,nodev - tmpfs tmpfs ro,size=1024k,mode=755\n"
      "22 21 254:1 / /var/task ro,nosuid,nodev - ext4 /dev/vda1 rw\n"
      "23 21 254:1 / /opt/thaw ro master:1 - ext4 /dev/vda1 rw\n"
      "24 21 0:31 / /usr ro - overlay overlay rw,xino=off\n"
      "25 21 0:41 / /proc rw - proc proc rw\n";
  EXPECT_EQ(HideHostPathsInMountInfo(host), want);
}

}  // namespace
}  // namespace thaw::sandbox

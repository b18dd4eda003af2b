// A jailed instance's /tmp as Lambda has it (ephemeral_storage_mb): a disk of its own, not its
// memory; full at its size; gone with the instance. Privileged: skipped, with the reason, where
// thaw cannot give instances their own disks (not root, no loop devices, no mkfs.ext4).
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <string>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

// Writes event.mb MB to /tmp in 1 MB pieces (or until the disk is full), then reports what
// happened and the size /tmp says it has; event.exit ends the instance afterwards, event.list
// lists /tmp first.
const char kTmpProbe[] = R"(import errno, os
def handler(event, context):
    out = {}
    if event.get('list'):
        out['listing'] = sorted(os.listdir('/tmp'))
    st = os.statvfs('/tmp')
    out['size_mb'] = st.f_blocks * st.f_frsize >> 20
    written = 0
    out['errno'] = ''
    if event.get('mb'):
        chunk = b'x' * (1 << 20)
        try:
            with open('/tmp/' + event.get('name', 'big'), 'wb') as f:
                while written < event['mb'] << 20:
                    f.write(chunk)
                    written += len(chunk)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            out['errno'] = errno.errorcode.get(err.errno, str(err.errno))
    out['written_mb'] = written >> 20
    if event.get('exit'):
        os._exit(3)
    return out
)";

class EphemeralStorageTest : public ServerTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: only jailed instances get a disk of /tmp";
    server_ = ThawServer::Start();
    auto node = server_->Call("GET", "/v1/node");
    const std::string isolation = JsonField(node.body, "isolation");
    if (isolation.find("cgroup") == std::string::npos) {
      GTEST_SKIP() << "no cgroups here, so memory_mb is not enforced: " << isolation;
    }
    if (isolation.find("/tmp an ext4 disk of its own") == std::string::npos) {
      GTEST_SKIP() << "no /tmp disks on this machine: " << isolation;
    }
  }

  json::object Call(const std::string& function, const json::object& event) {
    auto r = server_->Invoke(function, json::serialize(event));
    EXPECT_EQ(r.status, 200) << r.body;
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (ec || !v.is_object()) return {};
    return v.as_object();
  }
};

// With /tmp a tmpfs charged to the instance's memory cgroup, this was an OOM kill
// (Runtime.OutOfMemory); on its own disk it is ordinary file I/O.
TEST_F(EphemeralStorageTest, A128MbFunctionWrites200MbToTmp) {
  DeployPython("writer", kTmpProbe, "memory_mb: 128\ntimeout_s: 120\ntemplate: off\n");
  json::object out = Call("writer", {{"mb", 200}});
  EXPECT_EQ(out["errno"].as_string(), "") << json::serialize(out);
  EXPECT_EQ(out["written_mb"].as_int64(), 200) << json::serialize(out);
  // ext4's own metadata takes a little of the 512 MB.
  EXPECT_GE(out["size_mb"].as_int64(), 480);
  EXPECT_LE(out["size_mb"].as_int64(), 512);
}

TEST_F(EphemeralStorageTest, WritingPastItsSizeIsEnospcInTheFunction) {
  DeployPython("filler", kTmpProbe, "memory_mb: 256\ntimeout_s: 120\ntemplate: off\n");
  json::object out = Call("filler", {{"mb", 600}});
  EXPECT_EQ(out["errno"].as_string(), "ENOSPC") << json::serialize(out);
  EXPECT_GE(out["written_mb"].as_int64(), 450) << json::serialize(out);
  EXPECT_LT(out["written_mb"].as_int64(), 512) << json::serialize(out);
  // The instance survived its full disk, and so did the server.
  json::object again = Call("filler", {{"list", true}});
  EXPECT_EQ(again["written_mb"].as_int64(), 0);
}

TEST_F(EphemeralStorageTest, EachFunctionGetsTheSizeItAskedFor) {
  DeployPython("roomy", kTmpProbe, "ephemeral_storage_mb: 2048\ntemplate: off\n");
  auto info = server_->Call("GET", "/v1/functions/roomy");
  ASSERT_EQ(info.status, 200) << info.body;
  EXPECT_EQ(json::serialize(json::parse(info.body).at("ephemeral_storage")),
            R"({"size_mb":2048,"kind":"disk"})");
  json::object out = Call("roomy", {});
  EXPECT_GE(out["size_mb"].as_int64(), 2000) << json::serialize(out);
  EXPECT_LE(out["size_mb"].as_int64(), 2048) << json::serialize(out);
  // A second instance of that size comes from a shell made ahead (kept once asked for).
  auto r = server_->Invoke("roomy", R"({"exit": true})");
  EXPECT_EQ(r.status, 502) << r.body;
  out = Call("roomy", {});
  EXPECT_GE(out["size_mb"].as_int64(), 2000) << json::serialize(out);
}

TEST_F(EphemeralStorageTest, TheNextInstanceDoesNotSeeThePreviousInstancesFiles) {
  DeployPython("leaver", kTmpProbe, "template: off\n");
  // Writes a file, then its instance ends (exit 3): the call fails with Runtime.ExitError.
  auto r = server_->Invoke("leaver", R"({"mb": 1, "name": "left-behind", "exit": true})");
  EXPECT_EQ(r.status, 502) << r.body;
  json::object out = Call("leaver", {{"list", true}});
  ASSERT_TRUE(out.contains("listing")) << json::serialize(out);
  EXPECT_TRUE(out["listing"].as_array().empty()) << json::serialize(out);
}

}  // namespace
}  // namespace thaw::testing

// nodejs templates: a version's instances restored from a V8 heap snapshot taken after the
// function's init (the `restore` start kind; src/pool/restore.cc, runtimes/nodejs/runtime.cjs).
// Against the real server and spawner: the kind is reported, siblings differ in random state and
// identity while sharing the init's module state, and what a snapshot cannot hold (an ES module
// handler) or a blob that is gone falls back to a full start. As root the builds and instances
// are jailed; elsewhere the same behaviour holds for plain processes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

constexpr int kSnapshotWaitMs = 120'000;  // a snapshot build, on a machine under load

// Its init draws a random number and loads a helper module (and JSON) of its own: a restored
// instance must show the init's values, and a random state of its own.
constexpr char kWhoAmI[] =
    "const helper = require('./lib/helper');\n"
    "const initRandom = Math.random();\n"
    "const initPid = process.pid;\n"
    "console.log('init ran');\n"
    "exports.handler = async (e, c) => {\n"
    "  if (e.sleep) await new Promise((r) => setTimeout(r, e.sleep * 1000));\n"
    "  return { pid: process.pid, initPid, initRandom, random: Math.random(),\n"
    "           bytes: require('crypto').randomBytes(8).toString('hex'),\n"
    "           helper: helper.name, api: process.env.AWS_LAMBDA_RUNTIME_API,\n"
    "           stream: c.logStreamName, envStream: process.env.AWS_LAMBDA_LOG_STREAM_NAME };\n"
    "};\n";

class RestoreTest : public ServerTest {
 protected:
  void SetUp() override {
    server_ = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"});
    template_wait_ms_ = kSnapshotWaitMs;
  }
  void DeployNode(const std::string& name, std::map<std::string, std::string> files,
                  const std::string& yaml = "") {
    files["thaw.yaml"] = "runtime: nodejs\nhandler: index.handler\n" + yaml;
    dirs_.push_back(MakeBundle(files));
    auto r = server_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }
  void DeployWhoAmI(const std::string& name, const std::string& yaml = "") {
    DeployNode(name,
               {{"index.js", kWhoAmI},
                {"lib/helper.js", "exports.name = 'helper-' + require('../data.json').v;\n"},
                {"data.json", "{\"v\": 7}\n"}},
               yaml);
  }
  std::string Blob(const std::string& name) const {
    return server_->data_dir() + "/snapshots/" + name + "/1/snapshot.blob";
  }
};

TEST_F(RestoreTest, FirstCallAfterDeployIsRestoredWithTheInitsModuleState) {
  DeployWhoAmI("who");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  auto first = server_->Invoke("who");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.Header("x-thaw-cold-start"), "true");
  EXPECT_EQ(first.Header("x-thaw-start-kind"), "restore");
  auto o = json::parse(first.body).as_object();
  EXPECT_EQ(o.at("helper").as_string(), "helper-7");
  // The init ran in the build, not in this process.
  EXPECT_NE(o.at("initPid"), o.at("pid")) << first.body;
  EXPECT_EQ(o.at("stream"), o.at("envStream"));
  auto second = server_->Invoke("who");
  EXPECT_EQ(second.Header("x-thaw-start-kind"), "warm");
  auto logs = Logs("who");
  EXPECT_NE(logs.find("TEMPLATE_REPORT Init Duration: "), std::string::npos) << logs;
  EXPECT_NE(logs.find("Start Kind: restore"), std::string::npos) << logs;
  EXPECT_NE(logs.find("init ran"), std::string::npos) << logs;
  // The blob is the version's own, in the data dir, not readable by other host users' groups.
  struct stat st {};
  ASSERT_EQ(::stat(Blob("who").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  auto usage = json::serialize(json::parse(server_->Call("GET", "/v1/usage?function=who").body));
  EXPECT_NE(usage.find(R"("cold_starts_by_kind":{"fork":0,"restore":1,"full":0})"),
            std::string::npos)
      << usage;
  auto metrics = server_->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(thaw_cold_starts_by_kind_total{function="who",kind="restore"} 1)"),
            std::string::npos)
      << metrics;
}

TEST_F(RestoreTest, SiblingsShareTheInitButNotRandomStateOrIdentity) {
  DeployWhoAmI("who", "max_instances: 4\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(
        std::async(std::launch::async, [&] { return server_->Invoke("who", R"({"sleep":1.5})"); }));
  }
  std::set<std::string> randoms, bytes, apis, streams, init_randoms;
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-thaw-start-kind"), "restore");
    auto o = json::parse(r.body).as_object();
    randoms.insert(json::serialize(o.at("random")));
    bytes.insert(std::string(o.at("bytes").as_string()));
    apis.insert(std::string(o.at("api").as_string()));
    streams.insert(std::string(o.at("stream").as_string()));
    init_randoms.insert(json::serialize(o.at("initRandom")));
  }
  EXPECT_EQ(randoms.size(), 3u);
  EXPECT_EQ(bytes.size(), 3u);
  EXPECT_EQ(apis.size(), 3u);
  EXPECT_EQ(streams.size(), 3u);
  EXPECT_EQ(init_randoms.size(), 1u);  // one init, restored three times
}

TEST_F(RestoreTest, EsModuleHandlerFallsBackToFullWithTheReasonLoggedOnce) {
  DeployNode("esm", {{"index.mjs", "export const handler = async () => ({ ok: true });\n"}});
  ASSERT_TRUE(WaitForTemplate("esm", "unusable")) << Logs("esm");
  for (int i = 0; i < 2; ++i) {
    auto r = server_->Invoke("esm");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  EXPECT_EQ(server_->Invoke("esm").Header("x-thaw-start-kind"), "warm");
  const std::string logs = Logs("esm");
  size_t n = 0;
  for (size_t at = logs.find("an ES module handler"); at != std::string::npos;
       at = logs.find("an ES module handler", at + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 1u) << logs;
  EXPECT_NE(logs.find("cannot be in a snapshot"), std::string::npos) << logs;
  EXPECT_NE(logs.find("Start Kind: full"), std::string::npos) << logs;
  EXPECT_FALSE(std::filesystem::exists(Blob("esm")));
}

TEST_F(RestoreTest, DeletedBlobFallsBackToFullThenIsBuiltAgain) {
  DeployWhoAmI("who", "max_instances: 2\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  ASSERT_TRUE(std::filesystem::remove(Blob("who")));
  auto r = server_->Invoke("who");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  EXPECT_EQ(JsonField(r.body, "helper"), "helper-7");
  EXPECT_NE(Logs("who").find("its snapshot blob is gone"), std::string::npos) << Logs("who");
  // That cold start built it again: the next new instance is restored.
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  ASSERT_TRUE(std::filesystem::exists(Blob("who")));
  auto busy =
      std::async(std::launch::async, [&] { return server_->Invoke("who", R"({"sleep":2})"); });
  ASSERT_TRUE(server_->WaitForFunction("who", "\"inflight\":1", 10'000));
  auto restored = server_->Invoke("who");
  EXPECT_EQ(restored.status, 200) << restored.body;
  EXPECT_EQ(restored.Header("x-thaw-start-kind"), "restore");
  EXPECT_EQ(busy.get().status, 200);
}

// A replaced version's snapshot is never restored again: its folder goes once its last pool has
// (and a deleted function's with it), or the data dir would grow by a blob per deploy.
TEST_F(RestoreTest, ReplacedAndDeletedVersionsSnapshotsAreRemoved) {
  DeployWhoAmI("who");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  ASSERT_EQ(server_->Invoke("who").status, 200);
  const std::string v1 = server_->data_dir() + "/snapshots/who/1";
  ASSERT_TRUE(std::filesystem::exists(v1 + "/snapshot.blob"));
  DeployWhoAmI("who");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  const std::string v2 = server_->data_dir() + "/snapshots/who/2";
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(v1); }, 30'000));
  EXPECT_TRUE(std::filesystem::exists(v2 + "/snapshot.blob"));
  ASSERT_EQ(server_->Call("DELETE", "/v1/functions/who").status, 204);
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(v2); }, 30'000));
}

TEST_F(RestoreTest, BlobNodeCannotUseFallsBackToFullOncePerVersion) {
  DeployWhoAmI("who", "max_instances: 2\ntimeout_s: 60\n");
  ASSERT_TRUE(WaitForTemplate("who", "ready")) << Logs("who");
  {
    std::ofstream blob(Blob("who"), std::ios::trunc);
    blob << "not a snapshot";
  }
  auto r = server_->Invoke("who");
  ASSERT_EQ(r.status, 200) << r.body << Logs("who");
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
  EXPECT_EQ(JsonField(r.body, "helper"), "helper-7");
  auto t = TemplateOf("who");
  EXPECT_EQ(t.at("state").as_string(), "unusable") << json::serialize(t);
  EXPECT_NE(Logs("who").find("restore from the snapshot failed"), std::string::npos) << Logs("who");
}

TEST_F(RestoreTest, InitErrorIsReportedAsWithoutTemplates) {
  DeployNode("broken", {{"index.js", "throw new TypeError('no model here');\n"}});
  ASSERT_TRUE(WaitForTemplate("broken", "unusable")) << Logs("broken");
  auto r = server_->Invoke("broken");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "TypeError") << r.body;
  EXPECT_EQ(r.Header("x-thaw-start-kind"), "full");
}

}  // namespace
}  // namespace thaw::testing

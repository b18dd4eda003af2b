// The npm aws-lambda-ric 3.3.0 (AWS's Runtime Interface Client for node), unmodified, as the
// runtime of a `provided` function: its bootstrap runs the package's bin/index.mjs, which
// loads the compiled rapid-client.node from /var/task/node_modules and speaks the Runtime API
// to thaw. The npm_ric ctest fixture (tests/clients/install_ric.sh) installs it into
// build/npm; running the binary by hand installs it here. A failed install fails the tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace fs = std::filesystem;

const std::string kNpmDir = std::string(THAW_BUILD_DIR) + "/npm";
const std::string kRicDir = kNpmDir + "/node_modules/aws-lambda-ric";

const std::string kBootstrap = R"sh(#!/bin/sh
cd "$(dirname "$0")"
exec /usr/bin/node node_modules/aws-lambda-ric/bin/index.mjs "$_HANDLER"
)sh";

class RicTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string cmd = "/bin/bash '" + std::string(THAW_SOURCE_DIR) +
                            "/tests/clients/install_ric.sh' '" + kNpmDir + "' 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) install_output_.append(buf, n);
    install_status_ = ::pclose(p);
  }
  void SetUp() override {
    ASSERT_EQ(install_status_, 0) << "could not install aws-lambda-ric@3.3.0 into " << kNpmDir
                                  << ":\n"
                                  << install_output_;
    server_ = ThawServer::Start();
  }
  void TearDown() override {
    for (auto& d : dirs_) RemoveDir(d);
  }

  // A `provided` bundle: thaw.yaml, the ric bootstrap, `index.mjs`, and a copy of the installed
  // package without its build-only sources (deps/: curl and aws-lambda-cpp, ~150 MB; the addon
  // links them statically) and without symlinks (bundles refuse those pointing outside).
  std::string RicBundle(const std::string& index_mjs) {
    std::string dir = MakeBundle({{"thaw.yaml", "runtime: provided\nhandler: index.handler\n"},
                                  {"bootstrap", kBootstrap},
                                  {"index.mjs", index_mjs}},
                                 {"bootstrap"});
    dirs_.push_back(dir);
    const fs::path dest = fs::path(dir) / "node_modules" / "aws-lambda-ric";
    fs::create_directories(dest);
    uintmax_t bytes = 0;
    for (auto it = fs::recursive_directory_iterator(kRicDir);
         it != fs::recursive_directory_iterator(); ++it) {
      const fs::path rel = fs::relative(it->path(), kRicDir);
      if (it->is_symlink() || *rel.begin() == "deps") {
        if (it->is_directory() && !it->is_symlink()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_directory()) {
        fs::create_directories(dest / rel);
      } else if (it->is_regular_file()) {
        fs::copy_file(it->path(), dest / rel);
        bytes += it->file_size();
      }
    }
    EXPECT_TRUE(fs::exists(dest / "dist" / "rapid-client.node"));
    EXPECT_LT(bytes, uintmax_t{64} << 20) << "the ric's runtime files should be small";
    return dir;
  }

  static inline int install_status_ = -1;
  static inline std::string install_output_;
  std::unique_ptr<ThawServer> server_;
  std::vector<std::string> dirs_;
};

TEST_F(RicTest, HandlerRunsUnderTheUnmodifiedRic) {
  auto d = server_->Deploy("ric", RicBundle(R"(
export const handler = async (event, context) => ({
  got: event,
  requestId: context.awsRequestId,
  fn: context.functionName,
  cwd: process.cwd(),
  remainingOk: context.getRemainingTimeInMillis() > 0,
});
)"));
  ASSERT_EQ(d.status, 201) << d.body;
  auto r = server_->Invoke("ric", R"({"hi":1})");
  ASSERT_EQ(r.status, 200) << r.body << "\n" << server_->Output();
  EXPECT_EQ(JsonField(r.body, "got"), R"({"hi":1})");
  EXPECT_EQ(JsonField(r.body, "requestId"), r.Header("x-thaw-request-id"));
  EXPECT_EQ(JsonField(r.body, "fn"), "ric");
  EXPECT_EQ(JsonField(r.body, "remainingOk"), "true");
  if (::geteuid() == 0) {  // jailed
    EXPECT_EQ(JsonField(r.body, "cwd"), "/var/task");
  }
  // The ric's own startup line reached the function's log.
  auto logs = server_->Call("GET", "/v1/functions/ric/logs");
  EXPECT_NE(logs.body.find("Executing 'index.handler' in function directory"), std::string::npos)
      << logs.body;
  // Warm: the same ric process takes the next event.
  auto again = server_->Invoke("ric", R"([2])");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(JsonField(again.body, "got"), "[2]");
  EXPECT_EQ(again.Header("x-thaw-cold-start"), "false");
}

TEST_F(RicTest, ThrowingHandlerIs502WithTheRicsErrorBody) {
  auto d = server_->Deploy("ricfail", RicBundle(R"(
export const handler = async () => { throw new TypeError("failed on purpose"); };
)"));
  ASSERT_EQ(d.status, 201) << d.body;
  auto r = server_->Invoke("ricfail");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "TypeError") << r.body;
  EXPECT_EQ(JsonField(r.body, "errorMessage"), "failed on purpose") << r.body;
  // The instance survives a handler error.
  EXPECT_EQ(server_->Invoke("ricfail").Header("x-thaw-cold-start"), "false");
}

// The ric's streaming handlers use Lambda's streaming response mode: a chunked POST whose
// mid-stream error comes as trailers (base64 JSON body).
TEST_F(RicTest, StreamingHandlerUnderTheUnmodifiedRic) {
  auto d = server_->Deploy("ricstream", RicBundle(R"(
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType('text/plain');
  responseStream.write('one,');
  await new Promise((r) => setTimeout(r, 50));
  responseStream.write('two');
  if (event.fail) throw new RangeError('stream broke');
  responseStream.end();
});
)"));
  ASSERT_EQ(d.status, 201) << d.body;
  auto r = server_->Invoke("ricstream", "{}");
  ASSERT_EQ(r.status, 200) << r.body << "\n" << server_->Output();
  EXPECT_EQ(r.body, "one,two");
  EXPECT_EQ(r.Header("content-type"), "text/plain");
  // A caller that wants one body sees the mid-stream error as Lambda's Invoke does.
  auto failed =
      server_->Call("POST", "/2015-03-31/functions/ricstream/invocations", R"({"fail":true})");
  EXPECT_EQ(failed.status, 200) << failed.body;
  EXPECT_EQ(failed.Header("x-amz-function-error"), "Unhandled");
  EXPECT_EQ(JsonField(failed.body, "errorType"), "RangeError") << failed.body;
}

TEST_F(RicTest, ImportFailureIsTheErrorTheRuntimeReported) {
  auto d = server_->Deploy("ricinit", RicBundle(R"(
throw new Error("cannot load the model");
export const handler = async () => 1;
)"));
  ASSERT_EQ(d.status, 201) << d.body;
  auto r = server_->Invoke("ricinit");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "Error") << r.body;
  EXPECT_NE(JsonField(r.body, "errorMessage").find("cannot load the model"), std::string::npos)
      << r.body;
}

}  // namespace
}  // namespace thaw::testing

// The web console in a real browser: Debian's headless chromium driven by puppeteer-core
// (tests/ui/console_test.mjs, installed into build/npm-ui by the ui_driver fixture) against the
// real `thaw serve`. Screenshots of each page land in build/ui-screenshots/.
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

const std::string kNpmUiDir = std::string(THAW_BUILD_DIR) + "/npm-ui";
const std::string kScript = std::string(THAW_SOURCE_DIR) + "/tests/ui/console_test.mjs";
const std::string kShots = std::string(THAW_BUILD_DIR) + "/ui-screenshots";

class ConsoleTest : public ServerTest {
 protected:
  void SetUp() override {
    server_ = ThawServer::Start();
    DeployPython("ui-echo",
                 "def handler(event, context):\n"
                 "    print('ui-marker', event.get('name'), flush=True)\n"
                 "    return {'echo': event}\n");
    // Streams its first chunk, then waits before the second, so a page that shows chunks as
    // they come shows the first alone for a while.
    DeployPython("ui-stream",
                 "import time\n"
                 "def handler(event, context):\n"
                 "    yield 'first chunk\\n'\n"
                 "    time.sleep(4)\n"
                 "    yield 'second chunk\\n'\n",
                 "timeout_s: 30\n");
    server_->CreateTenant("acme");
    dirs_.push_back(PythonBundle("acme-fn", "def handler(event, context):\n    return 1\n"));
    ASSERT_EQ(server_->Deploy("acme.acme-fn", dirs_.back()).status, 201);
    tenant_key_ = server_->CreateKey("acme").second;
  }

  // Runs one scenario of console_test.mjs; its output is printed when it fails.
  void RunScenario(const std::string& scenario) {
    std::vector<std::string> env = {
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/tmp",
        "THAW_URL=" + server_->url(),
        "THAW_NPM_UI_DIR=" + kNpmUiDir,
        "SCREENSHOT_DIR=" + kShots,
        "ADMIN_KEY=" + server_->key(),
        "TENANT_KEY=" + tenant_key_,
        "ECHO_FN=ui-echo",
        "STREAM_FN=ui-stream",
        "TENANT=acme",
        "TENANT_FN=acme-fn",
        "OTHER_FN=ui-echo",
    };
    ProcessResult r = RunProcess({"/usr/bin/env", "node", kScript, scenario}, &env);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("ok: " + scenario), std::string::npos) << r.out << r.err;
    std::cout << r.out;
  }

  std::string tenant_key_;
};

// Sign in, see every function, filter and sort, open one, invoke it from the form, see its log
// line and the charts, a streamed result as it streams, usage with a CSV, and the admin page.
// No request leaves for anywhere but the server.
TEST_F(ConsoleTest, AdminWalksEveryPage) { RunScenario("admin"); }

// A tenant's key shows its own functions only, and another tenant's function page is 404.
TEST_F(ConsoleTest, TenantSeesOnlyItsFunctions) { RunScenario("tenant"); }

// A wrong key gets a clear message and is not kept.
TEST_F(ConsoleTest, WrongKeyGetsAClearMessage) { RunScenario("wrong-key"); }

}  // namespace
}  // namespace thaw::testing

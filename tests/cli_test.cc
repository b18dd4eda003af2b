// The CLI verbs against a real server: output, --json, exit codes and one-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <regex>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
  CliResult Thaw(const std::string& args, const std::string& stdin_text = "") {
    std::string cmd = "cd " + server_->data_dir() + "/.. && THAW_SERVER=" + server_->url() +
                      " THAW_DATA_DIR=" + server_->data_dir() + " " + THAW_BINARY + " " + args +
                      " 2>&1";
    if (!stdin_text.empty()) cmd = "printf '%s' '" + stdin_text + "' | (" + cmd + ")";
    CliResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }
  std::unique_ptr<ThawServer> server_;
};

TEST_F(CliTest, DeployInvokeListGetLogsUsageRemove) {
  auto d = Thaw(std::string("deploy ") + THAW_SOURCE_DIR + "/examples/hello-python");
  ASSERT_EQ(d.exit_code, 0) << d.out;
  EXPECT_NE(d.out.find("deployed hello-python version 1"), std::string::npos) << d.out;
  auto i = Thaw("invoke hello-python '{\"name\":\"cli\"}'");
  ASSERT_EQ(i.exit_code, 0) << i.out;
  EXPECT_NE(i.out.find("hello, cli"), std::string::npos);
  EXPECT_NE(i.out.find("cold start: yes"), std::string::npos);
  auto piped = Thaw("invoke hello-python -", "{\"name\":\"stdin\"}");
  EXPECT_NE(piped.out.find("hello, stdin"), std::string::npos) << piped.out;
  auto j = Thaw("invoke hello-python --json");
  EXPECT_EQ(j.exit_code, 0);
  EXPECT_EQ(JsonField(j.out, "coldStart"), "false") << j.out;
  auto ls = Thaw("ls");
  EXPECT_NE(ls.out.find("hello-python"), std::string::npos);
  auto get = Thaw("get hello-python --json");
  EXPECT_EQ(JsonField(get.out, "runtime"), "python3");
  auto logs = Thaw("logs hello-python");
  EXPECT_NE(logs.out.find("greeting cli"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("REPORT RequestId"), std::string::npos);
  auto usage = Thaw("usage");
  EXPECT_NE(usage.out.find("hello-python"), std::string::npos) << usage.out;
  EXPECT_NE(usage.out.find("TOTAL"), std::string::npos) << usage.out;
  auto csv = Thaw("usage --csv --group-by day");
  EXPECT_EQ(csv.exit_code, 0) << csv.out;
  EXPECT_EQ(csv.out.rfind("day,invocations,success,", 0), 0u) << csv.out;
  EXPECT_NE(csv.out.find("\nTOTAL,3,3,"), std::string::npos) << csv.out;
  auto advise = Thaw("advise hello-python");
  EXPECT_EQ(advise.exit_code, 0) << advise.out;
  EXPECT_NE(advise.out.find("hello-python: stay serverless"), std::string::npos) << advise.out;
  auto tenant = Thaw("usage --group-by tenant");
  EXPECT_EQ(tenant.exit_code, 0) << tenant.out;
  EXPECT_EQ(tenant.out.rfind("TENANT", 0), 0u) << tenant.out;
  EXPECT_NE(tenant.out.find("\ndefault "), std::string::npos) << tenant.out;
  auto rm = Thaw("rm hello-python");
  EXPECT_EQ(rm.exit_code, 0);
  EXPECT_EQ(Thaw("ls --json").out.find("hello-python"), std::string::npos);
}

// Regression (issue 17): boost::json wrote every double in exponent form ("timeout_s": 1E1).
TEST_F(CliTest, NumbersPrintAsIntegersOrShortestDecimals) {
  ASSERT_EQ(Thaw(std::string("deploy ") + THAW_SOURCE_DIR + "/examples/hello-python").exit_code, 0);
  ASSERT_EQ(Thaw("invoke hello-python").exit_code, 0);
  const std::regex exponent("[0-9]E[-+]?[0-9]");
  auto api = server_->Call("GET", "/v1/functions/hello-python");
  EXPECT_NE(api.body.find("\"timeout_s\":10,"), std::string::npos) << api.body;
  auto get = Thaw("get hello-python");
  EXPECT_NE(get.out.find("\ntimeout_s       10\n"), std::string::npos) << get.out;
  for (const char* args : {"get hello-python --json", "invoke hello-python --json", "usage --json",
                           "logs hello-python --json"}) {
    auto r = Thaw(args);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.out;
    EXPECT_FALSE(std::regex_search(r.out, exponent)) << args << ": " << r.out;
  }
  auto usage = server_->Call("GET", "/v1/usage");
  EXPECT_FALSE(std::regex_search(usage.body, exponent)) << usage.body;
}

TEST_F(CliTest, ErrorsAreOneLineAndNonZero) {
  auto missing = Thaw("invoke nope");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_EQ(missing.out, "thaw: ResourceNotFoundException: Function not found: nope (HTTP 404)\n");
  std::string dir = MakeBundle({{"thaw.yaml", "runtime: python3\nhandler: nodot\n"}});
  auto bad = Thaw("deploy " + dir);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("field 'handler'"), std::string::npos) << bad.out;
  auto no_dir = Thaw("deploy /nonexistent");
  EXPECT_NE(no_dir.exit_code, 0);
  auto unreachable = Thaw("ls --server http://127.0.0.1:1");
  EXPECT_NE(unreachable.exit_code, 0);
  EXPECT_NE(unreachable.out.find("cannot reach thaw"), std::string::npos);
  auto bad_key = Thaw("ls --api-key wrong");
  EXPECT_NE(bad_key.exit_code, 0);
  EXPECT_NE(bad_key.out.find("401"), std::string::npos);
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

namespace thaw::testing {
namespace {

TEST_F(CliTest, GetSaysWhenAFunctionsInitKeepsFailing) {
  std::string dir =
      PythonBundle("broken", "raise RuntimeError('no model')\n", "min_instances: 1\n");
  ASSERT_EQ(server_->Deploy("broken", dir).status, 201);
  ASSERT_TRUE(server_->WaitForFunction("broken", "\"state\":\"failing\"", 20'000));
  auto get = Thaw("get broken");
  EXPECT_EQ(get.exit_code, 0);
  EXPECT_NE(get.out.find("state           failing"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("no model"), std::string::npos) << get.out;
  RemoveDir(dir);
}

}  // namespace
}  // namespace thaw::testing

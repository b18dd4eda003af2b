// Lambda compatibility details that real clients and libraries rely on (issue 17): how the
// shipped runtimes set up logging, the version a runtime is told, the Python context's types,
// the Lambda environment's formats and the error type of a failed init.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

class LambdaCompatTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }

  // What the function printed during request `rid`, platform lines left out, in order.
  std::vector<std::string> FunctionLines(const std::string& name, const std::string& rid) {
    auto logs = server_->Call("GET", "/v1/functions/" + name + "/logs");
    EXPECT_EQ(logs.status, 200) << logs.body;
    std::vector<std::string> out;
    const json::value body = json::parse(logs.body);
    for (const auto& l : body.at("lines").as_array()) {
      const json::object& o = l.as_object();
      if (o.at("requestId").as_string() == rid && o.at("stream").as_string() != "platform") {
        out.emplace_back(o.at("message").as_string());
      }
    }
    return out;
  }

  void DeployNode(const std::string& name, const std::string& code, const std::string& yaml) {
    dirs_.push_back(MakeBundle(
        {{"thaw.yaml", "runtime: nodejs\nhandler: index.handler\n" + yaml}, {"index.js", code}}));
    auto r = server_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Regression: the python3 runtime put no handler on the root logger, so logger.info printed
// nothing even after setLevel(INFO) and warnings came out bare.
TEST_F(LambdaCompatTest, PythonLoggingGetsLambdasHandler) {
  DeployPython("logs",
               "import logging\n"
               "logger = logging.getLogger()\n"
               "logger.setLevel(logging.INFO)\n"
               "def handler(e, c):\n"
               "    logger.info('info line %s', e['n'])\n"
               "    logging.getLogger('lib').warning('careful')\n"
               "    logger.debug('below the level')\n"
               "    return 'ok'\n");
  auto r = server_->Invoke("logs", R"({"n":7})");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string rid = r.Header("x-thaw-request-id");
  auto lines = FunctionLines("logs", rid);
  ASSERT_EQ(lines.size(), 2u) << Joined(lines);
  const std::string time = R"(\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t)";
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"(\[INFO\])" + time + rid + "\tinfo line 7")))
      << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"(\[WARNING\])" + time + rid + "\tcareful")))
      << lines[1];
}

TEST_F(LambdaCompatTest, PythonJsonLogsHonourFormatAndLevel) {
  DeployPython("jsonlogs",
               "import logging\n"
               "logger = logging.getLogger('app')\n"
               "def handler(e, c):\n"
               "    logger.info('below the level')\n"
               "    logger.warning('low on %s', 'disk', extra={'free_mb': 12})\n"
               "    try:\n"
               "        1 / 0\n"
               "    except ZeroDivisionError:\n"
               "        logger.exception('failed')\n"
               "    return 'ok'\n",
               "environment: {AWS_LAMBDA_LOG_FORMAT: JSON, AWS_LAMBDA_LOG_LEVEL: WARN}\n");
  auto r = server_->Invoke("jsonlogs");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string rid = r.Header("x-thaw-request-id");
  auto lines = FunctionLines("jsonlogs", rid);
  ASSERT_EQ(lines.size(), 2u) << Joined(lines);
  json::object warn = json::parse(lines[0]).as_object();
  EXPECT_EQ(warn["level"].as_string(), "WARNING");
  EXPECT_EQ(warn["message"].as_string(), "low on disk");
  EXPECT_EQ(warn["logger"].as_string(), "app");
  EXPECT_EQ(warn["requestId"].as_string(), rid);
  EXPECT_EQ(warn["free_mb"].as_int64(), 12);
  EXPECT_TRUE(std::regex_match(std::string(warn["timestamp"].as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << lines[0];
  EXPECT_FALSE(warn.contains("errorType"));
  json::object error = json::parse(lines[1]).as_object();
  EXPECT_EQ(error["level"].as_string(), "ERROR");
  EXPECT_EQ(error["errorType"].as_string(), "ZeroDivisionError");
  EXPECT_EQ(error["errorMessage"].as_string(), "division by zero");
  EXPECT_FALSE(error["stackTrace"].as_array().empty()) << lines[1];
}

TEST_F(LambdaCompatTest, NodeConsoleJsonLogsHonourFormatAndLevel) {
  DeployNode("nodelogs",
             "exports.handler = async () => {\n"
             "  console.debug('below the level');\n"
             "  console.log('hello %s', 'ada');\n"
             "  console.warn({free_mb: 12});\n"
             "  console.error(new TypeError('bad thing'));\n"
             "  return 'ok';\n"
             "};\n",
             "environment: {AWS_LAMBDA_LOG_FORMAT: JSON, AWS_LAMBDA_LOG_LEVEL: INFO}\n");
  auto r = server_->Invoke("nodelogs");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string rid = r.Header("x-thaw-request-id");
  auto lines = FunctionLines("nodelogs", rid);
  ASSERT_EQ(lines.size(), 3u) << Joined(lines);
  json::object info = json::parse(lines[0]).as_object();
  EXPECT_EQ(info["level"].as_string(), "INFO");
  EXPECT_EQ(info["message"].as_string(), "hello ada");
  EXPECT_EQ(info["requestId"].as_string(), rid);
  EXPECT_TRUE(std::string(info["timestamp"].as_string()).ends_with("Z"));
  json::object warn = json::parse(lines[1]).as_object();
  EXPECT_EQ(warn["level"].as_string(), "WARN");
  EXPECT_EQ(warn["message"].as_object()["free_mb"].as_int64(), 12);
  json::object error = json::parse(lines[2]).as_object();
  EXPECT_EQ(error["level"].as_string(), "ERROR");
  json::object e = error["message"].as_object();
  EXPECT_EQ(e["errorType"].as_string(), "TypeError");
  EXPECT_EQ(e["errorMessage"].as_string(), "bad thing");
}

TEST_F(LambdaCompatTest, NodeConsoleTextLinesCarryTimeRequestIdAndLevel) {
  DeployNode("nodetext",
             "exports.handler = async () => {\n"
             "  console.info('two\\nlines');\n"
             "  console.trace('below the level');\n"
             "  return 'ok';\n"
             "};\n",
             "environment: {AWS_LAMBDA_LOG_LEVEL: debug}\n");
  auto r = server_->Invoke("nodetext");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string rid = r.Header("x-thaw-request-id");
  auto lines = FunctionLines("nodetext", rid);
  ASSERT_EQ(lines.size(), 1u) << Joined(lines);
  EXPECT_TRUE(std::regex_match(lines[0], std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t)" +
                                                    rid + "\tINFO\ttwo\rlines")))
      << lines[0];
}

// Regression: an unqualified call told the runtime version "1"; Lambda says "$LATEST" unless
// the caller named a version.
TEST_F(LambdaCompatTest, UnqualifiedCallsRunAsLatestAndQualifiedOnesAsTheNumber) {
  DeployPython("ver",
               "import os\n"
               "def handler(e, c):\n"
               "    return [c.function_version, os.environ['AWS_LAMBDA_FUNCTION_VERSION'],\n"
               "            c.log_stream_name]\n");
  auto latest = server_->Invoke("ver");
  ASSERT_EQ(latest.status, 200) << latest.body;
  json::array l = json::parse(latest.body).as_array();
  EXPECT_EQ(l[0].as_string(), "$LATEST");
  EXPECT_EQ(l[1].as_string(), "$LATEST");
  EXPECT_TRUE(std::regex_match(std::string(l[2].as_string()),
                               std::regex(R"(\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32})")))
      << latest.body;
  EXPECT_EQ(latest.Header("x-thaw-version"), "1");  // thaw's own header keeps the number
  auto named = server_->Invoke("ver", "{}", "1");
  ASSERT_EQ(named.status, 200) << named.body;
  json::array n = json::parse(named.body).as_array();
  EXPECT_EQ(n[0].as_string(), "1");
  EXPECT_EQ(n[1].as_string(), "1");
  EXPECT_TRUE(std::regex_match(std::string(n[2].as_string()),
                               std::regex(R"(\d{4}/\d\d/\d\d/\[1\][0-9a-f]{32})")))
      << named.body;
  EXPECT_EQ(server_->Invoke("ver", "{}", "$LATEST").body, latest.body);  // the same instance
  // The START lines say the same.
  auto logs = server_->Call("GET", "/v1/functions/ver/logs");
  const std::string rl = latest.Header("x-thaw-request-id"), rn = named.Header("x-thaw-request-id");
  EXPECT_NE(logs.body.find("START RequestId: " + rl + " Version: $LATEST"), std::string::npos)
      << logs.body;
  EXPECT_NE(logs.body.find("START RequestId: " + rn + " Version: 1\""), std::string::npos)
      << logs.body;
}

// Regression: memory_limit_in_mb was an int, AWS_EXECUTION_ENV lacked the minor version, and
// trace ids had 20 hex digits and no Parent=.
TEST_F(LambdaCompatTest, PythonContextTypesAndTraceIdAsOnLambda) {
  DeployPython("ctx",
               "import os, sys\n"
               "def handler(e, c):\n"
               "    return {'memory': c.memory_limit_in_mb,\n"
               "            'exec_env': os.environ['AWS_EXECUTION_ENV'],\n"
               "            'python': '%d.%d' % sys.version_info[:2],\n"
               "            'trace': os.environ['_X_AMZN_TRACE_ID']}\n",
               "memory_mb: 128\n");
  auto r = server_->Invoke("ctx");
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = json::parse(r.body).as_object();
  EXPECT_EQ(o["memory"], json::value("128"));
  EXPECT_EQ(o["exec_env"].as_string(), "AWS_Lambda_python" + std::string(o["python"].as_string()));
  EXPECT_TRUE(std::regex_match(std::string(o["trace"].as_string()),
                               std::regex("Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};"
                                          "Sampled=[01]")))
      << r.body;
}

// Regression: a handler module that cannot be imported came back as Runtime.InitError with
// the real type inside the message, and the failed cold start said X-Thaw-Cold-Start: false.
TEST_F(LambdaCompatTest, MissingHandlerModuleIsImportModuleErrorOnAColdStart) {
  dirs_.push_back(MakeBundle(
      {{"thaw.yaml", "runtime: python3\nhandler: nothere.handler\n"}, {"app.py", "x = 1\n"}}));
  ASSERT_EQ(server_->Deploy("nomodule", dirs_.back()).status, 201);
  auto r = server_->Invoke("nomodule");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(JsonField(r.body, "errorType"), "Runtime.ImportModuleError") << r.body;
  EXPECT_TRUE(JsonField(r.body, "errorMessage")
                  .starts_with("Unable to import module 'nothere': No module named 'nothere'"))
      << r.body;
  EXPECT_EQ(r.Header("x-thaw-cold-start"), "true");
  // The same from the nodejs runtime.
  dirs_.push_back(MakeBundle({{"thaw.yaml", "runtime: nodejs\nhandler: nothere.handler\n"},
                              {"index.js", "exports.handler = async () => 1;\n"}}));
  ASSERT_EQ(server_->Deploy("nodemissing", dirs_.back()).status, 201);
  auto n = server_->Invoke("nodemissing");
  EXPECT_EQ(n.status, 502);
  EXPECT_EQ(JsonField(n.body, "errorType"), "Runtime.ImportModuleError") << n.body;
  EXPECT_EQ(n.Header("x-thaw-cold-start"), "true");
}

}  // namespace
}  // namespace thaw::testing

// The AWS Lambda REST face against the real server, driven by real clients: Debian's awscli v2
// (/usr/bin/aws) and the npm @aws-sdk/client-lambda (tests/clients/lambda_client.mjs), plus
// raw HTTP for what the clients hide (error headers, auth, limits, paging).
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <future>
#include <set>

#include "auth/sigv4.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/sha256.h"
#include "server_fixture.h"
#include "webhook_receiver.h"

extern char** environ;

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kAws = "/usr/bin/aws";
const std::string kNpmDir = std::string(THAW_BUILD_DIR) + "/npm";
const std::string kJsClient = std::string(THAW_SOURCE_DIR) + "/tests/clients/lambda_client.mjs";

std::string TempPath(const std::string& name) {
  char tmpl[] = "/tmp/thaw-lambda-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  return std::string(tmpl) + "/" + name;
}

ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& env) {
  return testing::RunProcess(argv, &env);
}

json::object ParseObject(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << text;
    return {};
  }
  return v.as_object();
}

std::string Str(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (v == nullptr) return "<missing " + std::string(key) + ">";
  return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

// A zip archive built in memory with libarchive, as a user's `zip` would make it.
std::string Zip(const std::map<std::string, std::string>& files,
                const std::set<std::string>& executable = {}) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_set_bytes_per_block(a, 0);  // no padding after the central directory
  auto writer = [](archive*, void* data, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  archive_write_open(a, &out, nullptr, writer, nullptr);
  for (const auto& [path, content] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, executable.count(path) ? 0755 : 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

const std::string kHandlers = R"(import json, os, time
def echo(event, context):
    print("echo got", json.dumps(event))
    return {"event": event, "version": context.function_version,
            "greeting": os.environ.get("GREETING", ""),
            "custom": (context.client_context.custom if context.client_context else None)}
def fail(event, context):
    raise ValueError("the handler failed on purpose")
def slow(event, context):
    time.sleep(event.get("sleep", 3))
    return "slept"
)";

// An API key's id and secret: the AWS access key id and secret access key.
struct Credentials {
  std::string id, secret;
};

// awscli v2 with a thaw key's credentials and nothing from $HOME.
class AwsCli {
 public:
  AwsCli(const std::string& endpoint, Credentials credentials)
      : endpoint_(endpoint), credentials_(std::move(credentials)) {
    dir_ = TempPath("");
    (void)WriteFileAtomic(dir_ + "config", "");
    (void)WriteFileAtomic(dir_ + "credentials", "");
    (void)WriteFileAtomic(dir_ + "code.zip", Zip({{"app.py", kHandlers}}));
  }
  ~AwsCli() { RemoveDir(dir_); }

  ProcessResult Lambda(std::vector<std::string> args) const {
    std::vector<std::string> argv = {kAws,       "--endpoint-url", endpoint_,
                                     "--output", "json",           "lambda"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, {"PATH=/usr/bin:/bin", "HOME=" + dir_, "LANG=C.UTF-8",
                             "AWS_ACCESS_KEY_ID=" + credentials_.id,
                             "AWS_SECRET_ACCESS_KEY=" + credentials_.secret,
                             "AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=" + dir_ + "config",
                             "AWS_SHARED_CREDENTIALS_FILE=" + dir_ + "credentials",
                             "AWS_MAX_ATTEMPTS=1", "AWS_PAGER="});
  }
  // `lambda invoke`: the CLI's JSON summary, and the payload it wrote to the outfile.
  std::pair<json::object, std::string> Invoke(std::vector<std::string> args) const {
    const std::string outfile = dir_ + "payload.out";
    std::vector<std::string> argv = {"invoke", "--cli-binary-format", "raw-in-base64-out"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(outfile);
    ProcessResult r = Lambda(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto payload = ReadFile(outfile);
    (void)RemoveTree(outfile);
    return {ParseObject(r.out), payload.ok() ? *payload : ""};
  }
  std::string zip_path() const { return dir_ + "code.zip"; }
  const std::string& dir() const { return dir_; }

 private:
  std::string endpoint_, dir_;
  Credentials credentials_;
};

// @aws-sdk/client-lambda through tests/clients/lambda_client.mjs.
json::object JsSdk(const std::string& endpoint, const Credentials& credentials,
                   const std::string& command, const json::object& input) {
  ProcessResult r = RunProcess(
      {"/usr/bin/node", kJsClient, endpoint, command, json::serialize(input)},
      {"PATH=/usr/bin:/bin", "HOME=/tmp", "THAW_NPM_DIR=" + kNpmDir, "NODE_NO_WARNINGS=1",
       "AWS_ACCESS_KEY_ID=" + credentials.id, "AWS_SECRET_ACCESS_KEY=" + credentials.secret});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return ParseObject(r.out);
}

class LambdaApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs install.sh first (a fixture); running the tests by hand installs here.
    // npm keeps the machine's own settings (registry, proxy, CA) from the environment.
    npm_install_ = testing::RunProcess(
        {"/bin/bash", std::string(THAW_SOURCE_DIR) + "/tests/clients/install.sh", kNpmDir},
        nullptr);
  }
  void SetUp() override {
    ASSERT_TRUE(PathExists(kAws)) << kAws << " is missing: install Debian's awscli "
                                  << "(scripts/deps.sh)";
    ASSERT_EQ(npm_install_.exit_code, 0)
        << "could not install @aws-sdk/client-lambda into " << kNpmDir << ":\n"
        << npm_install_.err;
    StartServer();
  }
  // (Re)starts the server on `data_dir` (empty: a new one) with a key of the default tenant.
  void StartServer(const std::string& data_dir = "") {
    server_ = ThawServer::Start({}, data_dir);
    if (data_dir.empty()) {
      auto [id, secret] = server_->CreateKey("default");
      credentials_ = {id, secret};
    }
    aws_ = std::make_unique<AwsCli>(server_->url(), credentials_);
  }
  void CreatePython(const std::string& name, const std::string& handler,
                    const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"create-function",
                                     "--function-name",
                                     name,
                                     "--runtime",
                                     "python3.12",
                                     "--handler",
                                     handler,
                                     "--role",
                                     "arn:aws:iam::000000000000:role/any",
                                     "--zip-file",
                                     "fileb://" + aws_->zip_path()};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = aws_->Lambda(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Raw HTTP, SigV4-signed as the clients sign, with `credentials` (default: the test's).
  HttpResult Aws(const std::string& method, const std::string& target, const std::string& body = "",
                 Headers headers = {}, const Credentials* credentials = nullptr,
                 int64_t clock_skew_s = 0) const {
    const Credentials& c = credentials != nullptr ? *credentials : credentials_;
    const std::string host = server_->url().substr(std::string("http://").size());
    const std::string date = AmzDate(WallNowMicros() / 1'000'000 + clock_skew_s);
    headers.emplace_back("X-Amz-Date", date);
    auth::SigV4Request request{method, target, {{"Host", host}}, body};
    request.headers.insert(request.headers.end(), headers.begin(), headers.end());
    auth::SigV4Authorization sig{c.id, date.substr(0, 8), "us-east-1", "lambda", {}, ""};
    for (const auto& [name, value] : request.headers) {
      std::string lower = name;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      sig.signed_headers.push_back(lower);
    }
    std::sort(sig.signed_headers.begin(), sig.signed_headers.end());
    auto signature = auth::SignSigV4(request, sig, c.secret);
    EXPECT_TRUE(signature.ok()) << signature.status().message();
    sig.signature = signature.ok() ? *signature : "";
    headers.emplace_back("Authorization", auth::FormatSigV4Authorization(sig));
    return server_->Call(method, target, body, headers, /*auth=*/false);
  }
  static std::string AmzDate(int64_t unix_s) {
    time_t t = static_cast<time_t>(unix_s);
    tm utc;
    gmtime_r(&t, &utc);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &utc);
    return buf;
  }
  json::object Js(const std::string& command, const json::object& input) const {
    return JsSdk(server_->url(), credentials_, command, input);
  }

  static inline ProcessResult npm_install_;
  std::unique_ptr<ThawServer> server_;
  std::unique_ptr<AwsCli> aws_;
  Credentials credentials_;
};

TEST_F(LambdaApiTest, AwsCliCreateInvokeListGetUpdatePublishAliasDelete) {
  ProcessResult created =
      aws_->Lambda({"create-function", "--function-name", "echo", "--runtime", "python3.12",
                    "--handler", "app.echo", "--role", "arn:aws:iam::000000000000:role/any",
                    "--zip-file", "fileb://" + aws_->zip_path(), "--description", "says it back",
                    "--timeout", "5", "--memory-size", "256"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  json::object config = ParseObject(created.out);
  EXPECT_EQ(Str(config, "FunctionName"), "echo");
  EXPECT_EQ(Str(config, "FunctionArn"), "arn:aws:lambda:us-east-1:000000000000:function:echo");
  EXPECT_EQ(Str(config, "Runtime"), "python3.12");
  EXPECT_EQ(Str(config, "Handler"), "app.echo");
  EXPECT_EQ(Str(config, "Description"), "says it back");
  EXPECT_EQ(Str(config, "Timeout"), "5");
  EXPECT_EQ(Str(config, "MemorySize"), "256");
  EXPECT_EQ(Str(config, "Version"), "$LATEST");
  EXPECT_EQ(Str(config, "State"), "Active");
  EXPECT_EQ(Str(config, "PackageType"), "Zip");
  const std::string zip = *ReadFile(aws_->zip_path());
  EXPECT_EQ(Str(config, "CodeSize"), std::to_string(zip.size()));
  EXPECT_EQ(Str(config, "CodeSha256"), Base64Encode(*HexDecode(Sha256Hex(zip))));

  auto [summary, payload] =
      aws_->Invoke({"--function-name", "echo", "--payload", R"({"n":1})", "--log-type", "Tail"});
  EXPECT_EQ(Str(summary, "StatusCode"), "200");
  EXPECT_EQ(Str(summary, "ExecutedVersion"), "$LATEST");
  EXPECT_FALSE(summary.contains("FunctionError"));
  json::object result = ParseObject(payload);
  EXPECT_EQ(json::serialize(result["event"]), R"({"n":1})");
  auto log = Base64Decode(Str(summary, "LogResult"));
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("START RequestId: "), std::string::npos) << *log;
  EXPECT_NE(log->find("echo got {\"n\": 1}"), std::string::npos) << *log;
  EXPECT_NE(log->find("REPORT RequestId: "), std::string::npos) << *log;

  CreatePython("second", "app.echo");
  // --page-size makes the CLI follow NextMarker page by page.
  ProcessResult list = aws_->Lambda({"list-functions", "--page-size", "1"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  json::array fns = ParseObject(list.out)["Functions"].as_array();
  ASSERT_EQ(fns.size(), 2u) << list.out;
  EXPECT_EQ(Str(fns[0].as_object(), "FunctionName"), "echo");
  EXPECT_EQ(Str(fns[1].as_object(), "FunctionName"), "second");

  ProcessResult got = aws_->Lambda({"get-function", "--function-name", "echo"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  json::object get = ParseObject(got.out);
  EXPECT_EQ(Str(get["Configuration"].as_object(), "Handler"), "app.echo");
  EXPECT_EQ(Str(get["Code"].as_object(), "RepositoryType"), "S3");
  // Location is a signed thaw URL: no key needed, the stored zip comes back.
  const std::string location = Str(get["Code"].as_object(), "Location");
  const std::string target = location.substr(location.find("/v1/code/"));
  auto code = server_->Call("GET", target, "", {}, /*auth=*/false);
  EXPECT_EQ(code.status, 200);
  EXPECT_EQ(code.body, zip);
  auto forged = server_->Call("GET", target.substr(0, target.size() - 4) + "0000", "", {}, false);
  EXPECT_EQ(forged.status, 403);

  const std::string zip2_path = aws_->dir() + "v2.zip";
  ASSERT_TRUE(WriteFileAtomic(zip2_path, Zip({{"app.py", kHandlers + "def v2(e, c):\n"
                                                                     "    return 'two'\n"}}))
                  .ok());
  ProcessResult updated = aws_->Lambda({"update-function-code", "--function-name", "echo",
                                        "--zip-file", "fileb://" + zip2_path, "--publish"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  json::object v2 = ParseObject(updated.out);
  EXPECT_EQ(Str(v2, "Version"), "2");
  EXPECT_EQ(Str(v2, "Handler"), "app.echo");  // the configuration carries over
  EXPECT_EQ(Str(v2, "FunctionArn"), "arn:aws:lambda:us-east-1:000000000000:function:echo:2");

  // Publishing what is already published hands back the same version.
  ProcessResult published = aws_->Lambda({"publish-version", "--function-name", "echo"});
  ASSERT_EQ(published.exit_code, 0) << published.err;
  EXPECT_EQ(Str(ParseObject(published.out), "Version"), "2");

  ProcessResult alias = aws_->Lambda(
      {"create-alias", "--function-name", "echo", "--name", "prod", "--function-version", "2"});
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  EXPECT_EQ(Str(ParseObject(alias.out), "AliasArn"),
            "arn:aws:lambda:us-east-1:000000000000:function:echo:prod");
  auto [via_alias, alias_payload] =
      aws_->Invoke({"--function-name", "echo", "--qualifier", "prod", "--payload", "{}"});
  EXPECT_EQ(Str(via_alias, "ExecutedVersion"), "2");
  EXPECT_EQ(Str(ParseObject(alias_payload), "version"), "2");
  // The native API resolves the alias too.
  auto native = server_->Invoke("echo", "{}", "prod");
  EXPECT_EQ(native.status, 200) << native.body;
  EXPECT_EQ(native.Header("x-thaw-version"), "2");

  ProcessResult versions = aws_->Lambda({"list-versions-by-function", "--function-name", "echo"});
  ASSERT_EQ(versions.exit_code, 0) << versions.err;
  json::array vs = ParseObject(versions.out)["Versions"].as_array();
  ASSERT_EQ(vs.size(), 2u);
  EXPECT_EQ(Str(vs[0].as_object(), "Version"), "$LATEST");
  EXPECT_EQ(Str(vs[1].as_object(), "Version"), "2");

  ProcessResult deleted = aws_->Lambda({"delete-function", "--function-name", "echo"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  ProcessResult gone = aws_->Lambda({"get-function", "--function-name", "echo"});
  EXPECT_EQ(gone.exit_code, 254);
  EXPECT_NE(gone.err.find("ResourceNotFoundException"), std::string::npos) << gone.err;
}

TEST_F(LambdaApiTest, AwsCliFunctionErrorsTimeoutsAndUnknownFunctions) {
  CreatePython("failing", "app.fail");
  auto [summary, payload] =
      aws_->Invoke({"--function-name", "failing", "--payload", "{}", "--log-type", "Tail"});
  EXPECT_EQ(Str(summary, "StatusCode"), "200");
  EXPECT_EQ(Str(summary, "FunctionError"), "Unhandled");
  json::object error = ParseObject(payload);
  EXPECT_EQ(Str(error, "errorType"), "ValueError");
  EXPECT_EQ(Str(error, "errorMessage"), "the handler failed on purpose");
  EXPECT_TRUE(error.contains("stackTrace")) << payload;
  auto log = Base64Decode(Str(summary, "LogResult"));
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("ValueError"), std::string::npos) << *log;
  EXPECT_NE(log->find("REPORT RequestId: "), std::string::npos) << *log;

  CreatePython("sleepy", "app.slow", {"--timeout", "1"});
  auto [timed_out, timeout_payload] = aws_->Invoke(
      {"--function-name", "sleepy", "--payload", R"({"sleep":5})", "--log-type", "Tail"});
  EXPECT_EQ(Str(timed_out, "StatusCode"), "200");
  EXPECT_EQ(Str(timed_out, "FunctionError"), "Unhandled");
  EXPECT_EQ(Str(ParseObject(timeout_payload), "errorType"), "Sandbox.Timedout");
  EXPECT_NE(Str(ParseObject(timeout_payload), "errorMessage").find("Task timed out after 1.00"),
            std::string::npos)
      << timeout_payload;
  auto timeout_log = Base64Decode(Str(timed_out, "LogResult"));
  ASSERT_TRUE(timeout_log.has_value());
  EXPECT_NE(timeout_log->find("Status: timeout"), std::string::npos) << *timeout_log;

  ProcessResult missing = aws_->Lambda({"invoke", "--function-name", "nope", "/dev/null"});
  EXPECT_EQ(missing.exit_code, 254);
  EXPECT_NE(missing.err.find("ResourceNotFoundException"), std::string::npos) << missing.err;
  ProcessResult bad_runtime = aws_->Lambda({"create-function", "--function-name", "java",
                                            "--runtime", "java21", "--handler", "a.b", "--role",
                                            "r", "--zip-file", "fileb://" + aws_->zip_path()});
  EXPECT_EQ(bad_runtime.exit_code, 254);
  EXPECT_NE(bad_runtime.err.find("InvalidParameterValueException"), std::string::npos);
  EXPECT_NE(bad_runtime.err.find("Runtime"), std::string::npos) << bad_runtime.err;
  ProcessResult twice = aws_->Lambda({"create-function", "--function-name", "failing", "--runtime",
                                      "python3.12", "--handler", "app.fail", "--role", "r",
                                      "--zip-file", "fileb://" + aws_->zip_path()});
  EXPECT_EQ(twice.exit_code, 254);
  EXPECT_NE(twice.err.find("ResourceConflictException"), std::string::npos) << twice.err;
}

TEST_F(LambdaApiTest, AwsCliEventInvokeConfigs) {
  CreatePython("worker", "app.echo");
  ProcessResult none =
      aws_->Lambda({"get-function-event-invoke-config", "--function-name", "worker"});
  EXPECT_EQ(none.exit_code, 254);
  EXPECT_NE(none.err.find("ResourceNotFoundException"), std::string::npos) << none.err;

  ProcessResult put =
      aws_->Lambda({"put-function-event-invoke-config", "--function-name", "worker",
                    "--maximum-retry-attempts", "1", "--maximum-event-age-in-seconds", "120"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  json::object config = ParseObject(put.out);
  EXPECT_EQ(Str(config, "MaximumRetryAttempts"), "1");
  EXPECT_EQ(Str(config, "MaximumEventAgeInSeconds"), "120");
  EXPECT_NE(Str(config, "FunctionArn").find(":function:worker:$LATEST"), std::string::npos);

  // Update changes only what it names; Put replaces the whole config.
  ProcessResult update = aws_->Lambda({"update-function-event-invoke-config", "--function-name",
                                       "worker", "--maximum-retry-attempts", "0"});
  ASSERT_EQ(update.exit_code, 0) << update.err;
  config = ParseObject(update.out);
  EXPECT_EQ(Str(config, "MaximumRetryAttempts"), "0");
  EXPECT_EQ(Str(config, "MaximumEventAgeInSeconds"), "120");
  ProcessResult got =
      aws_->Lambda({"get-function-event-invoke-config", "--function-name", "worker"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(Str(ParseObject(got.out), "MaximumRetryAttempts"), "0");

  ProcessResult too_many = aws_->Lambda({"put-function-event-invoke-config", "--function-name",
                                         "worker", "--maximum-retry-attempts", "3"});
  EXPECT_NE(too_many.exit_code, 0);
  auto raw = Aws("PUT", "/2019-09-25/functions/worker/event-invoke-config",
                 R"({"MaximumEventAgeInSeconds":30})");
  EXPECT_EQ(raw.status, 400) << raw.body;
  EXPECT_NE(raw.body.find("MaximumEventAgeInSeconds"), std::string::npos) << raw.body;

  ProcessResult list =
      aws_->Lambda({"list-function-event-invoke-configs", "--function-name", "worker"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(ParseObject(list.out)["FunctionEventInvokeConfigs"].as_array().size(), 1u);

  ProcessResult del =
      aws_->Lambda({"delete-function-event-invoke-config", "--function-name", "worker"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(
      aws_->Lambda({"get-function-event-invoke-config", "--function-name", "worker"}).exit_code,
      254);
  EXPECT_EQ(aws_->Lambda({"get-function-event-invoke-config", "--function-name", "nope"}).exit_code,
            254);
}

// DestinationConfig through awscli: OnSuccess to another function (it gets Lambda's invocation
// record as its event), OnFailure to a webhook (a real local receiver checks the signature).
TEST_F(LambdaApiTest, AwsCliEventDestinations) {
  server_ =
      ThawServer::Start({"--async-retry-base-ms", "20", "--webhook-private-addresses", "true"});
  auto [id, secret] = server_->CreateKey("default");
  credentials_ = {id, secret};
  aws_ = std::make_unique<AwsCli>(server_->url(), credentials_);
  WebhookReceiver hook;
  CreatePython("worker", "app.echo");
  CreatePython("sink", "app.echo");
  CreatePython("failer", "app.fail");
  const std::string sink_arn = "arn:aws:lambda:us-east-1:000000000000:function:sink";
  ProcessResult put = aws_->Lambda({"put-function-event-invoke-config", "--function-name", "worker",
                                    "--destination-config",
                                    R"({"OnSuccess":{"Destination":")" + sink_arn + R"("}})"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  json::object config = ParseObject(put.out);
  EXPECT_EQ(Str(config["DestinationConfig"].as_object()["OnSuccess"].as_object(), "Destination"),
            sink_arn);
  ProcessResult put_failure = aws_->Lambda(
      {"put-function-event-invoke-config", "--function-name", "failer", "--maximum-retry-attempts",
       "1", "--destination-config", R"({"OnFailure":{"Destination":")" + hook.url() + R"("}})"});
  ASSERT_EQ(put_failure.exit_code, 0) << put_failure.err;
  ProcessResult got =
      aws_->Lambda({"get-function-event-invoke-config", "--function-name", "failer"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_NE(got.out.find(hook.url()), std::string::npos) << got.out;

  // Refused: queues and topics, unknown functions, the function itself.
  for (const std::string& bad : {std::string("arn:aws:sqs:us-east-1:000000000000:q"),
                                 std::string("nope"), std::string("worker")}) {
    ProcessResult r =
        aws_->Lambda({"put-function-event-invoke-config", "--function-name", "worker",
                      "--destination-config", R"({"OnFailure":{"Destination":")" + bad + R"("}})"});
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("DestinationConfig.OnFailure.Destination"), std::string::npos) << r.err;
  }

  auto [summary, unused] = aws_->Invoke(
      {"--function-name", "worker", "--invocation-type", "Event", "--payload", R"({"job":"d-1"})"});
  EXPECT_EQ(Str(summary, "StatusCode"), "202");
  // The sink prints the record it got as its event.
  std::string logs;
  EXPECT_TRUE(Eventually(
      [&] {
        logs = server_->Call("GET", "/v1/functions/sink/logs").body;
        return logs.find("requestContext") != std::string::npos;
      },
      30'000))
      << logs;
  EXPECT_NE(logs.find(R"(\"condition\": \"Success\")"), std::string::npos) << logs;
  EXPECT_NE(logs.find(R"(\"requestPayload\": {\"job\": \"d-1\"})"), std::string::npos) << logs;
  EXPECT_NE(
      logs.find(
          R"(\"functionArn\": \"arn:aws:lambda:us-east-1:000000000000:function:worker:$LATEST\")"),
      std::string::npos)
      << logs;

  auto [failed, unused2] = aws_->Invoke(
      {"--function-name", "failer", "--invocation-type", "Event", "--payload", R"({"job":"d-2"})"});
  EXPECT_EQ(Str(failed, "StatusCode"), "202");
  ASSERT_TRUE(hook.WaitFor([](const auto& r) { return !r.empty(); }, 30'000));
  const ReceivedRequest req = hook.requests()[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/hook");
  const std::string secret_of_failer =
      JsonField(server_->Call("GET", "/v1/functions/failer").body, "webhook_secret");
  ASSERT_FALSE(secret_of_failer.empty());
  EXPECT_EQ(req.headers.at("x-thaw-signature"), WebhookReceiver::Sign(secret_of_failer, req.body));
  json::object record = ParseObject(req.body);
  json::object context = record["requestContext"].as_object();
  EXPECT_EQ(Str(context, "condition"), "RetriesExhausted");
  EXPECT_EQ(Str(context, "approximateInvokeCount"), "2");
  EXPECT_EQ(Str(record["responseContext"].as_object(), "functionError"), "Unhandled");
  EXPECT_EQ(Str(record["responsePayload"].as_object(), "errorType"), "ValueError");
  EXPECT_EQ(Str(record["requestPayload"].as_object(), "job"), "d-2");
  EXPECT_EQ(Str(record, "version"), "1.0");
  // Forwarded to its destination: not a dead letter.
  EXPECT_EQ(server_->Call("GET", "/v1/functions/failer/events?state=failed").body.find("d-2"),
            std::string::npos);
}

TEST_F(LambdaApiTest, AwsCliEventDryRunAndConfigurationUpdates) {
  CreatePython("worker", "app.echo");
  ProcessResult event = aws_->Lambda({"invoke", "--function-name", "worker", "--invocation-type",
                                      "Event", "--cli-binary-format", "raw-in-base64-out",
                                      "--payload", R"({"job":"async-1"})", "/dev/null"});
  ASSERT_EQ(event.exit_code, 0) << event.err;
  EXPECT_EQ(Str(ParseObject(event.out), "StatusCode"), "202");
  // It runs in the background: its log line appears, and the meter counts it.
  EXPECT_TRUE(Eventually(
      [&] {
        return server_->Call("GET", "/v1/functions/worker/logs").body.find("async-1") !=
               std::string::npos;
      },
      10000));
  EXPECT_TRUE(Eventually(
      [&] {
        return server_->Call("GET", "/v1/usage?function=worker").body.find("\"invocations\":1") !=
               std::string::npos;
      },
      5000));
  ProcessResult dry = aws_->Lambda(
      {"invoke", "--function-name", "worker", "--invocation-type", "DryRun", "/dev/null"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(Str(ParseObject(dry.out), "StatusCode"), "204");

  ProcessResult updated =
      aws_->Lambda({"update-function-configuration", "--function-name", "worker", "--environment",
                    R"({"Variables":{"GREETING":"hello from config"}})", "--timeout", "7"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  json::object config = ParseObject(updated.out);
  EXPECT_EQ(Str(config, "Timeout"), "7");
  EXPECT_EQ(json::serialize(config["Environment"]),
            R"({"Variables":{"GREETING":"hello from config"}})");
  auto [summary, payload] = aws_->Invoke({"--function-name", "worker", "--payload", "{}"});
  EXPECT_EQ(Str(ParseObject(payload), "greeting"), "hello from config");
  // The same code, a new thaw version; the native API shows both.
  auto native = server_->Call("GET", "/v1/functions/worker");
  EXPECT_EQ(json::parse(native.body).as_object()["versions"].as_array().size(), 2u);
  ProcessResult reserved =
      aws_->Lambda({"update-function-configuration", "--function-name", "worker", "--environment",
                    R"({"Variables":{"AWS_LAMBDA_RUNTIME_API":"x"}})"});
  EXPECT_EQ(reserved.exit_code, 254);
  EXPECT_NE(reserved.err.find("Environment.Variables.AWS_LAMBDA_RUNTIME_API"), std::string::npos)
      << reserved.err;
}

TEST_F(LambdaApiTest, JsSdkInvokeWithTailClientContextAndFunctionError) {
  const std::string zip64 = Base64Encode(Zip({{"app.py", kHandlers}}));
  json::object created =
      Js("CreateFunctionCommand", {{"FunctionName", "js-echo"},
                                   {"Runtime", "python3.11"},
                                   {"Handler", "app.echo"},
                                   {"Role", "arn:aws:iam::000000000000:role/any"},
                                   {"Code", {{"ZipFileBase64", zip64}}}});
  ASSERT_EQ(Str(created, "ok"), "true") << json::serialize(created);
  EXPECT_EQ(Str(created, "status"), "201");

  const std::string context = Base64Encode(R"({"custom":{"tenant":"t-42"}})");
  json::object ok = Js("InvokeCommand", {{"FunctionName", "js-echo"},
                                         {"Payload", R"({"from":"sdk"})"},
                                         {"LogType", "Tail"},
                                         {"ClientContext", context}});
  ASSERT_EQ(Str(ok, "ok"), "true") << json::serialize(ok);
  json::object out = ok["output"].as_object();
  EXPECT_EQ(Str(out, "StatusCode"), "200");
  EXPECT_EQ(Str(out, "ExecutedVersion"), "$LATEST");
  EXPECT_FALSE(out.contains("FunctionError"));
  json::object result = ParseObject(Str(out, "Payload"));
  EXPECT_EQ(json::serialize(result["event"]), R"({"from":"sdk"})");
  EXPECT_EQ(json::serialize(result["custom"]), R"({"tenant":"t-42"})");
  auto log = Base64Decode(Str(out, "LogResult"));
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("REPORT RequestId: " + Str(out["$metadata"].as_object(), "requestId")),
            std::string::npos)
      << *log;

  json::object created_failing =
      Js("CreateFunctionCommand", {{"FunctionName", "js-fail"},
                                   {"Runtime", "python3.11"},
                                   {"Handler", "app.fail"},
                                   {"Role", "arn:aws:iam::000000000000:role/any"},
                                   {"Code", {{"ZipFileBase64", zip64}}}});
  ASSERT_EQ(Str(created_failing, "ok"), "true") << json::serialize(created_failing);
  json::object failed =
      Js("InvokeCommand", {{"FunctionName", "js-fail"}, {"Payload", "{}"}, {"LogType", "Tail"}});
  ASSERT_EQ(Str(failed, "ok"), "true") << json::serialize(failed);
  json::object fout = failed["output"].as_object();
  EXPECT_EQ(Str(fout, "StatusCode"), "200");
  EXPECT_EQ(Str(fout, "FunctionError"), "Unhandled");
  EXPECT_EQ(Str(ParseObject(Str(fout, "Payload")), "errorType"), "ValueError");
  EXPECT_TRUE(fout.contains("LogResult"));

  json::object missing = Js("InvokeCommand", {{"FunctionName", "nope"}, {"Payload", "{}"}});
  EXPECT_EQ(Str(missing, "ok"), "false");
  EXPECT_EQ(Str(missing, "name"), "ResourceNotFoundException");
  EXPECT_EQ(Str(missing, "status"), "404");

  // Throttled by reserved concurrency 0: the SDK sees the typed error and Lambda's Reason.
  json::object put = Js("PutFunctionConcurrencyCommand",
                        {{"FunctionName", "js-echo"}, {"ReservedConcurrentExecutions", 0}});
  ASSERT_EQ(Str(put, "ok"), "true") << json::serialize(put);
  json::object throttled = Js("InvokeCommand", {{"FunctionName", "js-echo"}, {"Payload", "{}"}});
  EXPECT_EQ(Str(throttled, "name"), "TooManyRequestsException");
  EXPECT_EQ(Str(throttled, "status"), "429");
  EXPECT_EQ(Str(throttled, "reason"), "ReservedFunctionConcurrentInvocationLimitExceeded");
}

// InvokeWithResponseStream through the SDK: AWS's event-stream framing (CRCs, headers) parses,
// each PayloadChunk arrives before the next is produced, and errors end in InvokeComplete.
TEST_F(LambdaApiTest, JsSdkInvokeWithResponseStream) {
  const std::string code =
      "import time\n"
      "def two(event, context):\n"
      "    yield 'one'\n"
      "    time.sleep(0.5)\n"
      "    yield 'T=%.6f' % time.time()\n"
      "def boom(event, context):\n"
      "    yield 'partial'\n"
      "    raise ValueError('went wrong')\n"
      "def whole(event, context):\n"
      "    return {'not': 'streamed'}\n";
  const std::string zip64 = Base64Encode(Zip({{"app.py", code}}));
  for (const char* handler : {"two", "boom", "whole"}) {
    json::object created =
        Js("CreateFunctionCommand", {{"FunctionName", std::string("st-") + handler},
                                     {"Runtime", "python3.11"},
                                     {"Handler", std::string("app.") + handler},
                                     {"Role", "arn:aws:iam::000000000000:role/any"},
                                     {"Code", {{"ZipFileBase64", zip64}}}});
    ASSERT_EQ(Str(created, "ok"), "true") << json::serialize(created);
  }

  json::object two = Js("InvokeWithResponseStreamCommand",
                        {{"FunctionName", "st-two"}, {"Payload", "{}"}, {"LogType", "Tail"}});
  ASSERT_EQ(Str(two, "ok"), "true") << json::serialize(two);
  json::object out = two["output"].as_object();
  EXPECT_EQ(Str(out, "StatusCode"), "200");
  EXPECT_EQ(Str(out, "ExecutedVersion"), "$LATEST");
  json::array events = out["EventStream"].as_array();
  ASSERT_EQ(events.size(), 3u) << json::serialize(out);
  EXPECT_EQ(Str(events[0].as_object(), "PayloadChunk"), "one");
  const std::string second = Str(events[1].as_object(), "PayloadChunk");
  ASSERT_TRUE(second.starts_with("T=")) << second;
  EXPECT_LT(events[0].as_object()["at"].to_number<double>(), std::stod(second.substr(2)));
  json::object complete = events[2].as_object()["InvokeComplete"].as_object();
  EXPECT_FALSE(complete.contains("ErrorCode")) << json::serialize(complete);
  auto log = Base64Decode(Str(complete, "LogResult"));
  ASSERT_TRUE(log.has_value());
  EXPECT_NE(log->find("REPORT RequestId: "), std::string::npos) << *log;

  json::object boom =
      Js("InvokeWithResponseStreamCommand", {{"FunctionName", "st-boom"}, {"Payload", "{}"}});
  ASSERT_EQ(Str(boom, "ok"), "true") << json::serialize(boom);
  json::array bevents = boom["output"].as_object()["EventStream"].as_array();
  ASSERT_EQ(bevents.size(), 2u) << json::serialize(boom);
  EXPECT_EQ(Str(bevents[0].as_object(), "PayloadChunk"), "partial");
  json::object bcomplete = bevents[1].as_object()["InvokeComplete"].as_object();
  EXPECT_EQ(Str(bcomplete, "ErrorCode"), "ValueError");
  EXPECT_EQ(Str(bcomplete, "ErrorDetails"), "went wrong");

  // A function that does not stream answers in one chunk.
  json::object whole =
      Js("InvokeWithResponseStreamCommand", {{"FunctionName", "st-whole"}, {"Payload", "{}"}});
  ASSERT_EQ(Str(whole, "ok"), "true") << json::serialize(whole);
  json::array wevents = whole["output"].as_object()["EventStream"].as_array();
  ASSERT_EQ(wevents.size(), 2u) << json::serialize(whole);
  EXPECT_EQ(Str(wevents[0].as_object(), "PayloadChunk"), R"({"not": "streamed"})");

  json::object missing =
      Js("InvokeWithResponseStreamCommand", {{"FunctionName", "nope"}, {"Payload", "{}"}});
  EXPECT_EQ(Str(missing, "name"), "ResourceNotFoundException");
}

TEST_F(LambdaApiTest, AliasRoutingWeightsSplitCalls) {
  CreatePython("canary", "app.echo", {"--publish"});  // version 1
  ProcessResult v2 = aws_->Lambda(
      {"update-function-configuration", "--function-name", "canary", "--description", "two"});
  ASSERT_EQ(v2.exit_code, 0) << v2.err;
  ASSERT_EQ(aws_->Lambda({"publish-version", "--function-name", "canary"}).exit_code, 0);
  ProcessResult alias = aws_->Lambda({"create-alias", "--function-name", "canary", "--name", "live",
                                      "--function-version", "1", "--routing-config",
                                      R"({"AdditionalVersionWeights":{"2":0.5}})"});
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  json::value weights = ParseObject(alias.out)["RoutingConfig"];
  EXPECT_EQ(weights.at("AdditionalVersionWeights").at("2").to_number<double>(), 0.5) << alias.out;
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) {
    auto r = Aws("POST", "/2015-03-31/functions/canary/invocations?Qualifier=live", "{}");
    ASSERT_EQ(r.status, 200) << r.body;
    ++seen[r.Header("x-amz-executed-version")];
  }
  // Each side has 2^-40 odds of never coming up.
  EXPECT_GT(seen["1"], 0);
  EXPECT_GT(seen["2"], 0);
  EXPECT_EQ(seen["1"] + seen["2"], 40);

  auto all_to_2 = Aws("PUT", "/2015-03-31/functions/canary/aliases/live",
                      R"({"RoutingConfig":{"AdditionalVersionWeights":{"2":1.0}}})");
  ASSERT_EQ(all_to_2.status, 200) << all_to_2.body;
  for (int i = 0; i < 5; ++i) {
    auto r = server_->Invoke("canary", "{}", "live");  // the native face routes the same way
    EXPECT_EQ(r.Header("x-thaw-version"), "2");
  }
  auto bad_weight = Aws("PUT", "/2015-03-31/functions/canary/aliases/live",
                        R"({"RoutingConfig":{"AdditionalVersionWeights":{"2":1.5}}})");
  EXPECT_EQ(bad_weight.status, 400);
  EXPECT_NE(bad_weight.body.find("RoutingConfig.AdditionalVersionWeights.2"), std::string::npos);
  auto latest_weights =
      Aws("PUT", "/2015-03-31/functions/canary/aliases/live", R"({"FunctionVersion":"$LATEST"})");
  EXPECT_EQ(latest_weights.status, 400) << latest_weights.body;
  auto missing_version =
      Aws("POST", "/2015-03-31/functions/canary/aliases", R"({"Name":"x","FunctionVersion":"9"})");
  EXPECT_EQ(missing_version.status, 404);
  auto get = Aws("GET", "/2015-03-31/functions/canary/aliases/live");
  EXPECT_EQ(Str(ParseObject(get.body), "FunctionVersion"), "1");
  EXPECT_EQ(Aws("DELETE", "/2015-03-31/functions/canary/aliases/live").status, 204);
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions/canary/aliases/live").status, 404);
}

TEST_F(LambdaApiTest, ReservedConcurrencyCapsAndPersists) {
  CreatePython("capped", "app.slow");
  auto put = Aws("PUT", "/2017-10-31/functions/capped/concurrency",
                 R"({"ReservedConcurrentExecutions":1})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.body, R"({"ReservedConcurrentExecutions":1})");
  auto first = std::async(std::launch::async, [&] {
    return Aws("POST", "/2015-03-31/functions/capped/invocations", R"({"sleep":1.5})");
  });
  ASSERT_TRUE(server_->WaitForFunction("capped", "\"inflight\":1", 10000));
  auto second = Aws("POST", "/2015-03-31/functions/capped/invocations", R"({"sleep":0})");
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_EQ(second.Header("x-amzn-errortype"), "TooManyRequestsException");
  EXPECT_EQ(second.Header("retry-after"), "1");
  EXPECT_EQ(Str(ParseObject(second.body), "Reason"),
            "ReservedFunctionConcurrentInvocationLimitExceeded");
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(Aws("POST", "/2015-03-31/functions/capped/invocations", R"({"sleep":0})").status, 200);
  // The meter counts the throttle.
  auto usage = server_->Call("GET", "/v1/usage?function=capped");
  EXPECT_NE(usage.body.find("\"throttles\":1"), std::string::npos) << usage.body;

  ASSERT_EQ(Aws("PUT", "/2017-10-31/functions/capped/concurrency",
                R"({"ReservedConcurrentExecutions":0})")
                .status,
            200);
  EXPECT_EQ(Aws("POST", "/2015-03-31/functions/capped/invocations", "{}").status, 429);
  EXPECT_EQ(server_->Invoke("capped", R"({"sleep":0})").status, 429);  // native face too
  EXPECT_EQ(Aws("PUT", "/2017-10-31/functions/capped/concurrency",
                R"({"ReservedConcurrentExecutions":-1})")
                .status,
            400);

  // Published versions, aliases and reserved concurrency survive a crash.
  ASSERT_EQ(Aws("POST", "/2015-03-31/functions/capped/versions", "{}").status, 201);
  ASSERT_EQ(Aws("POST", "/2015-03-31/functions/capped/aliases",
                R"({"Name":"stable","FunctionVersion":"1"})")
                .status,
            201);
  const std::string data = server_->data_dir();
  auto crashed = std::move(server_);  // owns the data dir: removes it when it goes
  crashed->Kill9();
  StartServer(data);
  auto get = Aws("GET", "/2015-03-31/functions/capped");
  ASSERT_EQ(get.status, 200);
  EXPECT_EQ(json::serialize(ParseObject(get.body)["Concurrency"]),
            R"({"ReservedConcurrentExecutions":0})");
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions/capped/aliases/stable").status, 200);
  EXPECT_EQ(Aws("POST", "/2015-03-31/functions/capped/invocations", "{}").status, 429);
  EXPECT_EQ(Aws("DELETE", "/2017-10-31/functions/capped/concurrency").status, 204);
  EXPECT_EQ(Aws("GET", "/2019-09-30/functions/capped/concurrency").body, "{}");
  auto after =
      Aws("POST", "/2015-03-31/functions/capped/invocations?Qualifier=stable", R"({"sleep":0})");
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.Header("x-amz-executed-version"), "1");
  server_->Stop();
}

TEST_F(LambdaApiTest, AuthErrorShapesAndLimits) {
  CreatePython("shapes", "app.echo");
  auto none = server_->Call("POST", "/2015-03-31/functions/shapes/invocations", "{}", {}, false);
  EXPECT_EQ(none.status, 403);
  EXPECT_EQ(none.Header("x-amzn-errortype"), "MissingAuthenticationTokenException");
  EXPECT_EQ(Str(ParseObject(none.body), "Type"), "User");
  EXPECT_FALSE(Str(ParseObject(none.body), "message").empty());
  auto wrong = server_->Call("GET", "/2015-03-31/functions", "",
                             {{"Authorization", "Bearer thaw_wrong"}}, false);
  EXPECT_EQ(wrong.status, 403);
  EXPECT_EQ(wrong.Header("x-amzn-errortype"), "UnrecognizedClientException");
  // The admin key works on these routes too.
  auto bearer = server_->Call("GET", "/2015-03-31/functions");
  EXPECT_EQ(bearer.status, 200);
  EXPECT_FALSE(bearer.Header("x-amzn-requestid").empty());

  auto not_json = Aws("POST", "/2015-03-31/functions/shapes/invocations", "{not json");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(not_json.Header("x-amzn-errortype"), "InvalidRequestContentException");
  auto bad_type = Aws("POST", "/2015-03-31/functions/shapes/invocations", "{}",
                      {{"X-Amz-Invocation-Type", "Sometimes"}});
  EXPECT_EQ(bad_type.status, 400);
  EXPECT_NE(Str(ParseObject(bad_type.body), "message").find("X-Amz-Invocation-Type"),
            std::string::npos);
  auto big = Aws("POST", "/2015-03-31/functions/shapes/invocations",
                 "\"" + std::string(6 * 1024 * 1024, 'x') + "\"");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(big.Header("x-amzn-errortype"), "RequestTooLargeException");
  auto big_event =
      Aws("POST", "/2015-03-31/functions/shapes/invocations",
          "\"" + std::string(300 * 1024, 'x') + "\"", {{"X-Amz-Invocation-Type", "Event"}});
  EXPECT_EQ(big_event.status, 413);
  auto missing = Aws("POST", "/2015-03-31/functions/nope/invocations", "{}");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.Header("x-amzn-errortype"), "ResourceNotFoundException");

  // Names as ARNs, percent-encoded as the clients send them.
  auto by_arn = Aws("POST",
                    "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3A"
                    "function%3Ashapes%3A%24LATEST/invocations",
                    "{}");
  EXPECT_EQ(by_arn.status, 200) << by_arn.body;
  EXPECT_EQ(by_arn.Header("x-amz-executed-version"), "$LATEST");
  auto clash = Aws("POST", "/2015-03-31/functions/shapes%3A1/invocations?Qualifier=2", "{}");
  EXPECT_EQ(clash.status, 400);
  auto bad_name = Aws("GET", "/2015-03-31/functions/bad.name");
  EXPECT_EQ(bad_name.status, 400);

  auto s3 = Aws("POST", "/2015-03-31/functions",
                R"({"FunctionName":"s3","Runtime":"python3.12","Handler":"a.b",)"
                R"("Code":{"S3Bucket":"b","S3Key":"k"}})");
  EXPECT_EQ(s3.status, 400);
  EXPECT_NE(s3.body.find("Code.S3Bucket"), std::string::npos) << s3.body;
  auto no_handler = Aws("POST", "/2015-03-31/functions",
                        R"({"FunctionName":"nh","Runtime":"python3.12","Code":{"ZipFile":")" +
                            Base64Encode(Zip({{"app.py", kHandlers}})) + R"("}})");
  EXPECT_EQ(no_handler.status, 400);
  EXPECT_NE(no_handler.body.find("Handler"), std::string::npos) << no_handler.body;
  auto bad_memory =
      Aws("PUT", "/2015-03-31/functions/shapes/configuration", R"({"MemorySize":"lots"})");
  EXPECT_EQ(bad_memory.status, 400);
  EXPECT_NE(bad_memory.body.find("MemorySize"), std::string::npos);
  // Nothing half-done: the failed create left no function and no bundle.
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions/nh").status, 404);
  EXPECT_TRUE(std::filesystem::is_empty(server_->data_dir() + "/tmp"));

  auto unknown = Aws("GET", "/2015-03-31/layers");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.Header("x-amzn-errortype"), "UnknownOperationException");
}

TEST_F(LambdaApiTest, ListFunctionsPagesWithMarkers) {
  for (const char* name : {"a-fn", "b-fn", "c-fn"}) {
    auto r = Aws("POST", "/2015-03-31/functions",
                 std::string(R"({"FunctionName":")") + name +
                     R"(","Runtime":"python3.12","Handler":"app.echo","Code":{"ZipFile":")" +
                     Base64Encode(Zip({{"app.py", kHandlers}})) + R"("}})");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  std::vector<std::string> names;
  std::string marker;
  for (int page = 0; page < 5; ++page) {
    // The JS SDK asks without the trailing slash, awscli with it: both are routed.
    std::string target =
        page % 2 ? "/2015-03-31/functions?MaxItems=2" : "/2015-03-31/functions/?MaxItems=2";
    if (!marker.empty()) target += "&Marker=" + marker;
    auto r = Aws("GET", target);
    ASSERT_EQ(r.status, 200) << r.body;
    json::object o = ParseObject(r.body);
    for (auto& f : o["Functions"].as_array()) names.push_back(Str(f.as_object(), "FunctionName"));
    if (!o.contains("NextMarker")) break;
    marker = Str(o, "NextMarker");
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a-fn", "b-fn", "c-fn"}));
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions?MaxItems=0").status, 400);
}

// Tenants are AWS accounts to the clients: a tenant's key id and secret sign awscli's and the JS
// SDK's requests, which are verified; its functions live in its own account and namespace.
TEST_F(LambdaApiTest, TenantCredentialsAreVerifiedAndScoped) {
  server_->CreateTenant("acme");
  auto [id, secret] = server_->CreateKey("acme");
  const Credentials acme{id, secret};
  AwsCli acme_cli(server_->url(), acme);
  ProcessResult created =
      acme_cli.Lambda({"create-function", "--function-name", "echo", "--runtime", "python3.12",
                       "--handler", "app.echo", "--role", "arn:aws:iam::000000000000:role/any",
                       "--zip-file", "fileb://" + aws_->zip_path()});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string arn = Str(ParseObject(created.out), "FunctionArn");
  EXPECT_EQ(arn.find(":000000000000:"), std::string::npos) << arn;
  auto [summary, payload] = acme_cli.Invoke({"--function-name", "echo", "--payload", R"({"n":7})"});
  EXPECT_EQ(summary["StatusCode"].as_int64(), 200);
  EXPECT_NE(payload.find(R"("n": 7)"), std::string::npos) << payload;

  // The default tenant's key does not see acme's function, by name or by ARN.
  ProcessResult other = aws_->Lambda({"get-function", "--function-name", "echo"});
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("ResourceNotFoundException"), std::string::npos) << other.err;
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions/" + arn).status, 404);
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions/" + arn, "", {}, &acme).status, 200);

  // The JS SDK signs with the same credentials; a wrong secret is refused as AWS refuses it.
  json::object ok = JsSdk(server_->url(), acme, "InvokeCommand",
                          {{"FunctionName", "echo"}, {"Payload", R"({"n":8})"}});
  EXPECT_TRUE(ok["ok"].as_bool()) << json::serialize(ok);
  const Credentials wrong{id, secret.substr(1) + "x"};
  json::object refused =
      JsSdk(server_->url(), wrong, "InvokeCommand", {{"FunctionName", "echo"}, {"Payload", "{}"}});
  EXPECT_FALSE(refused["ok"].as_bool());
  EXPECT_EQ(refused["status"].as_int64(), 403) << json::serialize(refused);
  EXPECT_EQ(Str(refused, "name"), "InvalidSignatureException") << json::serialize(refused);
  AwsCli wrong_cli(server_->url(), wrong);
  ProcessResult denied = wrong_cli.Lambda({"list-functions"});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_NE(denied.err.find("InvalidSignatureException"), std::string::npos) << denied.err;
  const Credentials unknown{"AKTH0000000000000000", secret};
  auto unknown_id = Aws("GET", "/2015-03-31/functions", "", {}, &unknown);
  EXPECT_EQ(unknown_id.status, 403);
  EXPECT_EQ(unknown_id.Header("x-amzn-errortype"), "UnrecognizedClientException");

  // A signature made 20 minutes ago (or ahead) is stale; a minute off is fine.
  auto stale = Aws("GET", "/2015-03-31/functions", "", {}, &acme, -20 * 60);
  EXPECT_EQ(stale.status, 403);
  EXPECT_EQ(stale.Header("x-amzn-errortype"), "InvalidSignatureException");
  EXPECT_NE(Str(ParseObject(stale.body), "message").find("Signature expired"), std::string::npos)
      << stale.body;
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions", "", {}, &acme, 20 * 60).status, 403);
  EXPECT_EQ(Aws("GET", "/2015-03-31/functions", "", {}, &acme, -60).status, 200);
  auto signed_invoke = Aws("POST", "/2015-03-31/functions/echo/invocations", "{}", {}, &acme);
  EXPECT_EQ(signed_invoke.status, 200) << signed_invoke.body;

  // A revoked key stops working at once.
  ASSERT_EQ(server_->Call("DELETE", "/v1/keys/" + id).status, 204);
  ProcessResult revoked = acme_cli.Lambda({"list-functions"});
  EXPECT_NE(revoked.exit_code, 0);
  EXPECT_NE(revoked.err.find("UnrecognizedClientException"), std::string::npos) << revoked.err;
}

// EphemeralStorage (ephemeral_storage_mb): set at create, changed by update, shown by get;
// sizes outside 512-10240 refused naming the field.
TEST_F(LambdaApiTest, AwsCliEphemeralStorageRoundTrip) {
  CreatePython("roomy", "app.echo", {"--ephemeral-storage", "Size=2048"});
  ProcessResult got = aws_->Lambda({"get-function-configuration", "--function-name", "roomy"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(Str(ParseObject(got.out), "EphemeralStorage"), R"({"Size":2048})");
  ProcessResult updated = aws_->Lambda({"update-function-configuration", "--function-name", "roomy",
                                        "--ephemeral-storage", "Size=10240"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  EXPECT_EQ(Str(ParseObject(updated.out), "EphemeralStorage"), R"({"Size":10240})");
  got = aws_->Lambda({"get-function", "--function-name", "roomy"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(Str(ParseObject(got.out)["Configuration"].as_object(), "EphemeralStorage"),
            R"({"Size":10240})");
  // The CLI checks the bounds itself; raw requests reach the server's own check.
  for (const char* body : {R"({"EphemeralStorage":{"Size":511}})",
                           R"({"EphemeralStorage":{"Size":10241}})", R"({"EphemeralStorage":7})"}) {
    auto r = Aws("PUT", "/2015-03-31/functions/roomy/configuration", body);
    EXPECT_EQ(r.status, 400) << body << " " << r.body;
    EXPECT_NE(r.body.find("EphemeralStorage"), std::string::npos) << r.body;
  }
  // A function created without it has Lambda's default.
  CreatePython("plain", "app.echo");
  got = aws_->Lambda({"get-function-configuration", "--function-name", "plain"});
  EXPECT_EQ(Str(ParseObject(got.out), "EphemeralStorage"), R"({"Size":512})");
}

}  // namespace
}  // namespace thaw::testing

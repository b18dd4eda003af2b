// Integration tests of the examples users come for, deployed on the real server:
// digits-torch (CPU inference with a model trained during the build, judged on held-out
// images; digits-torch-store, the same with its model in the model store), ai-proxy (an
// OpenAI-style proxy, driven against a fake upstream on loopback), and tiny-chat and tiny-embed
// (a character-level model trained during the build, served under the OpenAI routes, also to
// the official openai SDK).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------
// digits-torch

const std::string kDigits = std::string(THAW_BUILD_DIR) + "/examples/digits-torch";
const std::string kDigitsTestData =
    std::string(THAW_BUILD_DIR) + "/examples/digits-torch-testdata.json";

TEST(DigitsTorchTest, ClassifiesHeldOutImagesWithTheModelLoadedOnce) {
  for (const auto& built : {kDigits + "/model.pt", kDigitsTestData}) {
    ASSERT_TRUE(fs::exists(built)) << built << ": the build makes it (target digits_torch)";
  }
  json::object testdata = json::parse(Slurp(kDigitsTestData)).as_object();
  const json::array& images = testdata["images"].as_array();
  const json::array& labels = testdata["labels"].as_array();
  ASSERT_GT(images.size(), 300u);  // 20% of 1797
  ASSERT_EQ(images.size(), labels.size());

  // Importing torch takes seconds, and many more on a loaded 2-core machine: give the init
  // room past the 10 s default (the cold-start figure is what this test reports).
  auto server = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"});
  auto d = server->Deploy("digits-torch", kDigits);
  ASSERT_EQ(d.status, 201) << d.body;

  // The whole held-out split as one batch: the cold start (torch import, model load).
  auto batch = server->Invoke("digits-torch", json::serialize(json::object{{"images", images}}));
  ASSERT_EQ(batch.status, 200) << batch.body;
  EXPECT_EQ(batch.Header("x-thaw-cold-start"), "true");
  json::object b = json::parse(batch.body).as_object();
  const json::array& predicted = b["labels"].as_array();
  ASSERT_EQ(predicted.size(), labels.size());
  size_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  double accuracy = static_cast<double>(correct) / static_cast<double>(labels.size());
  EXPECT_GE(accuracy, 0.9) << correct << "/" << labels.size();
  std::printf("digits-torch: %zu/%zu held-out images right (%.1f%%), cold start %s ms\n", correct,
              labels.size(), 100 * accuracy, batch.Header("x-thaw-init-ms").c_str());
  const json::array& probs = b["probabilities"].as_array();
  ASSERT_EQ(probs.size(), labels.size());
  ASSERT_EQ(probs[0].as_array().size(), 10u);
  double sum = 0;
  for (auto& p : probs[0].as_array()) sum += p.to_number<double>();
  EXPECT_NEAR(sum, 1.0, 0.01);
  json::object model = b["model"].as_object();
  EXPECT_EQ(model["calls"].as_int64(), 1);

  // Single images, warm: the same instance, the same load, no reload, and quick.
  size_t single_correct = 0;
  const size_t kSingles = 20;
  for (size_t i = 0; i < kSingles; ++i) {
    auto r = server->Invoke("digits-torch", json::serialize(json::object{{"pixels", images[i]}}));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-thaw-cold-start"), "false");
    EXPECT_LT(std::stoi(r.Header("x-thaw-billed-ms")), 500) << "a warm call reloaded?";
    json::object o = json::parse(r.body).as_object();
    single_correct += o["label"] == labels[i];
    json::object m = o["model"].as_object();
    EXPECT_EQ(m["id"], model["id"]);
    EXPECT_EQ(m["load_ms"], model["load_ms"]);
    EXPECT_EQ(m["calls"].as_int64(), static_cast<int64_t>(i) + 2);
  }
  EXPECT_GE(single_correct, kSingles * 9 / 10);

  // The load happened once: one "loaded model.pt" line in the function's log.
  auto logs = server->Call("GET", "/v1/functions/digits-torch/logs?limit=10000");
  ASSERT_EQ(logs.status, 200);
  json::array lines = json::parse(logs.body).as_object()["lines"].as_array();
  size_t loads = 0;
  for (auto& l : lines) {
    loads += std::string(l.as_object().at("message").as_string()).find("loaded model.pt") !=
             std::string::npos;
  }
  EXPECT_EQ(loads, 1u) << logs.body;

  // Bad input is the caller's error, named as such.
  auto bad = server->Invoke("digits-torch", R"({"pixels":[1,2,3]})");
  EXPECT_EQ(bad.status, 502);
  EXPECT_EQ(JsonField(bad.body, "errorType"), "ValueError");
  EXPECT_NE(JsonField(bad.body, "errorMessage").find("64 numbers"), std::string::npos) << bad.body;
}

// digits-torch-store: the same app, its model from the model store (the bundle is code only).
TEST(DigitsTorchTest, StoreVariantLoadsItsModelFromTheStore) {
  const std::string code = std::string(THAW_BUILD_DIR) + "/examples/digits-torch-store";
  const std::string model = std::string(THAW_BUILD_DIR) + "/examples/digits-torch-model";
  ASSERT_TRUE(fs::exists(model + "/model.pt")) << "the build makes it (target digits_torch_store)";
  EXPECT_FALSE(fs::exists(code + "/model.pt")) << "the bundle must hold only code";
  json::object testdata = json::parse(Slurp(kDigitsTestData)).as_object();
  const json::array& images = testdata["images"].as_array();
  const json::array& labels = testdata["labels"].as_array();
  auto server = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"});
  auto before = server->Deploy("digits-torch-store", code);
  EXPECT_EQ(before.status, 400) << "no model pushed yet: " << before.body;
  const std::vector<std::string> env = {"THAW_SERVER=" + server->url(),
                                        "THAW_API_KEY=" + server->key(), "PATH=/usr/bin:/bin"};
  auto push = RunProcess({THAW_BINARY, "models", "push", "digits:v1", model}, &env);
  ASSERT_EQ(push.exit_code, 0) << push.out << push.err;
  auto d = server->Deploy("digits-torch-store", code);
  ASSERT_EQ(d.status, 201) << d.body;
  EXPECT_EQ(json::parse(d.body).at("models").as_array()[0].at("bytes").as_int64(),
            static_cast<int64_t>(fs::file_size(model + "/model.pt")));
  auto batch =
      server->Invoke("digits-torch-store", json::serialize(json::object{{"images", images}}));
  ASSERT_EQ(batch.status, 200) << batch.body;
  const json::value answer = json::parse(batch.body);
  const json::array& predicted = answer.at("labels").as_array();
  ASSERT_EQ(predicted.size(), labels.size());
  size_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  EXPECT_GE(correct, labels.size() * 9 / 10) << correct << "/" << labels.size();
}

// digits-torch-batched: the same handler and model with `batch:`. Concurrent single-image
// calls share forward passes and each caller still gets its own image's label; a malformed
// image fails its caller alone.
TEST(DigitsTorchTest, BatchedCallsGetTheirOwnLabels) {
  const std::string dir = std::string(THAW_BUILD_DIR) + "/examples/digits-torch-batched";
  ASSERT_TRUE(fs::exists(dir + "/model.pt")) << dir << ": the build makes it";
  json::object testdata = json::parse(Slurp(kDigitsTestData)).as_object();
  const json::array& images = testdata["images"].as_array();
  const json::array& labels = testdata["labels"].as_array();
  auto server = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"});
  auto d = server->Deploy("digits-torch-batched", dir);
  ASSERT_EQ(d.status, 201) << d.body;
  // The cold start alone, then 48 callers at once (one of them malformed).
  ASSERT_EQ(
      server->Invoke("digits-torch-batched", R"({"pixels":)" + json::serialize(images[0]) + "}")
          .status,
      200);
  constexpr size_t kCallers = 48, kBad = 17;
  std::vector<std::future<HttpResult>> calls;
  for (size_t i = 0; i < kCallers; ++i) {
    const std::string payload =
        i == kBad ? R"({"pixels":[1,2,3]})" : json::serialize(json::object{{"pixels", images[i]}});
    calls.push_back(std::async(std::launch::async, [&server, payload] {
      return server->Invoke("digits-torch-batched", payload);
    }));
  }
  size_t correct = 0;
  std::set<int64_t> calls_seen;
  for (size_t i = 0; i < kCallers; ++i) {
    HttpResult r = calls[i].get();
    if (i == kBad) {
      EXPECT_EQ(r.status, 502) << r.body;
      EXPECT_EQ(JsonField(r.body, "errorType"), "ValueError");
      EXPECT_NE(JsonField(r.body, "errorMessage").find("64 numbers"), std::string::npos);
      continue;
    }
    ASSERT_EQ(r.status, 200) << r.body;
    json::object o = json::parse(r.body).as_object();
    correct += o["label"] == labels[i];
    calls_seen.insert(o["model"].as_object()["calls"].as_int64());
  }
  EXPECT_GE(correct, (kCallers - 1) * 9 / 10);
  // Fewer handler calls than callers: some shared a batch (the counter is per handler call).
  auto metrics = server->Call("GET", "/metrics").body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      metrics, m,
      std::regex("thaw_batch_size_count\\{function=\"digits-torch-batched\"\\} ([0-9]+)")))
      << metrics;
  EXPECT_LT(std::stoll(m[1].str()), static_cast<long long>(kCallers) + 1) << metrics;
  EXPECT_LT(calls_seen.size(), kCallers - 1);
}

// ---------------------------------------------------------------------------------------
// ai-proxy

// A loopback HTTP/1.1 server standing in for an OpenAI-compatible API, one thread per
// connection. The request's "model" picks the behaviour:
//   ok      200 with a chat completion echoing the last message
//   flaky   503 the first two times, then as ok
//   busy    429 with Retry-After: 1, always
//   reject  401 echoing the key it got, as OpenAI's "Incorrect API key provided" does
//   slow    no answer until the server stops
class FakeUpstream {
 public:
  struct Request {
    std::string model, authorization, body;
    Clock::time_point at;
  };

  FakeUpstream() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("fake upstream: cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeUpstream() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();                   // releases "slow" handlers
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    for (auto& t : handlers_) t.join();
    ::close(listen_fd_);
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1/chat/completions";
  }

  std::vector<Request> Requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void AcceptLoop() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      handlers_.emplace_back([this, fd] {
        Serve(fd);
        ::close(fd);
      });
    }
  }

  void Serve(int fd) {
    std::string in;
    char buf[4096];
    size_t header_end;
    while ((header_end = in.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    std::map<std::string, std::string> headers;  // lower-case names
    std::istringstream lines(in.substr(0, header_end));
    std::string line;
    std::getline(lines, line);  // request line
    while (std::getline(lines, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (!value.empty() && value.back() == '\r') value.pop_back();
      headers[name] = value;
    }
    size_t length = headers.count("content-length") ? std::stoul(headers["content-length"]) : 0;
    std::string body = in.substr(header_end + 4);
    while (body.size() < length) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) return;
      body.append(buf, static_cast<size_t>(n));
    }

    boost::system::error_code ec;
    json::value event = json::parse(body, ec);
    std::string model, last_message;
    if (!ec && event.is_object()) {
      if (auto* m = event.as_object().if_contains("model"); m && m->is_string()) {
        model = m->as_string();
      }
      if (auto* ms = event.as_object().if_contains("messages");
          ms && ms->is_array() && !ms->as_array().empty()) {
        last_message = JsonField(json::serialize(ms->as_array().back()), "content");
      }
    }
    int seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back({model, headers["authorization"], body, Clock::now()});
      seen = ++count_[model];
    }

    if (model == "slow") {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_; });
      return;
    }
    if (model == "busy") {
      Respond(fd, "429 Too Many Requests", R"({"error":{"message":"Rate limit reached"}})",
              "Retry-After: 1\r\n");
    } else if (model == "flaky" && seen <= 2) {
      Respond(fd, "503 Service Unavailable", R"({"error":{"message":"overloaded"}})");
    } else if (model == "reject") {
      std::string key = headers["authorization"].substr(std::string("Bearer ").size());
      Respond(fd, "401 Unauthorized",
              json::serialize(
                  json::object{{"error", {{"message", "Incorrect API key provided: " + key}}}}));
    } else {
      json::object answer{
          {"id", "chatcmpl-test"},
          {"object", "chat.completion"},
          {"model", model},
          {"choices",
           json::array{json::object{
               {"index", 0},
               {"message", {{"role", "assistant"}, {"content", "echo: " + last_message}}},
               {"finish_reason", "stop"}}}},
          {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}}}};
      Respond(fd, "200 OK", json::serialize(answer));
    }
  }

  static void Respond(int fd, const std::string& status, const std::string& body,
                      const std::string& extra_headers = "") {
    std::string out = "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n" +
                      extra_headers + "Content-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body;
    (void)!::write(fd, out.data(), out.size());
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> handlers_;  // guarded by mu_ until acceptor_ is joined
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<Request> requests_;
  std::map<std::string, int> count_;
};

const fs::path kAiProxy = fs::path(THAW_SOURCE_DIR) / "examples/ai-proxy";

std::string RandomKey() {
  std::random_device rd;
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return std::string("sk-test-") + hex;
}

class AiProxyTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }

  // Every scenario: the key reached the upstream but none of thaw's logs, the function's
  // log lines or what the server printed.
  void TearDown() override {
    auto logs = server_->Call("GET", "/v1/functions/ai-proxy/logs?limit=10000");
    EXPECT_EQ(logs.status, 200);
    EXPECT_NE(logs.body.find("attempt 1/"), std::string::npos) << "no proxy log lines?";
    EXPECT_EQ(logs.body.find(key_), std::string::npos) << logs.body;
    EXPECT_EQ(server_->Output().find(key_), std::string::npos);
    for (auto& f : fs::directory_iterator(server_->data_dir() + "/logs")) {
      EXPECT_EQ(Slurp(f.path()).find(key_), std::string::npos) << f.path();
    }
    for (auto& r : upstream_.Requests()) EXPECT_EQ(r.authorization, "Bearer " + key_);
    for (auto& d : bundles_) RemoveDir(d);
  }

  // Deploys examples/ai-proxy as shipped, but for the placeholder values in its thaw.yaml,
  // which point at `url` with the test's key and short timings.
  void DeployProxy(const std::string& url) {
    const std::map<std::string, std::string> env = {{"UPSTREAM_URL", url},
                                                    {"UPSTREAM_API_KEY", key_},
                                                    {"UPSTREAM_TIMEOUT_S", "1"},
                                                    {"UPSTREAM_MAX_ATTEMPTS", "3"},
                                                    {"UPSTREAM_BACKOFF_S", "0.2"}};
    std::map<std::string, std::string> files;
    for (auto& f : fs::directory_iterator(kAiProxy)) {
      files[f.path().filename().string()] = Slurp(f.path());
    }
    std::istringstream in(files.at("thaw.yaml"));
    std::string yaml, line;
    size_t replaced = 0;
    while (std::getline(in, line)) {
      for (auto& [name, value] : env) {
        if (line.starts_with("  " + name + ":")) {
          line = "  " + name + ": \"" + value + "\"";
          ++replaced;
        }
      }
      yaml += line + "\n";
    }
    ASSERT_EQ(replaced, env.size()) << "examples/ai-proxy/thaw.yaml lost a placeholder:\n"
                                    << files["thaw.yaml"];
    files["thaw.yaml"] = yaml;
    bundles_.push_back(MakeBundle(files));
    auto d = server_->Deploy("ai-proxy", bundles_.back());
    ASSERT_EQ(d.status, 201) << d.body;
  }

  static std::string Chat(const std::string& model) {
    return json::serialize(
        json::object{{"model", model},
                     {"messages", json::array{json::object{{"role", "user"}, {"content", "hi"}}}},
                     {"temperature", 0.5}});
  }

  static double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

  const std::string key_ = RandomKey();
  FakeUpstream upstream_;
  std::unique_ptr<ThawServer> server_;
  std::vector<std::string> bundles_;
};

TEST_F(AiProxyTest, ForwardsTheChatRequestWithTheKey) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", Chat("ok"));
  ASSERT_EQ(r.status, 200) << r.body;
  json::object o = json::parse(r.body).as_object();
  EXPECT_EQ(o["object"], "chat.completion");
  EXPECT_EQ(o["choices"].as_array()[0].as_object()["message"].as_object()["content"], "echo: hi");
  EXPECT_EQ(r.body.find(key_), std::string::npos);
  auto seen = upstream_.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].authorization, "Bearer " + key_);
  // The request goes upstream as sent.
  EXPECT_EQ(json::parse(seen[0].body), json::parse(Chat("ok")));
}

TEST_F(AiProxyTest, RetriesServerErrorsWithGrowingBackoff) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", Chat("flaky"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(JsonField(r.body, "object"), "chat.completion");
  auto seen = upstream_.Requests();
  ASSERT_EQ(seen.size(), 3u);
  // UPSTREAM_BACKOFF_S 0.2: the first wait is 0.1-0.2 s, the second 0.2-0.4 s.
  EXPECT_GE(Seconds(seen[1].at - seen[0].at), 0.1);
  EXPECT_GE(Seconds(seen[2].at - seen[1].at), 0.2);
  auto logs = server_->Call("GET", "/v1/functions/ai-proxy/logs").body;
  EXPECT_NE(logs.find("attempt 2/3 failed"), std::string::npos) << logs;
  EXPECT_NE(logs.find("503 Service Unavailable"), std::string::npos) << logs;
  EXPECT_NE(logs.find("attempt 3/3 ok"), std::string::npos) << logs;
}

TEST_F(AiProxyTest, GivesUpOnPersistent429HonouringRetryAfter) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", Chat("busy"));
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "UpstreamUnavailable");
  std::string message = JsonField(r.body, "errorMessage");
  EXPECT_NE(message.find("all 3 attempts"), std::string::npos) << message;
  EXPECT_NE(message.find("429 Too Many Requests"), std::string::npos) << message;
  auto seen = upstream_.Requests();
  ASSERT_EQ(seen.size(), 3u);
  for (size_t i = 1; i < seen.size(); ++i) {  // Retry-After: 1 beats the 0.2 s backoff
    EXPECT_GE(Seconds(seen[i].at - seen[i - 1].at), 0.95) << i;
  }
}

TEST_F(AiProxyTest, RefusalIsNotRetriedAndTheEchoedKeyIsRedacted) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", Chat("reject"));
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "UpstreamRejected");
  std::string message = JsonField(r.body, "errorMessage");
  EXPECT_NE(message.find("401 Unauthorized"), std::string::npos) << message;
  EXPECT_NE(message.find("Incorrect API key provided: [redacted]"), std::string::npos) << message;
  EXPECT_EQ(r.body.find(key_), std::string::npos);
  EXPECT_EQ(upstream_.Requests().size(), 1u);
}

TEST_F(AiProxyTest, UnreachableUpstreamIsAClearError) {
  // A port bound but not listening: connections to it are refused, and nobody else can take
  // it while this socket holds it.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  DeployProxy("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1/chat/completions");
  auto r = server_->Invoke("ai-proxy", Chat("ok"));
  ::close(fd);
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "UpstreamUnavailable");
  std::string message = JsonField(r.body, "errorMessage");
  EXPECT_NE(message.find("all 3 attempts"), std::string::npos) << message;
  EXPECT_NE(message.find("Connection refused"), std::string::npos) << message;
}

TEST_F(AiProxyTest, SilentUpstreamTimesOutEachAttempt) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", Chat("slow"));
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "UpstreamUnavailable");
  EXPECT_NE(JsonField(r.body, "errorMessage").find("no answer within 1.0 s"), std::string::npos)
      << r.body;
  EXPECT_EQ(upstream_.Requests().size(), 3u);
}

TEST_F(AiProxyTest, NonChatEventIsRefusedWithoutCallingUpstream) {
  DeployProxy(upstream_.url());
  auto r = server_->Invoke("ai-proxy", R"({"prompt":"hi"})");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(JsonField(r.body, "errorType"), "InvalidRequest");
  EXPECT_TRUE(upstream_.Requests().empty());
  // TearDown looks for the proxy's log lines: give it one real call.
  EXPECT_EQ(server_->Invoke("ai-proxy", Chat("ok")).status, 200);
}

// ---------------------------------------------------------------------------------------
// tiny-chat and tiny-embed: one character-level model trained on Debian's fortunes during
// the build, served under the OpenAI routes (examples/tiny-chat/train.py).

const std::string kTinyChat = std::string(THAW_BUILD_DIR) + "/examples/tiny-chat";
const std::string kTinyEmbed = std::string(THAW_BUILD_DIR) + "/examples/tiny-embed";

json::object ParseObject(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

std::vector<double> Floats(const json::value& v) {
  std::vector<double> out;
  for (const json::value& x : v.as_array()) out.push_back(x.to_number<double>());
  return out;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// One server with both examples deployed, shared by the suite: each cold start imports torch.
class TinyModelsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const auto& built : {kTinyChat + "/model.pt", kTinyEmbed + "/model.pt"}) {
      ASSERT_TRUE(fs::exists(built)) << built << ": the build makes it (target tiny_models)";
    }
    // Importing torch takes seconds, and many more on a loaded 2-core machine.
    server_ = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"})
                  .release();
    for (const auto& [name, dir] :
         {std::pair{"tiny-chat", kTinyChat}, {"tiny-embed", kTinyEmbed}}) {
      auto d = server_->Deploy(name, dir);
      ASSERT_EQ(d.status, 201) << d.body;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static HttpResult Post(const std::string& path, const json::object& body) {
    return server_->Call(
        "POST", path, json::serialize(body),
        {{"Authorization", "Bearer " + server_->key()}, {"Content-Type", "application/json"}},
        false);
  }
  // A chat with one user message and `params`; the answer's body, asserting 200.
  static json::object Chat(json::object params) {
    params["model"] = "tiny-chat";
    params["messages"] =
        json::array{json::object{{"role", "user"}, {"content", "What does the future hold?"}}};
    auto r = Post("/v1/chat/completions", params);
    EXPECT_EQ(r.status, 200) << r.body;
    return ParseObject(r.body);
  }
  static std::string ContentOf(json::object& answer) {
    return std::string(
        answer["choices"].as_array()[0].as_object()["message"].as_object()["content"].as_string());
  }
  static std::string FinishOf(json::object& answer) {
    return std::string(answer["choices"].as_array()[0].as_object()["finish_reason"].as_string());
  }
  static inline ThawServer* server_ = nullptr;
};

TEST_F(TinyModelsTest, ChatSamplesWithTheRequestsParameters) {
  // The same seed gives the same text; the usage counts characters.
  const json::object seeded{{"seed", 7}, {"max_tokens", 40}, {"temperature", 0.9}};
  json::object a = Chat(seeded);
  json::object b = Chat(seeded);
  ASSERT_EQ(a["object"], "chat.completion") << a;
  const std::string text = ContentOf(a);
  EXPECT_EQ(ContentOf(b), text);
  json::object usage = a["usage"].as_object();
  EXPECT_EQ(usage["completion_tokens"].as_int64(), static_cast<int64_t>(text.size())) << a;
  EXPECT_GT(usage["prompt_tokens"].as_int64(), 20) << a;  // the message and its framing
  EXPECT_LE(text.size(), 40u) << text;
  if (FinishOf(a) == "length") {
    EXPECT_EQ(text.size(), 40u) << text;
  }

  // Other seeds, other texts.
  std::set<std::string> texts{text};
  for (int seed = 1; seed <= 4; ++seed) {
    json::object other = Chat({{"seed", seed}, {"max_tokens", 40}, {"temperature", 0.9}});
    texts.insert(ContentOf(other));
  }
  EXPECT_GE(texts.size(), 3u);

  // max_tokens bounds the answer.
  json::object short_answer = Chat({{"seed", 7}, {"max_tokens", 3}});
  EXPECT_LE(ContentOf(short_answer).size(), 3u) << short_answer;

  // A stop sequence ends the text before it: the same seeded draw, cut where the stop first
  // appears (the draw does not depend on the stop). Seeds until the text is long enough.
  for (int seed = 100; seed < 120; ++seed) {
    json::object draw = Chat({{"seed", seed}, {"max_tokens", 60}});
    const std::string full = ContentOf(draw);
    if (full.size() < 12) continue;
    const std::string stop = full.substr(8, 2);
    json::object cut = Chat({{"seed", seed}, {"max_tokens", 60}, {"stop", json::array{stop}}});
    EXPECT_EQ(ContentOf(cut), full.substr(0, full.find(stop))) << "stop " << json::value(stop);
    EXPECT_EQ(FinishOf(cut), "stop");
    break;
  }

  // Bad parameters: the gateway's bounds, and what only the model knows (n > 1), both as
  // OpenAI's 400.
  auto hot = Post("/v1/chat/completions",
                  {{"model", "tiny-chat"},
                   {"temperature", 3},
                   {"messages", json::array{json::object{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(hot.status, 400) << hot.body;
  EXPECT_EQ(ParseObject(hot.body)["error"].as_object()["param"], "temperature") << hot.body;
  auto two = Post("/v1/chat/completions",
                  {{"model", "tiny-chat"},
                   {"n", 2},
                   {"messages", json::array{json::object{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(two.status, 400) << two.body;
  json::object error = ParseObject(two.body)["error"].as_object();
  EXPECT_EQ(error["type"], "invalid_request_error") << two.body;
  EXPECT_NE(std::string(error["message"].as_string()).find("n must be 1"), std::string::npos)
      << two.body;
}

TEST_F(TinyModelsTest, ChatStreamsOneTokenPerEvent) {
  const json::object params{{"seed", 11}, {"max_tokens", 50}, {"temperature", 0.8}};
  json::object plain = Chat(params);
  const std::string text = ContentOf(plain);

  json::object streamed = params;
  streamed["stream"] = true;
  streamed["model"] = "tiny-chat";
  streamed["messages"] =
      json::array{json::object{{"role", "user"}, {"content", "What does the future hold?"}}};
  auto r = Post("/v1/chat/completions", streamed);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  std::string joined, finish;
  size_t deltas = 0;
  json::object usage;
  bool done = false;
  for (size_t pos = 0; pos < r.body.size();) {
    size_t end = r.body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << r.body;
    std::string event = r.body.substr(pos, end - pos);
    pos = end + 2;
    ASSERT_TRUE(event.starts_with("data: ")) << event;
    if (event == "data: [DONE]") {
      done = true;
      continue;
    }
    json::object chunk = ParseObject(event.substr(6));
    ASSERT_EQ(chunk["object"], "chat.completion.chunk") << event;
    if (chunk.contains("usage")) usage = chunk["usage"].as_object();
    if (chunk["choices"].as_array().empty()) continue;
    json::object choice = chunk["choices"].as_array()[0].as_object();
    if (choice["finish_reason"].is_string()) finish = choice["finish_reason"].as_string();
    json::object delta = choice["delta"].as_object();
    if (!delta.contains("content") || delta["content"].as_string().empty()) continue;
    // One character a token; two where a newline waited to see whether "%" (the end of a
    // fortune) followed it.
    EXPECT_LE(delta["content"].as_string().size(), 2u) << event;
    joined += delta["content"].as_string();
    ++deltas;
  }
  EXPECT_TRUE(done) << r.body;
  EXPECT_EQ(joined, text);  // the same seed, streamed or not
  EXPECT_GE(deltas, text.size() / 2) << r.body;
  EXPECT_EQ(finish, FinishOf(plain));
  EXPECT_EQ(usage["completion_tokens"].as_int64(), static_cast<int64_t>(text.size())) << r.body;

  // The meter has the tokens of both calls.
  auto u = server_->Call("GET", "/v1/usage?function=tiny-chat");
  ASSERT_EQ(u.status, 200) << u.body;
  json::array rows = ParseObject(u.body)["functions"].as_array();
  ASSERT_EQ(rows.size(), 1u) << u.body;
  EXPECT_GE(rows[0].as_object()["completion_tokens"].as_int64(),
            2 * static_cast<int64_t>(text.size()))
      << u.body;
}

TEST_F(TinyModelsTest, EmbeddingsScoreSimilarTextsHigher) {
  const json::array inputs{"The cat sat on the mat.", "The cat sat on a mat.",
                           "Stock markets fell on Monday."};
  auto r = Post("/v1/embeddings",
                {{"model", "tiny-embed"}, {"input", inputs}, {"encoding_format", "float"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json::array data = ParseObject(r.body)["data"].as_array();
  ASSERT_EQ(data.size(), 3u) << r.body;
  std::vector<std::vector<double>> v;
  for (auto& d : data) v.push_back(Floats(d.as_object()["embedding"]));
  for (const auto& e : v) {
    ASSERT_EQ(e.size(), 64u);
    EXPECT_NEAR(Dot(e, e), 1.0, 1e-4);
  }
  std::printf(
      "tiny-embed: cos(cat, cat') = %.3f, cos(cat, stocks) = %.3f, cos(cat', stocks) = "
      "%.3f\n",
      Dot(v[0], v[1]), Dot(v[0], v[2]), Dot(v[1], v[2]));
  EXPECT_GT(Dot(v[0], v[1]), Dot(v[0], v[2]));
  EXPECT_GT(Dot(v[0], v[1]), Dot(v[1], v[2]));

  // dimensions: the first ones, normalised again.
  auto small = Post("/v1/embeddings", {{"model", "tiny-embed"},
                                       {"input", inputs[0]},
                                       {"dimensions", 16},
                                       {"encoding_format", "float"}});
  ASSERT_EQ(small.status, 200) << small.body;
  std::vector<double> s =
      Floats(ParseObject(small.body)["data"].as_array()[0].as_object()["embedding"]);
  ASSERT_EQ(s.size(), 16u);
  EXPECT_NEAR(Dot(s, s), 1.0, 1e-4);
  const std::vector<double> head(v[0].begin(), v[0].begin() + 16);
  const double head_norm = std::sqrt(Dot(head, head));
  for (size_t i = 0; i < 16; ++i) EXPECT_NEAR(s[i], head[i] / head_norm, 1e-4) << i;

  // More than the model has: OpenAI's 400, from the thaw.yaml `openai` block.
  auto big = Post("/v1/embeddings", {{"model", "tiny-embed"}, {"input", "x"}, {"dimensions", 65}});
  EXPECT_EQ(big.status, 400) << big.body;
  json::object error = ParseObject(big.body)["error"].as_object();
  EXPECT_EQ(error["param"], "dimensions") << big.body;
  EXPECT_EQ(error["type"], "invalid_request_error") << big.body;
}

TEST_F(TinyModelsTest, OfficialOpenAiSdkStreamsTinyChat) {
  const std::string npm = std::string(THAW_BUILD_DIR) + "/npm";
  ProcessResult install = RunProcess(
      {"/bin/bash", std::string(THAW_SOURCE_DIR) + "/tests/clients/install.sh", npm}, nullptr);
  ASSERT_EQ(install.exit_code, 0) << "could not install openai into " << npm << ":\n"
                                  << install.err;
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/tmp", "THAW_NPM_DIR=" + npm,
                                        "NODE_NO_WARNINGS=1", "OPENAI_API_KEY=" + server_->key()};
  ProcessResult r = RunProcess(
      {"/usr/bin/node", std::string(THAW_SOURCE_DIR) + "/tests/clients/openai_tiny_client.mjs",
       server_->url() + "/v1"},
      &env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json::object out = ParseObject(r.out);

  // The SDK saw the same text the same seed gives without streaming, a chunk per token.
  json::object plain = Chat({{"seed", 42}, {"max_tokens", 60}, {"temperature", 0.8}});
  json::object stream = out["chat_stream"].as_object();
  EXPECT_EQ(stream["content"].as_string(), ContentOf(plain)) << out;
  EXPECT_GE(stream["deltas"].as_array().size(), ContentOf(plain).size() / 2) << out;
  EXPECT_EQ(stream["finish"].as_string(), FinishOf(plain)) << out;
  EXPECT_EQ(stream["usage"].as_object()["completion_tokens"].as_int64(),
            static_cast<int64_t>(ContentOf(plain).size()))
      << out;

  // Base64 embeddings, decoded by the SDK: the similar pair scores higher.
  json::array e = out["embeddings"].as_array();
  ASSERT_EQ(e.size(), 3u) << out;
  std::vector<double> cat = Floats(e[0]), cat2 = Floats(e[1]), stocks = Floats(e[2]);
  ASSERT_EQ(cat.size(), 64u);
  EXPECT_GT(Dot(cat, cat2), Dot(cat, stocks)) << out;
}

}  // namespace
}  // namespace thaw::testing

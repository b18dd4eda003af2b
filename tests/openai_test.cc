// The OpenAI-compatible routes against the real server: a python function that fakes a model
// deterministically (it echoes the prompt word by word), raw HTTP for the wire shapes (SSE,
// errors, tenant scoping, token metering), `curl -N` for event-by-event delivery, and the
// official `openai` npm SDK as a real client (tests/clients/openai_client.mjs).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "common/base64.h"
#include "common/files.h"
#include "server_fixture.h"

extern char** environ;

namespace thaw::testing {
namespace {

namespace json = boost::json;

const std::string kNpmDir = std::string(THAW_BUILD_DIR) + "/npm";
const std::string kClient = std::string(THAW_SOURCE_DIR) + "/tests/clients/openai_client.mjs";

// A fake model: chat and completions echo the prompt word by word (streaming each word as a
// chunk when asked), embeddings are [len, sum of codes mod 97, 0.5]; usage counts words.
constexpr char kFakeModel[] = R"PY(import time

def words_of(event):
    if event["thaw"]["endpoint"] == "chat.completions":
        return ("echo " + event["messages"][-1]["content"]).split(), event["messages"][-1]["content"]
    return ("echo " + event["prompt"]).split(), event["prompt"]

def handler(event, context):
    model = event["model"]
    rid = context.aws_request_id
    if event["thaw"]["endpoint"] == "embeddings":
        inputs = event["input"] if isinstance(event["input"], list) else [event["input"]]
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(t)), float(sum(map(ord, t)) % 97), 0.5]}
                for i, t in enumerate(inputs)]
        n = sum(len(t.split()) for t in inputs)
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": n, "total_tokens": n}}
    words, prompt = words_of(event)
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words),
             "total_tokens": len(prompt.split()) + len(words)}
    text = " ".join(words)
    chat = event["thaw"]["endpoint"] == "chat.completions"
    if event.get("stream"):
        return stream(rid, model, words, usage, chat)
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": "stop"}
        return {"id": "chatcmpl-" + rid, "object": "chat.completion", "created": 1,
                "model": model, "choices": [choice], "usage": usage,
                "tenant": event["thaw"]["tenant"]}
    return {"id": "cmpl-" + rid, "object": "text_completion", "created": 1, "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": usage}

def stream(rid, model, words, usage, chat):
    kind = "chat.completion.chunk" if chat else "text_completion"
    for i, w in enumerate(words):
        piece = w if i == 0 else " " + w
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat \
            else {"index": 0, "text": piece, "finish_reason": None}
        yield {"id": rid, "object": kind, "created": 1, "model": model, "choices": [choice]}
        if w == "boom":
            raise RuntimeError("the model fell over")
    yield {"id": rid, "object": kind, "created": 1, "model": model, "choices": [],
           "usage": usage}
)PY";

json::object Parse(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return !ec && v.is_object() ? v.as_object() : json::object{};
}

class OpenAiTest : public ServerTest {
 protected:
  void SetUp() override {
    server_ = ThawServer::Start();
    DeployModel("chat", "{models: [tiny-chat], kind: chat}");
    DeployModel("embed", "{models: [tiny-embed], kind: embeddings}");
    DeployModel("complete", "{models: [tiny-complete], kind: completions}");
  }
  void DeployModel(const std::string& name, const std::string& openai) {
    dirs_.push_back(PythonBundle(name.substr(name.find('.') + 1), kFakeModel,
                                 "timeout_s: 30\nopenai: " + openai + "\n"));
    auto r = server_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }
  HttpResult Post(const std::string& path, const std::string& body,
                  const std::string& key = "") const {
    return server_->Call("POST", path, body,
                         {{"Authorization", "Bearer " + (key.empty() ? server_->key() : key)},
                          {"Content-Type", "application/json"}},
                         false);
  }
  // OpenAI's error body: {"error": {"message", "type", "param", "code"}}.
  static json::object ErrorOf(const HttpResult& r) {
    json::object body = Parse(r.body);
    EXPECT_TRUE(body.contains("error")) << r.body;
    if (!body.contains("error") || !body["error"].is_object()) return {};
    json::object e = body["error"].as_object();
    for (const char* field : {"message", "type", "param", "code"}) {
      EXPECT_TRUE(e.contains(field)) << field << " missing in " << r.body;
    }
    return e;
  }
};

TEST_F(OpenAiTest, ChatCompletionReturnsWhatTheFunctionReturns) {
  auto r = Post("/v1/chat/completions",
                R"({"model":"tiny-chat","messages":[{"role":"user","content":"hi you"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "application/json");
  json::object body = Parse(r.body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"].as_array()[0].as_object()["message"].as_object()["content"],
            "echo hi you");
  EXPECT_EQ(body["tenant"], "default");  // the event carries the caller's tenant
  EXPECT_EQ(body["usage"].as_object()["completion_tokens"], 3);

  auto c = Post("/v1/completions", R"({"model":"tiny-complete","prompt":"a b"})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(Parse(c.body)["choices"].as_array()[0].as_object()["text"], "echo a b");
}

TEST_F(OpenAiTest, StreamIsServerSentEventsEndingWithDone) {
  auto r = Post("/v1/chat/completions", R"({"model":"tiny-chat","stream":true,)"
                                        R"("messages":[{"role":"user","content":"one two"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  std::vector<std::string> events;
  for (size_t pos = 0; pos < r.body.size();) {
    size_t end = r.body.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << r.body;
    events.push_back(r.body.substr(pos, end - pos));
    pos = end + 2;
  }
  // echo, one, two, the usage chunk, [DONE].
  ASSERT_EQ(events.size(), 5u) << r.body;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    ASSERT_TRUE(events[i].starts_with("data: {")) << events[i];
    EXPECT_EQ(Parse(events[i].substr(6))["object"], "chat.completion.chunk");
  }
  EXPECT_EQ(Parse(events[1].substr(6))["choices"].as_array()[0].as_object()["delta"],
            (json::object{{"content", " one"}}));
  EXPECT_EQ(events.back(), "data: [DONE]");

  // A completions model streams the same way.
  auto c = Post("/v1/completions", R"({"model":"tiny-complete","prompt":"x","stream":true})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_TRUE(c.body.starts_with("data: {")) << c.body;
  EXPECT_TRUE(c.body.ends_with("data: [DONE]\n\n")) << c.body;
}

TEST_F(OpenAiTest, MidStreamErrorIsAnErrorEventWithoutDone) {
  auto r = Post("/v1/chat/completions", R"({"model":"tiny-chat","stream":true,)"
                                        R"("messages":[{"role":"user","content":"boom after"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.body.starts_with("data: {")) << r.body;
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos) << r.body;
  const size_t last = r.body.rfind("data: ");
  json::object error = Parse(r.body.substr(last + 6))["error"].as_object();
  EXPECT_EQ(error["message"], "the model fell over") << r.body;
  EXPECT_EQ(error["type"], "server_error") << r.body;
  EXPECT_EQ(r.body.find("after"), std::string::npos) << r.body;
}

TEST_F(OpenAiTest, EmbeddingsAsFloatsOrBase64) {
  auto f =
      Post("/v1/embeddings", R"({"model":"tiny-embed","input":"abc","encoding_format":"float"})");
  ASSERT_EQ(f.status, 200) << f.body;
  json::array floats = Parse(f.body)["data"].as_array()[0].as_object()["embedding"].as_array();
  ASSERT_EQ(floats.size(), 3u) << f.body;
  EXPECT_EQ(floats[0].to_number<double>(), 3.0);

  auto b =
      Post("/v1/embeddings", R"({"model":"tiny-embed","input":"abc","encoding_format":"base64"})");
  ASSERT_EQ(b.status, 200) << b.body;
  auto bytes = Base64Decode(
      std::string(Parse(b.body)["data"].as_array()[0].as_object()["embedding"].as_string()));
  ASSERT_TRUE(bytes.has_value()) << b.body;
  ASSERT_EQ(bytes->size(), 12u);
  float first;
  std::memcpy(&first, bytes->data(), 4);  // little-endian float32, as x86 holds it
  EXPECT_EQ(first, 3.0f);
}

TEST_F(OpenAiTest, ErrorsInOpenAisShape) {
  auto unknown = Post("/v1/chat/completions",
                      R"({"model":"nope","messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_EQ(ErrorOf(unknown)["code"], "model_not_found");
  EXPECT_EQ(ErrorOf(unknown)["param"], "model");

  auto bad = Post("/v1/chat/completions", "{not json");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(ErrorOf(bad)["type"], "invalid_request_error");

  auto no_messages = Post("/v1/chat/completions", R"({"model":"tiny-chat"})");
  EXPECT_EQ(no_messages.status, 400) << no_messages.body;
  EXPECT_EQ(ErrorOf(no_messages)["param"], "messages");

  auto wrong_kind = Post("/v1/chat/completions",
                         R"({"model":"tiny-embed","messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(wrong_kind.status, 400) << wrong_kind.body;
  EXPECT_EQ(ErrorOf(wrong_kind)["code"], "model_not_supported");

  auto no_key = server_->Call("GET", "/v1/models", "", {}, false);
  EXPECT_EQ(no_key.status, 401) << no_key.body;
  EXPECT_EQ(ErrorOf(no_key)["code"], "invalid_api_key");

  auto missing = server_->Call("GET", "/v1/models/nope");
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_EQ(ErrorOf(missing)["code"], "model_not_found");

  auto method = server_->Call("GET", "/v1/chat/completions");
  EXPECT_EQ(method.status, 405) << method.body;
  ErrorOf(method);
}

TEST_F(OpenAiTest, TenantsSeeOnlyTheirOwnModels) {
  server_->CreateTenant("acme");
  server_->CreateTenant("globex");
  const std::string acme = server_->CreateKey("acme").second;
  const std::string globex = server_->CreateKey("globex").second;
  DeployModel("acme.secret", "{models: [acme-chat], kind: chat}");

  auto mine = server_->Call("GET", "/v1/models", "", {{"Authorization", "Bearer " + acme}}, false);
  ASSERT_EQ(mine.status, 200) << mine.body;
  json::array data = Parse(mine.body)["data"].as_array();
  ASSERT_EQ(data.size(), 1u) << mine.body;
  EXPECT_EQ(data[0].as_object()["id"], "acme-chat");
  EXPECT_EQ(data[0].as_object()["owned_by"], "acme");

  const std::string chat = R"({"model":"acme-chat","messages":[{"role":"user","content":"x"}]})";
  auto ok = Post("/v1/chat/completions", chat, acme);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Parse(ok.body)["tenant"], "acme");
  auto theirs = Post("/v1/chat/completions", chat, globex);
  EXPECT_EQ(theirs.status, 404) << theirs.body;
  EXPECT_EQ(ErrorOf(theirs)["code"], "model_not_found");
  auto none =
      server_->Call("GET", "/v1/models", "", {{"Authorization", "Bearer " + globex}}, false);
  EXPECT_EQ(Parse(none.body)["data"].as_array().size(), 0u) << none.body;
}

TEST_F(OpenAiTest, OverBudgetIsInsufficientQuota) {
  server_->CreateTenant("thrifty", R"("monthly_budget_micros":1)");
  const std::string key = server_->CreateKey("thrifty").second;
  DeployModel("thrifty.chat", "{models: [cheap], kind: chat}");
  const std::string chat = R"({"model":"cheap","messages":[{"role":"user","content":"x"}]})";
  HttpResult r;
  for (int i = 0; i < 50; ++i) {
    r = Post("/v1/chat/completions", chat, key);
    if (r.status != 200) break;
  }
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_FALSE(r.Header("retry-after").empty());
  EXPECT_EQ(ErrorOf(r)["code"], "insufficient_quota");
  EXPECT_EQ(ErrorOf(r)["type"], "insufficient_quota");
}

TEST_F(OpenAiTest, TokensAreMeteredAndShownInUsage) {
  // 2 prompt words; "echo a b" is 3 completion words. Streamed: the usage chunk counts.
  const std::string plain = R"({"model":"tiny-chat","messages":[{"role":"user","content":"a b"}]})";
  ASSERT_EQ(Post("/v1/chat/completions", plain).status, 200);
  const std::string streamed =
      R"({"model":"tiny-chat","stream":true,"messages":[{"role":"user","content":"a b"}]})";
  ASSERT_EQ(Post("/v1/chat/completions", streamed).status, 200);
  HttpResult usage;
  try {
    usage = server_->Call("GET", "/v1/usage?function=chat");
  } catch (const std::exception& e) {
    FAIL() << e.what() << "\n" << server_->Output();
  }
  ASSERT_EQ(usage.status, 200) << usage.body;
  json::array rows = Parse(usage.body)["functions"].as_array();
  ASSERT_EQ(rows.size(), 1u) << usage.body;
  EXPECT_EQ(rows[0].as_object()["prompt_tokens"], 4) << usage.body;
  EXPECT_EQ(rows[0].as_object()["completion_tokens"], 6) << usage.body;
  EXPECT_EQ(rows[0].as_object()["invocations"], 2) << usage.body;
}

TEST_F(OpenAiTest, OfficialOpenAiSdk) {
  ProcessResult install = RunProcess(
      {"/bin/bash", std::string(THAW_SOURCE_DIR) + "/tests/clients/install.sh", kNpmDir}, nullptr);
  ASSERT_EQ(install.exit_code, 0) << "could not install openai into " << kNpmDir << ":\n"
                                  << install.err;
  server_->CreateTenant("slow", R"("rate_per_second":1)");
  const std::string slow_key = server_->CreateKey("slow").second;
  DeployModel("slow.chat", "{models: [slow-chat], kind: chat}");
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin",
                                        "HOME=/tmp",
                                        "THAW_NPM_DIR=" + kNpmDir,
                                        "NODE_NO_WARNINGS=1",
                                        "OPENAI_API_KEY=" + server_->key(),
                                        "OPENAI_SLOW_KEY=" + slow_key};
  ProcessResult r = RunProcess({"/usr/bin/node", kClient, server_->url() + "/v1"}, &env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json::object out = Parse(r.out);

  json::array ids = out["models"].as_object()["ids"].as_array();
  EXPECT_EQ(ids.size(), 4u) << out;  // the admin key sees every tenant's

  json::object chat = out["chat"].as_object();
  EXPECT_EQ(chat["content"], "echo hello there thaw") << out;
  EXPECT_EQ(chat["usage"].as_object()["prompt_tokens"], 3) << out;

  json::object stream = out["chat_stream"].as_object();
  EXPECT_EQ(stream["content"], "echo one two three") << out;
  EXPECT_EQ(stream["deltas"].as_array().size(), 4u) << out;
  EXPECT_EQ(stream["chunks"], 5) << out;  // four words and the usage chunk

  // The SDK asks for base64 by default and decodes it.
  json::array e = out["embeddings"].as_object()["embedding"].as_array();
  ASSERT_EQ(e.size(), 2u) << out;
  EXPECT_EQ(e[0].as_array()[0].to_number<double>(), 3.0) << out;
  EXPECT_EQ(e[1].as_array()[0].to_number<double>(), 5.0) << out;
  EXPECT_EQ(out["embeddings_float"].as_object()["embedding"].as_array().size(), 3u) << out;

  EXPECT_EQ(out["unknown_model"].as_object()["error"], "NotFoundError") << out;
  EXPECT_EQ(out["unknown_model"].as_object()["code"], "model_not_found") << out;
  EXPECT_EQ(out["bad_key"].as_object()["error"], "AuthenticationError") << out;
  EXPECT_EQ(out["rate_limited"].as_object()["error"], "RateLimitError") << out;
  EXPECT_EQ(out["rate_limited"].as_object()["code"], "rate_limit_exceeded") << out;
}

// A chat model that streams one chunk, then waits for the test's word on a loopback socket
// (port in the request's `user` field) before it even makes the second: the gate.
constexpr char kGatedModel[] = R"PY(import socket

def handler(event, context):
    port = int(event["user"])
    def chunk(text):
        return {"id": "g", "object": "chat.completion.chunk", "created": 1, "model": "gated",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    def stream():
        yield chunk("first")
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.recv(1)  # blocks until the test has seen "first" arrive
        yield chunk("second")
    return stream()
)PY";

// Reads from `fd` into `out` until it holds `needle` or the stream ends; false on timeout.
bool ReadUntil(int fd, std::string& out, const std::string& needle, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (needle.empty() || out.find(needle) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return needle.empty();
    out.append(buf, static_cast<size_t>(n));
  }
  return true;
}

TEST_F(OpenAiTest, SseEventReachesCurlBeforeTheNextIsProduced) {
  dirs_.push_back(
      PythonBundle("gated", kGatedModel, "timeout_s: 60\nopenai: {models: [gated], kind: chat}\n"));
  auto d = server_->Deploy("gated", dirs_.back());
  ASSERT_EQ(d.status, 201) << d.body;
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string body = R"({"model":"gated","stream":true,"user":")" +
                           std::to_string(ntohs(addr.sin_port)) +
                           R"(","messages":[{"role":"user","content":"x"}]})";

  // curl -N, its stdout a pipe this test reads as the bytes come.
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  const std::string auth = "Authorization: Bearer " + server_->key();
  const std::string url = server_->url() + "/v1/chat/completions";
  std::vector<std::string> argv = {"/usr/bin/curl",
                                   "-N",
                                   "-sS",
                                   "-H",
                                   auth,
                                   "-H",
                                   "Content-Type: application/json",
                                   "-d",
                                   body,
                                   url};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t curl = -1;
  ASSERT_EQ(posix_spawn(&curl, args[0], &actions, nullptr, args.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  // The first event reaches curl while the function is still held before its second chunk.
  std::string seen;
  const bool first = ReadUntil(out[0], seen, R"("first")", 120'000);
  EXPECT_TRUE(first) << seen;
  EXPECT_EQ(seen.find("second"), std::string::npos) << seen;
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 120'000), 1) << "the function never asked for the go-ahead";
  const int gate = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(gate, 0);
  ASSERT_EQ(::write(gate, "g", 1), 1);
  EXPECT_TRUE(ReadUntil(out[0], seen, "", 120'000)) << seen;  // to the end of the stream
  ::close(gate);
  ::close(listener);
  ::close(out[0]);
  int status = 0;
  ::waitpid(curl, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(seen.find(R"("second")"), std::string::npos) << seen;
  EXPECT_TRUE(seen.ends_with("data: [DONE]\n\n")) << seen;
}

}  // namespace
}  // namespace thaw::testing

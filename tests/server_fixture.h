// ThawServer: starts the real `thaw serve` binary on 127.0.0.1:0 with a fresh data dir, for
// integration tests, and helpers to build function bundles in temp dirs. Not thread-safe,
// except Call/Invoke, which tests use from several threads at once.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/http_client.h"

namespace thaw::testing {

using cli::Headers;
using cli::HttpResult;

// How ThawServer starts the binary: `prefix` runs first and execs it (nsenter into a network
// namespace, say); `listen` is its --listen. `die_with_test`: the server gets SIGKILL when the
// thread that started it exits (PR_SET_PDEATHSIG), so a crashed test leaves no server behind;
// only for servers started on the test's main thread.
struct ServerLaunch {
  std::vector<std::string> prefix;
  std::string listen = "127.0.0.1:0";
  bool die_with_test = false;
};

class ThawServer {
 public:
  using Launch = ServerLaunch;
  // `flags` are extra `thaw serve` flags; `data_dir` empty means a new temp dir.
  static std::unique_ptr<ThawServer> Start(std::vector<std::string> flags = {},
                                           std::string data_dir = "", const Launch& launch = {});
  ~ThawServer();

  HttpResult Call(const std::string& method, const std::string& target,
                  const std::string& body = "", Headers headers = {}, bool auth = true) const;
  // Packs `dir` and PUTs it as function `name`.
  HttpResult Deploy(const std::string& name, const std::string& dir) const;
  HttpResult Invoke(const std::string& name, const std::string& payload = "{}",
                    const std::string& qualifier = "") const;
  // Waits until `pred(GET /v1/functions/name JSON)` holds, up to `timeout_ms`. Returns the
  // last body when it never held (the test then fails on its own assertion).
  bool WaitForFunction(const std::string& name, const std::string& needle, int timeout_ms) const;

  // Creates tenant `name` (limits: a JSON object's members, e.g. R"("concurrency":1)").
  void CreateTenant(const std::string& name, const std::string& limits = "") const;
  // Creates an API key with the admin key: {id, secret}.
  std::pair<std::string, std::string> CreateKey(const std::string& tenant,
                                                const std::string& role = "tenant") const;
  // SIGTERM and wait: returns the exit status.
  int Stop();
  void Kill9();
  std::string Output() const;  // what the server printed so far
  // Blocks until the server's output contains `needle` (or timeout); true if it did.
  bool WaitForOutput(const std::string& needle, int timeout_ms) const;

  const std::string& url() const { return url_; }
  const std::string& key() const { return key_; }
  const std::string& data_dir() const { return data_dir_; }
  pid_t pid() const { return pid_; }

 private:
  ThawServer() = default;
  void ReadOutput(int fd);

  std::string url_, key_, data_dir_;
  bool own_data_dir_ = false;
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string output_;
  bool output_closed_ = false;
};

// Creates a temp folder holding `files` (path -> content); paths in `executable` get 0755.
std::string MakeBundle(const std::map<std::string, std::string>& files,
                       const std::set<std::string>& executable = {});
// A python3 function with `code` as app.py and extra thaw.yaml lines.
std::string PythonBundle(const std::string& name, const std::string& code,
                         const std::string& extra_yaml = "");
void RemoveDir(const std::string& dir);
// Parses JSON, failing the test on malformed input.
std::string JsonField(const std::string& json, const std::string& key);
bool ProcessAlive(pid_t pid);
// Sends raw bytes to the server at `url` and returns everything it answers until it closes.
std::string RawExchange(const std::string& url, const std::string& bytes);
// Waits up to `timeout_ms` for `pred` to hold, checking every few ms.
bool Eventually(const std::function<bool()>& pred, int timeout_ms);

struct ProcessResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs argv (argv[0] an absolute path) with exactly `*env` (null: this process's environment),
// stdin from /dev/null, stdout and stderr captured.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::vector<std::string>* env);

// A test with one server (started by the subclass's SetUp) and python functions deployed
// from temp folders that are removed afterwards.
class ServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& d : dirs_) RemoveDir(d);
  }
  void DeployPython(const std::string& name, const std::string& code,
                    const std::string& yaml = "") {
    dirs_.push_back(PythonBundle(name, code, yaml));
    auto r = server_->Deploy(name, dirs_.back());
    ASSERT_EQ(r.status, 201) << r.body;
  }
  // A function's newest template as GET /v1/functions/{name} lists it ({} when none).
  boost::json::object TemplateOf(const std::string& name) const {
    auto f = boost::json::parse(server_->Call("GET", "/v1/functions/" + name).body).as_object();
    auto* list = f.if_contains("templates");
    if (list == nullptr || list->as_array().empty()) return {};
    return list->as_array().back().as_object();
  }
  bool WaitForTemplate(const std::string& name, const std::string& state) const {
    return Eventually(
        [&] {
          auto t = TemplateOf(name);
          return t.contains("state") && t.at("state").as_string() == state;
        },
        template_wait_ms_);
  }
  std::string Logs(const std::string& name) const {
    return server_->Call("GET", "/v1/functions/" + name + "/logs?limit=1000").body;
  }
  std::unique_ptr<ThawServer> server_;
  std::vector<std::string> dirs_;
  int template_wait_ms_ = 60'000;  // a template's init, on a machine under load
};

}  // namespace thaw::testing

#include "server_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "common/files.h"
#include "registry/archive.h"

namespace thaw::testing {
namespace {

std::string MakeTempDir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

}  // namespace

std::unique_ptr<ThawServer> ThawServer::Start(std::vector<std::string> flags, std::string data_dir,
                                              const Launch& launch) {
  std::unique_ptr<ThawServer> s(new ThawServer());
  if (data_dir.empty()) {
    data_dir = MakeTempDir("thaw-test-");
    s->own_data_dir_ = true;
  }
  s->data_dir_ = data_dir;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> args = launch.prefix;
  for (const char* a : {THAW_BINARY, "serve", "--listen"}) args.emplace_back(a);
  args.insert(args.end(), {launch.listen, "--data-dir", data_dir});
  args.insert(args.end(), flags.begin(), flags.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    if (launch.die_with_test) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  s->pid_ = pid;
  s->reader_ = std::thread([raw = s.get(), fd = out[0]] { raw->ReadOutput(fd); });
  const std::string marker = "listening on http://";
  if (!s->WaitForOutput(marker, 20000)) {
    throw std::runtime_error("thaw serve did not start:\n" + s->Output());
  }
  std::string o = s->Output();
  auto pos = o.find(marker) + marker.size() - 7;
  s->url_ = o.substr(pos, o.find('\n', pos) - pos);
  auto key = ReadFile(data_dir + "/admin.key");
  if (!key.ok()) throw std::runtime_error("no admin.key");
  s->key_ = key->substr(0, key->find('\n'));
  return s;
}

ThawServer::~ThawServer() {
  if (pid_ > 0) Stop();
  if (reader_.joinable()) reader_.join();
  if (own_data_dir_) RemoveDir(data_dir_);
}

void ThawServer::ReadOutput(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard<std::mutex> lock(mu_);
    output_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  output_closed_ = true;
  cv_.notify_all();
}

std::string ThawServer::Output() const {
  std::lock_guard<std::mutex> lock(mu_);
  return output_;
}

bool ThawServer::WaitForOutput(const std::string& needle, int timeout_ms) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return output_.find(needle) != std::string::npos || output_closed_;
  }) && output_.find(needle) != std::string::npos;
}

int ThawServer::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return status;
}

void ThawServer::Kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
}

HttpResult ThawServer::Call(const std::string& method, const std::string& target,
                            const std::string& body, Headers headers, bool auth) const {
  if (auth) headers.emplace_back("Authorization", "Bearer " + key_);
  auto r = cli::HttpCall(url_, method, target, body, headers, 60000);
  if (!r.ok()) throw std::runtime_error(method + " " + target + ": " + r.status().message());
  return *r;
}

void ThawServer::CreateTenant(const std::string& name, const std::string& limits) const {
  const std::string body =
      R"({"name":")" + name + "\"" + (limits.empty() ? "" : "," + limits) + "}";
  auto r = Call("POST", "/v1/tenants", body);
  if (r.status != 201) throw std::runtime_error("create tenant " + name + ": " + r.body);
}

std::pair<std::string, std::string> ThawServer::CreateKey(const std::string& tenant,
                                                          const std::string& role) const {
  auto r = Call("POST", "/v1/keys", R"({"tenant":")" + tenant + R"(","role":")" + role + "\"}");
  if (r.status != 201) throw std::runtime_error("create key for " + tenant + ": " + r.body);
  return {JsonField(r.body, "id"), JsonField(r.body, "secret")};
}

HttpResult ThawServer::Deploy(const std::string& name, const std::string& dir) const {
  auto archive = registry::PackDirectory(dir);
  if (!archive.ok()) throw std::runtime_error(archive.status().message());
  return Call("PUT", "/v1/functions/" + name, *archive);
}

HttpResult ThawServer::Invoke(const std::string& name, const std::string& payload,
                              const std::string& qualifier) const {
  std::string target = "/v1/functions/" + name + "/invoke";
  if (!qualifier.empty()) target += "?qualifier=" + qualifier;
  return Call("POST", target, payload);
}

bool ThawServer::WaitForFunction(const std::string& name, const std::string& needle,
                                 int timeout_ms) const {
  return Eventually(
      [&] { return Call("GET", "/v1/functions/" + name).body.find(needle) != std::string::npos; },
      timeout_ms);
}

// Runs argv with `env`, stdout and stderr captured in temp files.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>* env) {
  char tmpl[] = "/tmp/thaw-process-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return {};
  const std::string dir = tmpl, out_path = dir + "/out", err_path = dir + "/err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT, 0600);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (env != nullptr) {
    for (const auto& e : *env) envp.push_back(const_cast<char*>(e.c_str()));
  } else {
    for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  pid_t pid;
  ProcessResult r;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data()) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  r.out = ReadFile(out_path).ok() ? *ReadFile(out_path) : "";
  r.err = ReadFile(err_path).ok() ? *ReadFile(err_path) : "";
  RemoveDir(dir);
  return r;
}

bool Eventually(const std::function<bool()>& pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

std::string MakeBundle(const std::map<std::string, std::string>& files,
                       const std::set<std::string>& executable) {
  std::string dir = MakeTempDir("thaw-bundle-");
  for (const auto& [path, content] : files) {
    std::filesystem::path p = std::filesystem::path(dir) / path;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), executable.count(path) ? 0755 : 0644);
  }
  return dir;
}

std::string PythonBundle(const std::string& name, const std::string& code,
                         const std::string& extra_yaml) {
  return MakeBundle(
      {{"thaw.yaml", "name: " + name + "\nruntime: python3\nhandler: app.handler\n" + extra_yaml},
       {"app.py", code}});
}

void RemoveDir(const std::string& dir) {
  std::error_code ec;
  // Deployed bundles are read-only: give the owner write access back before removing.
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_symlink(ec)) ::chmod(it->path().c_str(), 0755);
  }
  std::filesystem::remove_all(dir, ec);
}

std::string JsonField(const std::string& json, const std::string& key) {
  boost::system::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec || !v.is_object()) return "<not json: " + json + ">";
  auto* f = v.as_object().if_contains(key);
  if (f == nullptr) return "";
  if (f->is_string()) return std::string(f->as_string());
  return boost::json::serialize(*f);
}

std::string RawExchange(const std::string& url, const std::string& bytes) {
  auto colon = url.rfind(':');
  int port = std::stoi(url.substr(colon + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "<connect failed>";
  }
  (void)!::write(fd, bytes.data(), bytes.size());
  ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

bool ProcessAlive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  // A zombie is dead for our purposes.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close == std::string::npos || line.size() < close + 3 || line[close + 2] != 'Z';
}

}  // namespace thaw::testing

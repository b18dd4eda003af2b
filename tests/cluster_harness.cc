#include "cluster_harness.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>
#include <sstream>
#include <stdexcept>

#include "common/files.h"

namespace thaw::testing {
namespace {

constexpr const char* kNsenter = "/usr/bin/nsenter";
constexpr const char* kNetnsPrefix = "thaw-h";  // thaw-hPID-NAME
constexpr const char* kBridgePrefix = "thbr";   // thbrPID (interface names: 15 bytes at most)

bool PidAlive(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// The pid in a name made by an earlier run ("thaw-h123-a" or "thbr123"), or -1.
pid_t PidIn(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return -1;
  size_t end = prefix.size();
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == prefix.size() || end - prefix.size() > 9) return -1;
  return static_cast<pid_t>(std::stol(name.substr(prefix.size(), end - prefix.size())));
}

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

Status ClusterHarness::Ip(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {ip_};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv, nullptr);
  if (r.exit_code == 0) return Status::Ok();
  std::string line;
  for (const auto& a : argv) line += a + " ";
  return Internal("failed to run " + line + ": " + r.err + r.out);
}

Status ClusterHarness::MakeNetwork() {
  // What a killed run left behind: its namespaces (and their veths) and its bridge.
  for (const auto& name : Words(RunProcess({ip_, "netns", "list"}, nullptr).out)) {
    const pid_t pid = PidIn(name, kNetnsPrefix);
    if (pid > 0 && !PidAlive(pid)) (void)Ip({"netns", "del", name});
  }
  for (const auto& word :
       Words(RunProcess({ip_, "-o", "link", "show", "type", "bridge"}, nullptr).out)) {
    const std::string name = word.substr(0, word.find_first_of(":@"));
    const pid_t pid = PidIn(name, kBridgePrefix);
    if (pid > 0 && !PidAlive(pid)) (void)Ip({"link", "del", name});
  }
  // A /24 in 10.213.0.0/16 that no interface here uses yet.
  const std::string addresses = RunProcess({ip_, "-o", "-4", "addr", "show"}, nullptr).out;
  for (int i = 0; i < 254 && subnet_.empty(); ++i) {
    const std::string candidate = "10.213." + std::to_string((::getpid() + i) % 254 + 1) + ".";
    if (addresses.find(" " + candidate) == std::string::npos) subnet_ = candidate;
  }
  if (subnet_.empty()) return Internal("no free /24 in 10.213.0.0/16");
  const std::string pid = std::to_string(::getpid());
  tag_ = kNetnsPrefix + pid;
  bridge_ = kBridgePrefix + pid;
  THAW_RETURN_IF_ERROR(Ip({"link", "add", bridge_, "type", "bridge"}));
  bridge_made_ = true;
  THAW_RETURN_IF_ERROR(Ip({"addr", "add", subnet_ + "1/24", "dev", bridge_}));
  THAW_RETURN_IF_ERROR(Ip({"link", "set", bridge_, "up"}));
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    n.netns = tag_ + "-" + n.name;
    n.address = subnet_ + std::to_string(i + 2);
    const std::string host_end = "thv" + pid + n.name, ns_end = "thp" + pid + n.name;
    THAW_RETURN_IF_ERROR(Ip({"netns", "add", n.netns}));
    netns_made_.push_back(n.netns);
    THAW_RETURN_IF_ERROR(Ip({"link", "add", host_end, "type", "veth", "peer", "name", ns_end}));
    THAW_RETURN_IF_ERROR(Ip({"link", "set", ns_end, "netns", n.netns}));
    THAW_RETURN_IF_ERROR(Ip({"link", "set", host_end, "master", bridge_}));
    THAW_RETURN_IF_ERROR(Ip({"link", "set", host_end, "up"}));
    THAW_RETURN_IF_ERROR(Ip({"-n", n.netns, "addr", "add", n.address + "/24", "dev", ns_end}));
    THAW_RETURN_IF_ERROR(Ip({"-n", n.netns, "link", "set", ns_end, "up"}));
    // Instances' Runtime API listeners are on the namespace's loopback.
    THAW_RETURN_IF_ERROR(Ip({"-n", n.netns, "link", "set", "lo", "up"}));
  }
  return Status::Ok();
}

void ClusterHarness::StartNode(Node& n) {
  std::vector<std::string> flags = {"--store",
                                    store_url_,
                                    "--etcd",
                                    etcd_->url(),
                                    "--node-name",
                                    n.name,
                                    "--node-lease-s",
                                    std::to_string(options_.lease_s),
                                    "--master-key-file",
                                    key_dir_ + "/master.key"};
  flags.insert(flags.end(), options_.flags.begin(), options_.flags.end());
  // nsenter --net changes the network namespace only: the node keeps the host's mounts (its
  // cgroup tree, /sys), as a node on a machine of its own would have them.
  ThawServer::Launch launch{
      {kNsenter, "--net=/run/netns/" + n.netns, "--"}, n.address + ":0", /*die_with_test=*/true};
  n.server = ThawServer::Start(flags, n.data_dir, launch);
}

std::unique_ptr<ClusterHarness> ClusterHarness::Start(const Options& options, std::string& skip,
                                                      std::string& error) {
  if (::geteuid() != 0) {
    skip = "not root: network namespaces and a bridge need CAP_NET_ADMIN";
    return nullptr;
  }
  std::unique_ptr<ClusterHarness> h(new ClusterHarness());
  h->options_ = options;
  for (const char* ip : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(ip, X_OK) == 0) {
      h->ip_ = ip;
      break;
    }
  }
  if (h->ip_.empty()) {
    skip = "no `ip` (iproute2) to make network namespaces with";
    return nullptr;
  }
  if (::access(kNsenter, X_OK) != 0) {
    skip = std::string("no ") + kNsenter + " (util-linux)";
    return nullptr;
  }
  if (::access(kEtcd, X_OK) != 0) {
    skip = std::string(kEtcd) + " is missing: apt-get install etcd-server";
    return nullptr;
  }
  if (RunProcess({h->ip_, "netns", "list"}, nullptr).exit_code != 0) {
    skip = "`ip netns` is not available here";
    return nullptr;
  }
  for (int i = 0; i < options.nodes; ++i) {
    h->nodes_.push_back(Node{std::string(1, static_cast<char>('a' + i)), "", "", "", nullptr});
  }
  if (Status st = h->MakeNetwork(); !st.ok()) {
    error = st.message();
    return nullptr;
  }
  const std::string host = h->subnet_ + "1";
  std::string why;
  h->pg_ = PgServer::Start(why, host);
  if (h->pg_ == nullptr) {
    // No binaries (or no user to run them as) is a reason to skip; a failed start is not.
    (why.find("initdb failed") == 0 || why.find("postgres did not") == 0 ? error : skip) = why;
    return nullptr;
  }
  h->store_url_ = h->pg_->CreateDatabase();
  if (h->store_url_.empty()) {
    error = "failed to create a database on the PostgreSQL at " + host;
    return nullptr;
  }
  h->etcd_ = EtcdServer::Start(error, host);
  if (h->etcd_ == nullptr) return nullptr;
  // One master key for every node, as nodes of one platform must have (an API key's secret and
  // the cluster token derive from it).
  char key_tmpl[] = "/tmp/thaw-master-XXXXXX";
  if (::mkdtemp(key_tmpl) == nullptr) {
    error = "failed to create a temp dir for the master key";
    return nullptr;
  }
  h->key_dir_ = key_tmpl;
  std::random_device random;
  std::string master;
  for (int i = 0; i < 64; ++i) master += "0123456789abcdef"[random() % 16];
  if (Status st = WriteFileAtomic(h->key_dir_ + "/master.key", master + "\n", 0600); !st.ok()) {
    error = st.message();
    return nullptr;
  }
  try {
    // The first node makes the schema and the admin key; the others start with the same admin
    // key (one admin key works on every node).
    for (size_t i = 0; i < h->nodes_.size(); ++i) {
      Node& n = h->nodes_[i];
      char tmpl[] = "/tmp/thaw-node-XXXXXX";
      if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
      n.data_dir = tmpl;
      if (i > 0) {
        auto key = ReadFile(h->nodes_[0].data_dir + "/admin.key");
        if (!key.ok()) throw std::runtime_error(key.status().message());
        if (Status st = WriteFileAtomic(n.data_dir + "/admin.key", *key, 0600); !st.ok()) {
          throw std::runtime_error(st.message());
        }
      }
      h->StartNode(n);
    }
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
  return h;
}

ClusterHarness::~ClusterHarness() {
  for (auto& n : nodes_) {
    n.server.reset();  // SIGTERM: it leaves the cluster
    if (!n.data_dir.empty()) RemoveDir(n.data_dir);
  }
  if (!key_dir_.empty()) RemoveDir(key_dir_);
  etcd_.reset();
  pg_.reset();
  // Deleting a namespace deletes the veth pair that has an end in it.
  for (const auto& ns : netns_made_) (void)Ip({"netns", "del", ns});
  if (bridge_made_) (void)Ip({"link", "del", bridge_});
}

ProcessResult ClusterHarness::Cli(size_t i, const std::vector<std::string>& args) const {
  const Node& n = nodes_.at(i);
  std::vector<std::string> argv = {THAW_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env = {"THAW_SERVER=" + n.server->url(),
                                  "THAW_API_KEY=" + n.server->key(), "HOME=/tmp",
                                  "PATH=/usr/bin:/bin"};
  return RunProcess(argv, &env);
}

void ClusterHarness::Kill9(size_t i) { nodes_.at(i).server->Kill9(); }

void ClusterHarness::Restart(size_t i) {
  Node& n = nodes_.at(i);
  n.server.reset();
  StartNode(n);
}

}  // namespace thaw::testing

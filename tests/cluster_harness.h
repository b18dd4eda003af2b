// ClusterHarness: several real `thaw serve` nodes, each in a network namespace of its own with
// its own address on a bridge the harness makes, all on one PostgreSQL (tests/pg_server) and one
// etcd that listen on the bridge's host address. The test process reaches every node over the
// bridge. Every node names one master key file (--master-key-file, made by the harness) and
// has the first node's admin key. Needs root, `ip` (iproute2), `nsenter`, /usr/bin/etcd and
// PostgreSQL's binaries; Start says why not otherwise, so the test can skip. The destructor stops
// the nodes, etcd and PostgreSQL and deletes the namespaces and the bridge; if the test dies
// instead, the nodes and etcd die with it and the next Start removes the namespaces and bridge it
// left (not its PostgreSQL, which pg_ctl runs detached). Use from the test's main thread;
// ThawServer's Call may be used from any.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "etcd_server.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {

class ClusterHarness {
 public:
  struct Options {
    int nodes = 3;                   // named a, b, c, ...
    int lease_s = 5;                 // --node-lease-s (2 s expires under a loaded machine)
    std::vector<std::string> flags;  // more `thaw serve` flags for every node
  };
  // Null when the cluster cannot run here (`skip` says why: not root, a tool missing) or did
  // not come up (`error` says why, with what failed).
  static std::unique_ptr<ClusterHarness> Start(const Options& options, std::string& skip,
                                               std::string& error);
  ~ClusterHarness();
  ClusterHarness(const ClusterHarness&) = delete;
  ClusterHarness& operator=(const ClusterHarness&) = delete;

  size_t size() const { return nodes_.size(); }
  ThawServer& node(size_t i) { return *nodes_.at(i).server; }
  const std::string& name(size_t i) const { return nodes_.at(i).name; }
  const std::string& address(size_t i) const { return nodes_.at(i).address; }
  // The host's own address on the bridge: where the test's calls come from, as nodes see them.
  std::string host_address() const { return subnet_ + "1"; }
  const std::string& etcd_url() const { return etcd_->url(); }
  const std::string& store_url() const { return store_url_; }

  // Runs the `thaw` CLI in this (the host's) namespace against node `i`, with its admin key.
  ProcessResult Cli(size_t i, const std::vector<std::string>& args) const;
  // SIGKILLs node `i` (its namespace stays); Restart starts it again on the same data dir.
  void Kill9(size_t i);
  void Restart(size_t i);

 private:
  struct Node {
    std::string name, netns, address, data_dir;
    std::unique_ptr<ThawServer> server;
  };
  ClusterHarness() = default;
  // Runs `ip ARGS`; the error names the command and what ip printed.
  Status Ip(const std::vector<std::string>& args) const;
  Status MakeNetwork();
  void StartNode(Node& node);  // throws std::runtime_error when it does not come up

  Options options_;
  std::string ip_;      // the ip binary
  std::string tag_;     // this run's names: bridge thbrTAG, namespaces thaw-TAG-NAME
  std::string subnet_;  // "10.213.N." (/24): .1 the bridge, .2.. the nodes
  std::string bridge_;
  bool bridge_made_ = false;
  std::vector<std::string> netns_made_;
  std::unique_ptr<PgServer> pg_;
  std::unique_ptr<EtcdServer> etcd_;
  std::string store_url_;
  std::string key_dir_;  // master.key, named by every node's --master-key-file
  std::vector<Node> nodes_;
};

}  // namespace thaw::testing

// BundleFetcher: a node that lacks a version's bundle (it was deployed through another node)
// fetches the archive by digest from a peer (GET /v1/internal/bundles/SHA256, authenticated by
// the cluster token), checks its SHA-256 and unpacks it into its own data dir
// (Registry::InstallBundle), before an instance of that version starts (pool/launch.cc asks,
// through PoolContext::fetch_bundle). One fetch per digest at a time, on a thread of its own;
// every caller waiting for that digest hears the one outcome. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace thaw::registry {
class Registry;
struct Version;
}  // namespace thaw::registry

namespace thaw::cluster {

// The route peers serve bundles on, and the header that carries the cluster token.
constexpr const char* kInternalBundlesPath = "/v1/internal/bundles/";
constexpr const char* kClusterTokenHeader = "X-Thaw-Cluster-Token";

// What nodes of one cluster present to each other: derived from the master key they share
// (HMAC-SHA256), so it is never stored or configured on its own.
std::string ClusterToken(const std::string& master_key);
// Whether `presented` is `token`, in time independent of where they differ.
bool TokenMatches(std::string_view presented, std::string_view token);

class BundleFetcher {
 public:
  // The peers (http://host:port) to ask for `function` version `version`, best first.
  using Peers =
      std::function<std::vector<std::string>(const std::string& function, int64_t version)>;
  using Done = std::function<void(Status)>;

  BundleFetcher(registry::Registry* registry, std::string token, Peers peers);
  ~BundleFetcher();  // fails what still waits (Unavailable) and joins the thread
  BundleFetcher(const BundleFetcher&) = delete;
  BundleFetcher& operator=(const BundleFetcher&) = delete;

  // Makes sure `version`'s bundle is in this node's data dir; `done` runs (on the fetcher's
  // thread, or at once on this one when it is there already) with Ok or why not.
  void Fetch(std::shared_ptr<const registry::Version> version, Done done);
  // The same, waiting: for callers on no io thread.
  Status FetchNow(std::shared_ptr<const registry::Version> version);

 private:
  struct Job {
    std::shared_ptr<const registry::Version> version;
    std::vector<Done> waiters;
  };
  void Run();
  Status FetchOne(const registry::Version& version);

  registry::Registry* const registry_;
  const std::string token_;
  const Peers peers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;    // digests, in arrival order
  std::map<std::string, Job> jobs_;  // by digest: queued or being fetched
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace thaw::cluster

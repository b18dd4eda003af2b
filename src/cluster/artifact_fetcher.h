// ArtifactFetcher: what a version needs on this node before an instance of it starts, its code
// bundle and its models' files, brought from a peer node when it was deployed (or the model
// pushed) through another one. Each is fetched by digest (GET /v1/internal/bundles/SHA256, a
// version's archive; GET /v1/internal/models/SHA256, one model file), authenticated by the
// cluster token, and believed only when its bytes hash to that digest: a peer that sends
// other bytes is refused and the next one asked. A bundle is unpacked into the data dir
// (Registry::InstallBundle); a model file is streamed to a temporary file, hashed on the way,
// linked into the model store, and once all its files are here the model's tree is built
// (ModelStore::InstallTree). pool/launch.cc asks before a start (PoolContext::fetch_artifacts).
//
// One fetch per artifact at a time: every start waiting for a digest hears the one outcome.
// Fetches run on a few threads of their own (a large model does not hold up a small bundle).
// Thread-safe.
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

#include "cluster/node_record.h"
#include "common/status.h"

namespace thaw::registry {
class Registry;
struct Version;
}  // namespace thaw::registry

namespace thaw::models {
class ModelStore;
struct File;
}  // namespace thaw::models

namespace thaw::cluster {

// The routes peers serve artifacts on, and the header that carries the cluster token.
constexpr const char* kInternalBundlesPath = "/v1/internal/bundles/";
constexpr const char* kInternalModelsPath = "/v1/internal/models/";
constexpr const char* kClusterTokenHeader = "X-Thaw-Cluster-Token";

// What nodes of one cluster present to each other: derived from the master key they share
// (HMAC-SHA256), so it is never stored or configured on its own.
std::string ClusterToken(const std::string& master_key);
// Whether `presented` is `token`, in time independent of where they differ.
bool TokenMatches(std::string_view presented, std::string_view token);

// The peers to ask, as http://ADVERTISE, those `holds` says hold the artifact first, each
// group in the order given. Records without an address are left out. Pure.
std::vector<std::string> OrderPeers(const std::vector<NodeRecord>& others,
                                    const std::function<bool(const NodeRecord&)>& holds);

class ArtifactFetcher {
 public:
  // The other members' records, as membership last read them (none: no cluster).
  using Peers = std::function<std::vector<NodeRecord>()>;
  using Done = std::function<void(Status)>;

  // `models` may be null (no model store: versions with models fail to fetch them).
  ArtifactFetcher(registry::Registry* registry, models::ModelStore* models, std::string token,
                  Peers peers, int threads = 2);
  ~ArtifactFetcher();  // fails what still waits (Unavailable) and joins the threads
  ArtifactFetcher(const ArtifactFetcher&) = delete;
  ArtifactFetcher& operator=(const ArtifactFetcher&) = delete;

  // Makes sure `version`'s bundle and every model tree it names are on this node; `done` runs (on a
  // fetcher thread, or at once on this one when all is here already) with Ok or why not (the first
  // artifact that could not be had).
  void Fetch(std::shared_ptr<const registry::Version> version, Done done);
  // The same, waiting: for callers on no io thread.
  Status FetchNow(std::shared_ptr<const registry::Version> version);

 private:
  struct Job {
    std::function<Status()> work;
    std::vector<Done> waiters;
  };
  // Runs `work` for `key` unless a job for it is queued or running; `done` hears its outcome.
  void Enqueue(const std::string& key, std::function<Status()> work, Done done);
  void Run();
  Status FetchBundle(const registry::Version& version);
  // The tree for `digest`: the files this node lacks, then the tree.
  Status FetchModel(const std::string& digest);
  // One file of a model, from the first of `peers` that sends the right bytes; each refusal
  // is added to `why`.
  Status FetchFile(const models::File& file, const std::vector<std::string>& peers,
                   std::string& why);

  registry::Registry* const registry_;
  models::ModelStore* const models_;
  const std::string token_;
  const Peers peers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;    // keys, in arrival order
  std::map<std::string, Job> jobs_;  // by key ("bundle:SHA", "model:DIGEST"): queued or running
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace thaw::cluster

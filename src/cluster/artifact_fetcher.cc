#include "cluster/artifact_fetcher.h"

#include <spdlog/spdlog.h>

#include <future>
#include <set>

#include "cli/http_client.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/hmac.h"
#include "common/sha256.h"
#include "models/store.h"
#include "registry/registry.h"

namespace thaw::cluster {
namespace {

constexpr int kBundleTimeoutMs = 120'000;   // one peer's answer, bundle and all
constexpr int kFileIdleTimeoutMs = 30'000;  // a model file: no byte from the peer for this long

std::string VersionName(const registry::Version& v) {
  return v.function + ":" + std::to_string(v.version);
}

}  // namespace

std::string ClusterToken(const std::string& master_key) {
  return HmacSha256Hex(master_key, "thaw cluster token v1");
}

bool TokenMatches(std::string_view presented, std::string_view token) {
  if (presented.size() != token.size() || token.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^ token[i]);
  }
  return diff == 0;
}

std::vector<std::string> OrderPeers(const std::vector<NodeRecord>& others,
                                    const std::function<bool(const NodeRecord&)>& holds) {
  std::vector<std::string> first, rest;
  for (const NodeRecord& r : others) {
    if (r.advertise.empty()) continue;
    (holds(r) ? first : rest).push_back("http://" + r.advertise);
  }
  first.insert(first.end(), rest.begin(), rest.end());
  return first;
}

ArtifactFetcher::ArtifactFetcher(registry::Registry* registry, models::ModelStore* models,
                                 std::string token, Peers peers, int threads)
    : registry_(registry), models_(models), token_(std::move(token)), peers_(std::move(peers)) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Run(); });
}

ArtifactFetcher::~ArtifactFetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (auto& [_, job] : jobs_) {
    for (auto& done : job.waiters) done(Unavailable("shutting down"));
  }
}

void ArtifactFetcher::Fetch(std::shared_ptr<const registry::Version> version, Done done) {
  // What is missing, each as a job of its own (shared with other versions needing it).
  struct Need {
    std::string key;
    std::function<Status()> work;
    std::string what;  // prefixed to its failure: the job's words name no version
  };
  std::vector<Need> missing;
  if (!PathExists(version->bundle_dir)) {
    missing.push_back(
        {"bundle:" + version->sha256, [this, version] { return FetchBundle(*version); }, ""});
  }
  std::set<std::string> digests;
  for (const registry::ModelRef& m : version->manifest.models) {
    if (!digests.insert(m.digest).second) continue;
    if (models_ != nullptr && models_->HasTree(m.digest)) continue;
    // The digest's job is shared by every version, of any tenant, using those files: each
    // caller hears its own name for them.
    missing.push_back({"model:" + m.digest,
                       [this, digest = m.digest] { return FetchModel(digest); },
                       "model " + m.name + ":" + m.tag + " of " + VersionName(*version)});
  }
  if (missing.empty()) return done(Status::Ok());
  // The version is ready when every job has answered; the first failure is its answer.
  struct Gather {
    std::mutex mu;
    size_t left;
    Status first = Status::Ok();
    Done done;
  };
  auto gather = std::make_shared<Gather>();
  gather->left = missing.size();
  gather->done = std::move(done);
  for (Need& need : missing) {
    Enqueue(need.key, std::move(need.work), [gather, what = std::move(need.what)](Status st) {
      if (!st.ok() && !what.empty()) st = Status(st.code(), what + ": " + st.message());
      Done finish;
      Status outcome = Status::Ok();
      {
        std::lock_guard<std::mutex> lock(gather->mu);
        if (!st.ok() && gather->first.ok()) gather->first = std::move(st);
        if (--gather->left > 0) return;
        finish = std::move(gather->done);
        outcome = gather->first;
      }
      finish(std::move(outcome));
    });
  }
}

Status ArtifactFetcher::FetchNow(std::shared_ptr<const registry::Version> version) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  Fetch(std::move(version), [promise](Status st) { promise->set_value(std::move(st)); });
  return future.get();
}

void ArtifactFetcher::Enqueue(const std::string& key, std::function<Status()> work, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      auto [it, fresh] = jobs_.try_emplace(key);
      if (fresh) {
        it->second.work = std::move(work);
        queue_.push_back(key);
      }
      it->second.waiters.push_back(std::move(done));
      cv_.notify_one();
      return;
    }
  }
  done(Unavailable("shutting down"));
}

void ArtifactFetcher::Run() {
  for (;;) {
    std::string key;
    std::function<Status()> work;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      key = queue_.front();
      queue_.pop_front();
      work = jobs_.at(key).work;
    }
    Status st = work();
    std::vector<Done> waiters;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(key);
      waiters = std::move(it->second.waiters);
      jobs_.erase(it);
    }
    for (auto& done : waiters) done(st);
  }
}

Status ArtifactFetcher::FetchBundle(const registry::Version& v) {
  if (PathExists(v.bundle_dir)) return Status::Ok();
  const std::string key = VersionName(v);
  std::vector<std::string> peers;
  if (peers_) {
    peers = OrderPeers(peers_(), [&key](const NodeRecord& r) {
      return r.warm.count(key) > 0 || r.templates.count(key) > 0;
    });
  }
  std::string why;
  for (const std::string& peer : peers) {
    auto r = cli::HttpCall(peer, "GET", kInternalBundlesPath + v.sha256, "",
                           {{kClusterTokenHeader, token_}}, kBundleTimeoutMs);
    if (!r.ok()) {
      why += "; " + peer + ": " + r.status().message();
      continue;
    }
    if (r->status != 200) {
      why += "; " + peer + ": HTTP " + std::to_string(r->status);
      continue;
    }
    // InstallBundle checks the digest: a peer that sends other bytes is not believed.
    Status st = registry_->InstallBundle(v.sha256, r->body);
    if (st.ok()) {
      spdlog::info("bundle {} of {} fetched from {} ({} bytes)", v.sha256.substr(0, 12), key, peer,
                   r->body.size());
      return st;
    }
    why += "; " + peer + ": " + st.message();
  }
  if (peers.empty()) why = "; no other node is known (no --etcd membership)";
  Status st = Unavailable("the code of " + key + " (sha256 " + v.sha256 +
                          ") is not on this node and no peer gave it" + why);
  spdlog::warn("{}", st.message());
  return st;
}

Status ArtifactFetcher::FetchModel(const std::string& digest) {
  if (models_ == nullptr) return FailedPrecondition("this node has no model store");
  if (models_->HasTree(digest)) return Status::Ok();
  auto files = models_->TreeFiles(digest);
  if (!files.ok()) return files.status();
  std::vector<std::string> peers;
  if (peers_) {
    peers =
        OrderPeers(peers_(), [&digest](const NodeRecord& r) { return r.models.count(digest) > 0; });
  }
  const int64_t start = MonoNowMicros();
  int64_t bytes = 0;
  std::set<std::string> seen;  // sha256s (a file may appear under two paths)
  for (const models::File& f : *files) {
    if (!seen.insert(f.sha256).second || PathExists(models_->BlobPath(f.sha256))) continue;
    std::string why;
    if (Status st = FetchFile(f, peers, why); !st.ok()) {
      if (peers.empty()) why = "; no other node is known (no --etcd membership)";
      Status out =
          Unavailable("digest " + digest + " is not on this node and no peer gave its file " +
                      f.path + " (sha256 " + f.sha256 + ")" + why);
      spdlog::warn("model {}", out.message());
      return out;
    }
    bytes += f.size;
  }
  THAW_RETURN_IF_ERROR(models_->InstallTree(digest));
  spdlog::info("model {} fetched from peers ({} bytes in {} ms)", digest.substr(0, 12), bytes,
               (MonoNowMicros() - start) / 1000);
  return Status::Ok();
}

Status ArtifactFetcher::FetchFile(const models::File& f, const std::vector<std::string>& peers,
                                  std::string& why) {
  for (const std::string& peer : peers) {
    auto upload = models_->BeginFetch(f.sha256, f.size);
    if (!upload.ok()) {
      why += "; " + upload.status().message();
      return upload.status();  // this node's disk: no peer does better
    }
    auto r = cli::HttpGetTo(peer, kInternalModelsPath + f.sha256, {{kClusterTokenHeader, token_}},
                            kFileIdleTimeoutMs,
                            [&upload](std::string_view bytes) { return (*upload)->Write(bytes); });
    if (!r.ok()) {
      why += "; " + peer + ": " + r.status().message();
      continue;
    }
    if (r->status != 200) {
      why += "; " + peer + ": HTTP " + std::to_string(r->status);
      continue;
    }
    // Commit checks the size and the digest: a peer that sent other bytes is not believed.
    if (Status st = (*upload)->Commit(); !st.ok()) {
      spdlog::warn("model file {} from {} refused: {}", f.sha256.substr(0, 12), peer, st.message());
      why += "; " + peer + ": refused: " + st.message();
      continue;
    }
    spdlog::info("model file {} ({}, {} bytes) fetched from {}", f.sha256.substr(0, 12), f.path,
                 f.size, peer);
    return Status::Ok();
  }
  return Unavailable("no peer gave it");
}

}  // namespace thaw::cluster

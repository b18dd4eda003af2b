#include "cluster/bundle_fetcher.h"

#include <spdlog/spdlog.h>

#include <future>

#include "cli/http_client.h"
#include "common/files.h"
#include "common/hmac.h"
#include "common/sha256.h"
#include "registry/registry.h"

namespace thaw::cluster {
namespace {

constexpr int kFetchTimeoutMs = 120'000;  // one peer's answer, bundle and all

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

BundleFetcher::BundleFetcher(registry::Registry* registry, std::string token, Peers peers)
    : registry_(registry), token_(std::move(token)), peers_(std::move(peers)) {
  thread_ = std::thread([this] { Run(); });
}

BundleFetcher::~BundleFetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& [_, job] : jobs_) {
    for (auto& done : job.waiters) done(Unavailable("shutting down"));
  }
}

void BundleFetcher::Fetch(std::shared_ptr<const registry::Version> version, Done done) {
  if (PathExists(version->bundle_dir)) return done(Status::Ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      auto [it, fresh] = jobs_.try_emplace(version->sha256);
      if (fresh) {
        it->second.version = version;
        queue_.push_back(version->sha256);
      }
      it->second.waiters.push_back(std::move(done));
      cv_.notify_one();
      return;
    }
  }
  done(Unavailable("shutting down"));
}

Status BundleFetcher::FetchNow(std::shared_ptr<const registry::Version> version) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto future = promise->get_future();
  Fetch(std::move(version), [promise](Status st) { promise->set_value(std::move(st)); });
  return future.get();
}

void BundleFetcher::Run() {
  for (;;) {
    std::shared_ptr<const registry::Version> version;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      version = jobs_.at(queue_.front()).version;
      queue_.pop_front();
    }
    Status st = FetchOne(*version);
    std::vector<Done> waiters;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(version->sha256);
      waiters = std::move(it->second.waiters);
      jobs_.erase(it);
    }
    for (auto& done : waiters) done(st);
  }
}

Status BundleFetcher::FetchOne(const registry::Version& v) {
  if (PathExists(v.bundle_dir)) return Status::Ok();
  std::vector<std::string> peers;
  if (peers_) peers = peers_(v.function, v.version);
  std::string why;
  for (const std::string& peer : peers) {
    auto r = cli::HttpCall(peer, "GET", kInternalBundlesPath + v.sha256, "",
                           {{kClusterTokenHeader, token_}}, kFetchTimeoutMs);
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
      spdlog::info("bundle {} of {}:{} fetched from {} ({} bytes)", v.sha256.substr(0, 12),
                   v.function, v.version, peer, r->body.size());
      return st;
    }
    why += "; " + peer + ": " + st.message();
  }
  if (peers.empty()) why = "; no other node is known (no --etcd membership)";
  Status st =
      Unavailable("the code of " + v.function + ":" + std::to_string(v.version) + " (sha256 " +
                  v.sha256 + ") is not on this node and no peer gave it" + why);
  spdlog::warn("{}", st.message());
  return st;
}

}  // namespace thaw::cluster

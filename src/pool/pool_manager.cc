// PoolManager: the function pools of a server, by version, and the routing of exit events
// and ticks to them.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <thread>

#include "common/files.h"
#include "instance/template.h"
#include "pool/pool.h"
#include "pool/pool_internal.h"
#include "sandbox/spawner.h"

namespace thaw::pool {

namespace {

int TemplateStartSlots(const PoolContext& ctx) {
  if (ctx.template_start_slots > 0) return ctx.template_start_slots;
  return 2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

PoolManager::PoolManager(PoolContext* ctx)
    : ctx_(ctx), template_starts_(TemplateStartSlots(*ctx)) {}

std::shared_ptr<FunctionPool> PoolManager::Get(
    const std::shared_ptr<const registry::Version>& version, bool latest) {
  auto key = std::make_tuple(version->function, version->version, latest);
  {
    std::shared_lock lock(mu_);
    auto it = pools_.find(key);
    if (it != pools_.end()) return it->second;
  }
  std::unique_lock lock(mu_);
  auto& slot = pools_[key];
  if (!slot) slot = std::make_shared<FunctionPool>(ctx_, version, latest);
  return slot;
}

void PoolManager::OnDeployed(const std::string& function,
                             const std::shared_ptr<const registry::Version>& latest) {
  std::vector<std::shared_ptr<FunctionPool>> old;
  {
    std::shared_lock lock(mu_);
    for (const auto& [key, pool] : pools_) {
      const auto& [name, version, _] = key;
      if (name == function && (!latest || version != latest->version)) {
        old.push_back(pool);
      }
    }
  }
  for (auto& pool : old) pool->Drain();
  EndTemplates(function, latest ? latest->version : 0);
  // Its template, and then its warm instances, start on the executor: a deploy never waits for
  // them. Even the first call after the deploy forks. The template goes first, in the same
  // handler: min_instances' instances then wait for it and fork, where otherwise one would find
  // no template yet and start in full (a whole private copy of the init's memory).
  if (latest) {
    asio::post(ctx_->executor, [pool = Get(latest, true), warm = latest->manifest.min_instances] {
      pool->Prewarm();
      if (warm > 0) pool->OnTick();
    });
  }
}

void PoolManager::RegisterExitHook(pid_t pid, std::function<void(const sandbox::ExitEvent&)> hook) {
  sandbox::ExitEvent early_status;
  {
    std::lock_guard<std::mutex> lock(pid_mu_);
    auto early = early_exits_.find(pid);
    if (early == early_exits_.end()) {
      exit_hooks_[pid] = std::move(hook);
      return;
    }
    early_status = early->second;
    early_exits_.erase(early);
  }
  hook(early_status);
}

std::shared_ptr<instance::Template> PoolManager::TemplateOf(const std::string& function,
                                                            int64_t version) {
  std::lock_guard<std::mutex> lock(template_mu_);
  auto& slot = templates_[{function, version}];
  if (!slot) slot = std::make_shared<instance::Template>();
  return slot;
}

void PoolManager::EndTemplates(const std::string& function, int64_t keep) {
  std::lock_guard<std::mutex> lock(template_mu_);
  for (auto it = templates_.begin(); it != templates_.end();) {
    if (it->first.first != function || it->first.second == keep) {
      ++it;
      continue;
    }
    // An old version's pools keep their (now forgotten) Template object; a call by number
    // then forks no more: it starts fresh. The template itself ends with the last pool of its
    // version (Tick): its forks die with it.
    if (pid_t pid = it->second->ready_pid(); pid > 0) {
      retired_.emplace_back(it->first.first, it->first.second, pid);
    }
    (void)it->second->Refused("its function has a newer version");
    it = templates_.erase(it);
  }
}

std::vector<std::pair<std::string, int64_t>> PoolManager::ReadyTemplates() {
  std::vector<std::pair<std::string, int64_t>> out;
  std::lock_guard<std::mutex> lock(template_mu_);
  for (const auto& [key, t] : templates_) {
    if (t->state() == instance::Template::State::kReady) out.push_back(key);
  }
  return out;
}

bool PoolManager::ReserveMemory(int64_t mb) {
  int64_t now = reserved_mb_.load(std::memory_order_relaxed);
  do {
    if (now + mb > ctx_->node_memory_mb) return false;
  } while (!reserved_mb_.compare_exchange_weak(now, now + mb, std::memory_order_relaxed));
  return true;
}

void PoolManager::ReleaseMemory(int64_t mb) {
  reserved_mb_.fetch_sub(mb, std::memory_order_relaxed);
}

void PoolManager::RegisterPid(pid_t pid, std::weak_ptr<FunctionPool> pool, uint64_t instance_id) {
  sandbox::ExitEvent early_status;
  bool exited_early = false;
  {
    std::lock_guard<std::mutex> lock(pid_mu_);
    auto early = early_exits_.find(pid);
    if (early != early_exits_.end()) {
      exited_early = true;
      early_status = early->second;
      early_exits_.erase(early);
    } else {
      pids_[pid] = {std::move(pool), instance_id};
    }
  }
  if (exited_early) {
    if (auto p = pool.lock()) p->OnExit(instance_id, early_status);
  }
}

void PoolManager::OnExit(const sandbox::ExitEvent& exit) {
  const pid_t pid = exit.pid;
  std::weak_ptr<FunctionPool> pool;
  uint64_t instance_id = 0;
  std::function<void(const sandbox::ExitEvent&)> hook;
  {
    std::lock_guard<std::mutex> lock(pid_mu_);
    if (auto h = exit_hooks_.find(pid); h != exit_hooks_.end()) {
      hook = std::move(h->second);
      exit_hooks_.erase(h);
    }
  }
  if (hook) return hook(exit);
  {
    std::lock_guard<std::mutex> lock(pid_mu_);
    auto it = pids_.find(pid);
    if (it == pids_.end()) {
      // The exit raced ahead of RegisterPid (the spawn reply and the exit event travel on
      // different sockets): remember it for RegisterPid.
      early_exits_[pid] = exit;
      return;
    }
    pool = it->second.first;
    instance_id = it->second.second;
    pids_.erase(it);
  }
  if (auto p = pool.lock()) p->OnExit(instance_id, exit);
}

void PoolManager::Tick() {
  std::vector<std::shared_ptr<FunctionPool>> pools;
  {
    std::shared_lock lock(mu_);
    for (const auto& [_, pool] : pools_) pools.push_back(pool);
  }
  bool forget = false;
  for (auto& pool : pools) {
    pool->OnTick();
    if (pool->Stats().draining && pool->Idle()) forget = true;
  }
  if (forget) {
    std::unique_lock lock(mu_);
    for (auto it = pools_.begin(); it != pools_.end();) {
      if (it->second->Stats().draining && it->second->Idle()) {
        it = pools_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::vector<pid_t> ended;
  std::vector<std::string> snapshots;  // the ended nodejs versions' snapshot folders
  {
    std::lock_guard<std::mutex> tlock(template_mu_);
    if (retired_.empty()) return;
    std::shared_lock lock(mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      const auto& [function, version, pid] = *it;
      const bool used = pools_.count({function, version, true}) > 0 ||
                        pools_.count({function, version, false}) > 0;
      if (used) {
        ++it;
        continue;
      }
      ended.push_back(pid);
      if (!ctx_->snapshots_dir.empty()) {
        snapshots.push_back(SnapshotDirOf(ctx_->snapshots_dir, function, version));
      }
      it = retired_.erase(it);
    }
  }
  for (pid_t pid : ended) ctx_->spawner->Kill(pid);
  // A replaced or deleted version's snapshot is never restored again (a function made again
  // under the same name numbers its versions anew and builds its own).
  for (const std::string& dir : snapshots) {
    if (Status st = RemoveTree(dir); !st.ok()) spdlog::warn("{}", st.message());
  }
}

std::vector<PoolStats> PoolManager::Stats(const std::string& function) const {
  std::vector<PoolStats> out;
  std::shared_lock lock(mu_);
  if (function.empty()) {
    for (const auto& [key, pool] : pools_) out.push_back(pool->Stats());
    return out;
  }
  // One function's pools are adjacent in the map (its name leads the key): listing 1,000
  // functions visited every pool for each before.
  for (auto it = pools_.lower_bound(std::make_tuple(function, INT64_MIN, false));
       it != pools_.end() && std::get<0>(it->first) == function; ++it) {
    out.push_back(it->second->Stats());
  }
  return out;
}

bool PoolManager::CanTakeWork(const std::string& function, int64_t version, bool latest) const {
  std::shared_ptr<FunctionPool> pool;
  {
    std::shared_lock lock(mu_);
    auto it = pools_.find(std::make_tuple(function, version, latest));
    if (it == pools_.end()) return false;
    pool = it->second;
  }
  return pool->CanTakeWork();
}

void PoolManager::WarmOne(const std::shared_ptr<const registry::Version>& version, bool latest) {
  // As at a deploy: the template first, in the same handler, so the instance forks from it.
  asio::post(ctx_->executor, [pool = Get(version, latest)] {
    pool->Prewarm();
    pool->WarmOne();
  });
}

void PoolManager::StopIdle(const std::string& function, int64_t version) {
  std::vector<std::shared_ptr<FunctionPool>> pools;
  {
    std::shared_lock lock(mu_);
    for (bool latest : {true, false}) {
      auto it = pools_.find(std::make_tuple(function, version, latest));
      if (it != pools_.end()) pools.push_back(it->second);
    }
  }
  for (auto& pool : pools) pool->StopIdle();
}

bool PoolManager::Quiet() const {
  for (const auto& s : Stats("")) {
    if (s.queued > 0 || s.inflight > 0) return false;
  }
  return true;
}

void PoolManager::Shutdown() {
  std::vector<std::shared_ptr<FunctionPool>> pools;
  {
    std::shared_lock lock(mu_);
    for (const auto& [_, pool] : pools_) pools.push_back(pool);
  }
  for (auto& pool : pools) pool->Shutdown();
  std::vector<pid_t> templates;
  {
    std::lock_guard<std::mutex> lock(template_mu_);
    for (auto& [_, t] : templates_) {
      if (pid_t pid = t->ready_pid(); pid > 0) templates.push_back(pid);
      (void)t->Refused("thaw is shutting down");
    }
    for (const auto& [function, version, pid] : retired_) templates.push_back(pid);
    retired_.clear();
  }
  for (pid_t pid : templates) ctx_->spawner->Kill(pid);
}

}  // namespace thaw::pool

// The drain mover: applies dispatch::PlanDrainMoves (dispatch/drain_moves.h) on every node of a
// cluster, twice a second. A node that is not draining starts one instance of each version a
// drained node holds warm and placement gives it (it then idles out as any instance); a
// draining node stops its idle instances of a version once another node holds it warm, seen
// on two turns in a row (so a call routed here a moment before still finds its instance).
// Busy instances finish their calls and stop on a later turn. Runs on the server's executor.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <set>
#include <string>

#include "cluster/membership.h"
#include "pool/pool.h"
#include "registry/registry.h"

namespace thaw::cluster {

class DrainMover {
 public:
  DrainMover(const Membership* membership, pool::PoolManager* pools,
             const registry::Registry* registry)
      : membership_(membership), pools_(pools), registry_(registry) {}

  // One turn: plan from the current snapshot and act.
  void Turn();
  // Turns until `stopping`.
  boost::asio::awaitable<void> Run(const bool& stopping);

  static constexpr int64_t kPeriodMs = 500;

 private:
  const Membership* const membership_;
  pool::PoolManager* const pools_;
  const registry::Registry* const registry_;
  std::set<std::string> releasable_;  // the previous turn's release list
  std::set<std::string> adopted_;     // the previous turn's adopted versions (logged once)
  std::set<std::string> released_;    // the previous turn's released versions (logged once)
};

}  // namespace thaw::cluster

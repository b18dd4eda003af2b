// The keep-alive simulator behind `thaw simulate`: replays a Trace (trace.h) through the
// keep-alive policy the server runs (pool/keep_alive.h) and counts cold starts and the
// memory-time held by idle instances and templates. Pure: no clock, no I/O.
//
// The model, per function (docs: README "Trace simulator"):
// - The calls of a minute arrive spread evenly over it, and need max(1, ceil(calls x average
//   duration / 60 s)) instances at once (Little's law), at most one per call.
// - An arrival that finds fewer idle instances than it needs starts the rest: a fork start
//   when the function's template is alive, else a full cold start (which also makes the
//   template, under a policy with templates). Only full starts count as cold starts; fork
//   starts are counted apart.
// - An instance, or a template, holds the function's memory; memory-time is wasted while an
//   instance is alive and idle, and all the time a template is alive.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pool/keep_alive.h"
#include "sim/trace.h"

namespace thaw::sim {

struct PolicySpec {
  std::string name;
  pool::KeepAliveMode mode = pool::KeepAliveMode::kFixed;
  int64_t fixed_window_us = 0;  // the fixed window, or adaptive's fallback
  bool templates = false;
};

// fixed-10m, fixed-20m, adaptive, adaptive+templates. The adaptive ones fall back to thaw.yaml's
// default idle_timeout_s (300 s), as the server does.
std::vector<PolicySpec> StandardPolicies();

struct PolicyResult {
  std::string name;
  int64_t invocations = 0;
  int64_t cold_starts = 0;  // full starts a call waited for
  int64_t fork_starts = 0;  // starts forked from a live template
  double cold_start_pct = 0;
  // 75th percentile (nearest rank) over the functions with calls of their cold-start %.
  double p75_function_cold_start_pct = 0;
  double wasted_gb_s = 0;  // GB-seconds: idle instances plus templates
};

PolicyResult Simulate(const Trace& trace, const PolicySpec& policy);

}  // namespace thaw::sim

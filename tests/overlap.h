// The most calls of a test that ran at one instant, from each call's start and end (t0, t1)
// and status (only 200s count): for the tests of a concurrency limit.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

namespace thaw::testing {

template <class Call>
int MaxOverlap(const std::vector<Call>& calls) {
  std::vector<std::pair<double, int>> edges;
  for (const auto& c : calls) {
    if (c.status != 200) continue;
    edges.emplace_back(c.t0, 1);
    edges.emplace_back(c.t1, -1);
  }
  std::sort(edges.begin(), edges.end());  // at one instant, an end (-1) sorts before a start
  int now = 0, most = 0;
  for (const auto& [_, d] : edges) most = std::max(most, now += d);
  return most;
}

}  // namespace thaw::testing

#include "dispatch/share_split.h"

#include <algorithm>
#include <numeric>

namespace thaw::dispatch {

std::vector<int64_t> TargetShares(int64_t limit, const std::vector<ShareView>& nodes) {
  std::vector<int64_t> out(nodes.size(), 0);
  if (nodes.empty() || limit <= 0) return out;
  // Max-min fair: the smallest demands first, each capped at an even split of what is left.
  std::vector<size_t> order(nodes.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t da = std::max<int64_t>(0, nodes[a].demand);
    const int64_t db = std::max<int64_t>(0, nodes[b].demand);
    return da != db ? da < db : nodes[a].node < nodes[b].node;
  });
  int64_t left = limit;
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t even = left / static_cast<int64_t>(order.size() - i);
    const int64_t give = std::min(std::max<int64_t>(0, nodes[order[i]].demand), even);
    out[order[i]] = give;
    left -= give;
  }
  // Headroom: the rest spread evenly, the remainder one each in name order.
  if (left > 0) {
    std::vector<size_t> by_name(nodes.size());
    std::iota(by_name.begin(), by_name.end(), 0);
    std::sort(by_name.begin(), by_name.end(),
              [&](size_t a, size_t b) { return nodes[a].node < nodes[b].node; });
    const int64_t n = static_cast<int64_t>(nodes.size());
    const int64_t each = left / n;
    int64_t extra = left % n;
    for (size_t i : by_name) {
      out[i] += each + (extra > 0 ? 1 : 0);
      if (extra > 0) --extra;
    }
  }
  return out;
}

ShareStep NextShare(int64_t limit, const std::vector<ShareView>& nodes, size_t self,
                    int64_t in_use) {
  ShareStep step;
  if (self >= nodes.size()) return step;
  const int64_t current = std::max<int64_t>(0, nodes[self].share);
  const int64_t target = TargetShares(limit, nodes)[self];
  if (target <= current) {
    step.cap = target;
    step.publish = std::min(current, std::max(target, in_use));
    return step;
  }
  int64_t others = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i != self) others += std::max<int64_t>(0, nodes[i].share);
  }
  const int64_t room = limit - others;
  step.cap = current;
  step.publish = std::max(current, std::min(target, room));
  step.raise = step.publish > current;
  return step;
}

}  // namespace thaw::dispatch

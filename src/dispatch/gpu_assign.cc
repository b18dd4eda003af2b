#include "dispatch/gpu_assign.h"

#include <algorithm>
#include <cctype>

namespace thaw::dispatch {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Describe(const GpuAsk& ask) {
  std::string out = std::to_string(ask.count) + " GPU(s)";
  if (!ask.kind.empty()) out += " of kind " + ask.kind;
  if (ask.memory_gb > 0) out += " with at least " + std::to_string(ask.memory_gb) + " GB";
  return out;
}

}  // namespace

bool GpuMatches(const GpuSlot& slot, const GpuAsk& ask) {
  if (ask.memory_gb > 0 && slot.memory_bytes < (ask.memory_gb << 30)) return false;
  if (!ask.kind.empty() && Lower(slot.name).find(Lower(ask.kind)) == std::string::npos) {
    return false;
  }
  return true;
}

StatusOr<std::vector<int>> AssignGpus(const std::vector<GpuSlot>& gpus, const GpuAsk& ask) {
  if (ask.count <= 0) return std::vector<int>{};
  std::vector<const GpuSlot*> free;
  int64_t matching = 0;
  for (const GpuSlot& g : gpus) {
    if (!GpuMatches(g, ask)) continue;
    ++matching;
    if (!g.held) free.push_back(&g);
  }
  if (matching < ask.count) {
    return FailedPrecondition("this node has " + std::to_string(matching) + " of the " +
                              Describe(ask) + " the function asks for (" +
                              std::to_string(gpus.size()) + " GPU(s) in all)");
  }
  if (static_cast<int64_t>(free.size()) < ask.count) {
    return Status(StatusCode::kResourceExhausted,
                  "no free GPU: " + Describe(ask) + " wanted, " + std::to_string(free.size()) +
                      " of " + std::to_string(matching) + " matching GPU(s) free");
  }
  std::stable_sort(free.begin(), free.end(), [](const GpuSlot* a, const GpuSlot* b) {
    if (a->memory_bytes != b->memory_bytes) return a->memory_bytes < b->memory_bytes;
    return a->index < b->index;
  });
  std::vector<int> out;
  for (int64_t i = 0; i < ask.count; ++i) out.push_back(free[static_cast<size_t>(i)]->index);
  std::sort(out.begin(), out.end());
  return out;
}

Status CheckGpusFit(const std::vector<GpuSlot>& gpus, const GpuAsk& ask) {
  std::vector<GpuSlot> all_free = gpus;
  for (GpuSlot& g : all_free) g.held = false;
  auto fit = AssignGpus(all_free, ask);
  if (fit.ok()) return Status::Ok();
  return InvalidArgument("thaw.yaml: field 'gpu': " + fit.status().message());
}

}  // namespace thaw::dispatch

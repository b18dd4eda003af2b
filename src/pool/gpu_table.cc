#include "pool/gpu_table.h"

namespace thaw::pool {

GpuTable::GpuTable(std::vector<sandbox::GpuDevice> devices, std::string dev_dir,
                   std::unique_ptr<sandbox::Nvml> nvml, std::string source)
    : devices_(std::move(devices)),
      dev_dir_(std::move(dev_dir)),
      nvml_(std::move(nvml)),
      source_(std::move(source)),
      holders_(devices_.size()) {}

GpuTable::~GpuTable() = default;

StatusOr<std::vector<sandbox::GpuDevice>> GpuTable::Acquire(const std::string& holder,
                                                            const dispatch::GpuAsk& ask) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<dispatch::GpuSlot> slots;
  for (size_t i = 0; i < devices_.size(); ++i) {
    slots.push_back(
        {devices_[i].index, devices_[i].name, devices_[i].memory_bytes, !holders_[i].empty()});
  }
  auto chosen = dispatch::AssignGpus(slots, ask);
  if (!chosen.ok()) return chosen.status();
  std::vector<sandbox::GpuDevice> out;
  for (int index : *chosen) {
    for (size_t i = 0; i < devices_.size(); ++i) {
      if (devices_[i].index != index) continue;
      holders_[i] = holder;
      out.push_back(devices_[i]);
    }
  }
  return out;
}

void GpuTable::Release(const std::vector<sandbox::GpuDevice>& gpus) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& g : gpus) {
    for (size_t i = 0; i < devices_.size(); ++i) {
      if (devices_[i].index == g.index) holders_[i].clear();
    }
  }
}

std::vector<GpuTable::Row> GpuTable::Snapshot() const {
  std::vector<Row> rows;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < devices_.size(); ++i) rows.push_back({devices_[i], holders_[i], {}});
  }
  if (nvml_ != nullptr) {
    for (Row& r : rows) r.sample = nvml_->Sample(r.device.index);
  }
  return rows;
}

int64_t GpuTable::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& h : holders_) n += h.empty() ? 0 : 1;
  return n;
}

}  // namespace thaw::pool

// GPUs on this node: the inventory (NVML, loaded at run time with dlopen so thaw neither links
// nor needs it, or a static list from the `gpus` knob), the device nodes an instance holding
// some of them may see, and the cgroup v2 BPF device program that denies it every other GPU.
// The inventory is read once at start; Nvml::Sample may be called from any thread (NVML is
// thread-safe). The rest are pure functions or run in the spawner's single-threaded children.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace thaw::sandbox {

struct GpuDevice {
  int index = 0;             // NVML's index (PCI order), or the static list's number
  int minor = 0;             // N of /dev/nvidiaN
  std::string uuid;          // "GPU-...": what CUDA_VISIBLE_DEVICES names; empty for a static GPU
  std::string name;          // "NVIDIA H200"; "static" when the list gave none
  int64_t memory_bytes = 0;  // 0: unknown
};

struct GpuSample {
  int64_t memory_used_bytes = -1;  // -1: not known (no NVML)
  int64_t utilization_percent = -1;
};

// NVML, opened with dlopen. Move-only; destroying it shuts NVML down and closes the library.
class Nvml {
 public:
  // Loads `library` and initialises NVML; an error says why (library absent, no driver).
  static StatusOr<std::unique_ptr<Nvml>> Open(const std::string& library = "libnvidia-ml.so.1");
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  StatusOr<std::vector<GpuDevice>> Devices() const;
  GpuSample Sample(int index) const;

  struct Api;  // the entry points, resolved with dlsym

 private:
  Nvml(void* handle, std::unique_ptr<Api> api);
  void* handle_;
  std::unique_ptr<Api> api_;
};

// The `gpus` knob: "0,1" or "0:H200:141,1" (index[:name[:memory_gb]]); the device node of each
// is nvidia<index>. Empty text is an empty list. Errors name the knob and the entry.
StatusOr<std::vector<GpuDevice>> ParseStaticGpus(const std::string& text);

// The host device nodes an instance holding `held` binds into its jail: each GPU's
// <dir>/nvidiaN, and the shared control nodes (<dir>/nvidiactl, <dir>/nvidia-uvm,
// <dir>/nvidia-uvm-tools) that exist.
std::vector<std::string> GpuNodesToBind(const std::string& dev_dir,
                                        const std::vector<GpuDevice>& held);
// The other GPUs' nodes, which its device cgroup denies.
std::vector<std::string> GpuNodesToDeny(const std::string& dev_dir,
                                        const std::vector<GpuDevice>& all,
                                        const std::vector<GpuDevice>& held);
// CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES for `held` ("KEY=value" strings): UUIDs when
// NVML named them, else indexes.
std::vector<std::string> GpuEnvironment(const std::vector<GpuDevice>& held);

// A character or block device by number, as the device cgroup matches it.
struct DeviceNumber {
  char type = 'c';  // 'c' or 'b'
  uint32_t major = 0, minor = 0;
  bool operator==(const DeviceNumber&) const = default;
};
// stat()s each path; an error names the one that is not a device node.
StatusOr<std::vector<DeviceNumber>> DeviceNumbersOf(const std::vector<std::string>& paths);

// Cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program, built from raw instructions, that refuses
// every access to `denied` and allows the rest. LoadDenyProgram asks the kernel's verifier for
// it (root); AttachDeviceProgram attaches it to the cgroup directory (BPF_F_ALLOW_MULTI, so
// programs of parent cgroups still apply).
StatusOr<UniqueFd> LoadDenyProgram(const std::vector<DeviceNumber>& denied);
Status AttachDeviceProgram(int program_fd, const std::string& cgroup_dir);

// Cgroup v1: the lines written to devices.deny ("c 195:1 rwm").
std::vector<std::string> DeviceDenyLines(const std::vector<DeviceNumber>& denied);

}  // namespace thaw::sandbox

#include "sandbox/gpu.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/files.h"

namespace thaw::sandbox {

// NVML's C API, declared here rather than included: thaw builds where no CUDA headers exist.
struct Nvml::Api {
  using Device = void*;
  struct Memory {
    unsigned long long total, free, used;
  };
  struct Utilization {
    unsigned int gpu, memory;
  };
  int (*init)() = nullptr;
  int (*shutdown)() = nullptr;
  const char* (*error_string)(int) = nullptr;
  int (*count)(unsigned int*) = nullptr;
  int (*handle)(unsigned int, Device*) = nullptr;
  int (*name)(Device, char*, unsigned int) = nullptr;
  int (*uuid)(Device, char*, unsigned int) = nullptr;
  int (*memory)(Device, Memory*) = nullptr;
  int (*utilization)(Device, Utilization*) = nullptr;
  int (*minor_number)(Device, unsigned int*) = nullptr;

  std::string Error(const char* op, int rc) const {
    return std::string("failed to ") + op +
           " on NVML: " + (error_string != nullptr ? error_string(rc) : std::to_string(rc));
  }
};

namespace {

template <typename Fn>
bool Resolve(void* handle, const char* symbol, Fn& out) {
  out = reinterpret_cast<Fn>(::dlsym(handle, symbol));
  return out != nullptr;
}

}  // namespace

Nvml::Nvml(void* handle, std::unique_ptr<Api> api) : handle_(handle), api_(std::move(api)) {}

Nvml::~Nvml() {
  api_->shutdown();
  ::dlclose(handle_);
}

StatusOr<std::unique_ptr<Nvml>> Nvml::Open(const std::string& library) {
  // SAFETY: the driver's own library, loaded by its soname from the system's library path;
  // thaw calls only the documented entry points below, with the types NVML declares.
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return FailedPrecondition("failed to load " + library + ": " +
                              (why != nullptr ? why : "unknown error"));
  }
  auto api = std::make_unique<Api>();
  bool ok = Resolve(handle, "nvmlInit_v2", api->init) &&
            Resolve(handle, "nvmlShutdown", api->shutdown) &&
            Resolve(handle, "nvmlErrorString", api->error_string) &&
            Resolve(handle, "nvmlDeviceGetCount_v2", api->count) &&
            Resolve(handle, "nvmlDeviceGetHandleByIndex_v2", api->handle) &&
            Resolve(handle, "nvmlDeviceGetName", api->name) &&
            Resolve(handle, "nvmlDeviceGetUUID", api->uuid) &&
            Resolve(handle, "nvmlDeviceGetMemoryInfo", api->memory) &&
            Resolve(handle, "nvmlDeviceGetUtilizationRates", api->utilization) &&
            Resolve(handle, "nvmlDeviceGetMinorNumber", api->minor_number);
  if (!ok) {
    ::dlclose(handle);
    return FailedPrecondition("failed to resolve NVML entry points in " + library);
  }
  if (int rc = api->init(); rc != 0) {
    std::string why = api->Error("initialise", rc);
    ::dlclose(handle);
    return FailedPrecondition(why);
  }
  return std::unique_ptr<Nvml>(new Nvml(handle, std::move(api)));
}

StatusOr<std::vector<GpuDevice>> Nvml::Devices() const {
  unsigned int count = 0;
  if (int rc = api_->count(&count); rc != 0) return Internal(api_->Error("count devices", rc));
  std::vector<GpuDevice> out;
  for (unsigned int i = 0; i < count; ++i) {
    Api::Device dev = nullptr;
    if (int rc = api_->handle(i, &dev); rc != 0) {
      return Internal(api_->Error(("get device " + std::to_string(i)).c_str(), rc));
    }
    GpuDevice g;
    g.index = static_cast<int>(i);
    char text[128] = {};
    if (api_->name(dev, text, sizeof(text)) == 0) g.name = text;
    std::memset(text, 0, sizeof(text));
    if (api_->uuid(dev, text, sizeof(text)) == 0) g.uuid = text;
    Api::Memory mem{};
    if (api_->memory(dev, &mem) == 0) g.memory_bytes = static_cast<int64_t>(mem.total);
    unsigned int minor_number = i;
    if (int rc = api_->minor_number(dev, &minor_number); rc != 0) {
      return Internal(
          api_->Error(("read the minor number of device " + std::to_string(i)).c_str(), rc));
    }
    g.minor = static_cast<int>(minor_number);
    out.push_back(std::move(g));
  }
  return out;
}

GpuSample Nvml::Sample(int index) const {
  GpuSample s;
  Api::Device dev = nullptr;
  if (api_->handle(static_cast<unsigned int>(index), &dev) != 0) return s;
  Api::Memory mem{};
  if (api_->memory(dev, &mem) == 0) s.memory_used_bytes = static_cast<int64_t>(mem.used);
  Api::Utilization util{};
  if (api_->utilization(dev, &util) == 0) s.utilization_percent = util.gpu;
  return s;
}

StatusOr<std::vector<GpuDevice>> ParseStaticGpus(const std::string& text) {
  std::vector<GpuDevice> out;
  if (text.empty()) return out;
  auto error = [](const std::string& entry, const std::string& why) {
    return InvalidArgument("gpus: entry '" + entry + "': " + why +
                           " (expected index[:name[:memory_gb]], e.g. \"0,1\" or \"0:H200:141\")");
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string entry = text.substr(start, comma - start);
    start = comma + 1;
    std::vector<std::string> parts;
    for (size_t p = 0;;) {
      size_t colon = entry.find(':', p);
      parts.push_back(entry.substr(p, colon == std::string::npos ? std::string::npos : colon - p));
      if (colon == std::string::npos) break;
      p = colon + 1;
    }
    if (parts.size() > 3) return error(entry, "too many fields");
    auto number = [](const std::string& s, int64_t hi) -> int64_t {
      if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) {
        return -1;
      }
      int64_t v = std::stoll(s);
      return v <= hi ? v : -1;
    };
    GpuDevice g;
    const int64_t index = number(parts[0], 255);
    if (index < 0) return error(entry, "index must be 0-255");
    g.index = g.minor = static_cast<int>(index);
    g.name = parts.size() > 1 && !parts[1].empty() ? parts[1] : "static";
    if (parts.size() > 2) {
      const int64_t gb = number(parts[2], 65536);
      if (gb < 0) return error(entry, "memory_gb must be a whole number of GB");
      g.memory_bytes = gb << 30;
    }
    for (const GpuDevice& other : out) {
      if (other.index == g.index) return error(entry, "index given more than once");
    }
    out.push_back(std::move(g));
    if (comma == text.size()) break;
  }
  return out;
}

std::vector<std::string> GpuNodesToBind(const std::string& dev_dir,
                                        const std::vector<GpuDevice>& held) {
  std::vector<std::string> out;
  if (held.empty()) return out;
  for (const GpuDevice& g : held) out.push_back(dev_dir + "/nvidia" + std::to_string(g.minor));
  for (const char* shared : {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"}) {
    std::string path = dev_dir + "/" + shared;
    if (PathExists(path)) out.push_back(std::move(path));
  }
  return out;
}

std::vector<std::string> GpuNodesToDeny(const std::string& dev_dir,
                                        const std::vector<GpuDevice>& all,
                                        const std::vector<GpuDevice>& held) {
  std::vector<std::string> out;
  for (const GpuDevice& g : all) {
    bool mine = false;
    for (const GpuDevice& h : held) mine = mine || h.minor == g.minor;
    if (!mine) out.push_back(dev_dir + "/nvidia" + std::to_string(g.minor));
  }
  return out;
}

std::vector<std::string> GpuEnvironment(const std::vector<GpuDevice>& held) {
  std::string list;
  for (const GpuDevice& g : held) {
    if (!list.empty()) list += ",";
    list += g.uuid.empty() ? std::to_string(g.index) : g.uuid;
  }
  if (held.empty()) list = "void";  // NVIDIA's word for "no GPU"; CUDA then sees none either
  return {"CUDA_VISIBLE_DEVICES=" + (held.empty() ? std::string() : list),
          "NVIDIA_VISIBLE_DEVICES=" + list};
}

StatusOr<std::vector<DeviceNumber>> DeviceNumbersOf(const std::vector<std::string>& paths) {
  std::vector<DeviceNumber> out;
  for (const std::string& path : paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
      return FailedPrecondition("failed to read device number of " + path + ": not a device node");
    }
    out.push_back({S_ISCHR(st.st_mode) ? 'c' : 'b', major(st.st_rdev), minor(st.st_rdev)});
  }
  return out;
}

std::vector<std::string> DeviceDenyLines(const std::vector<DeviceNumber>& denied) {
  std::vector<std::string> out;
  for (const DeviceNumber& d : denied) {
    out.push_back(std::string(1, d.type) + " " + std::to_string(d.major) + ":" +
                  std::to_string(d.minor) + " rwm");
  }
  return out;
}

namespace {

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

int Bpf(int cmd, bpf_attr& attr) {
  // SAFETY: the attr union is zero-initialised by every caller and filled for `cmd` only.
  return static_cast<int>(::syscall(SYS_bpf, cmd, &attr, sizeof(attr)));
}

}  // namespace

StatusOr<UniqueFd> LoadDenyProgram(const std::vector<DeviceNumber>& denied) {
  // r1 points at struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}, where
  // access_type's low 16 bits are the device type (1 block, 2 char).
  constexpr uint8_t kLoadWord = BPF_LDX | BPF_MEM | BPF_W;
  constexpr uint8_t kJumpIfNotEqual = BPF_JMP | BPF_JNE | BPF_K;
  constexpr uint8_t kMoveImm = BPF_ALU64 | BPF_MOV | BPF_K;
  std::vector<bpf_insn> code = {
      Insn(kLoadWord, BPF_REG_2, BPF_REG_1, 0, 0),
      Insn(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff),
      Insn(kLoadWord, BPF_REG_3, BPF_REG_1, 4, 0),
      Insn(kLoadWord, BPF_REG_4, BPF_REG_1, 8, 0),
  };
  for (const DeviceNumber& d : denied) {
    const int32_t type = d.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
    code.push_back(Insn(kJumpIfNotEqual, BPF_REG_2, 0, 4, type));
    code.push_back(Insn(kJumpIfNotEqual, BPF_REG_3, 0, 3, static_cast<int32_t>(d.major)));
    code.push_back(Insn(kJumpIfNotEqual, BPF_REG_4, 0, 2, static_cast<int32_t>(d.minor)));
    code.push_back(Insn(kMoveImm, BPF_REG_0, 0, 0, 0));  // this device: refuse
    code.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  }
  code.push_back(Insn(kMoveImm, BPF_REG_0, 0, 0, 1));  // any other: allow
  code.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  static const char kLicense[] = "GPL";
  char log[4096] = {};
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = reinterpret_cast<uint64_t>(code.data());
  attr.insn_cnt = static_cast<uint32_t>(code.size());
  attr.license = reinterpret_cast<uint64_t>(kLicense);
  attr.log_buf = reinterpret_cast<uint64_t>(log);
  attr.log_size = sizeof(log);
  attr.log_level = 1;
  // SAFETY: BPF_PROG_LOAD copies the instructions; the kernel's verifier checks the program
  // (it only reads its context and returns) before any cgroup can run it.
  int fd = Bpf(BPF_PROG_LOAD, attr);
  if (fd < 0) {
    int err = errno;
    std::string why = std::strerror(err);
    if (log[0] != '\0') why += " (verifier: " + std::string(log, strnlen(log, sizeof(log))) + ")";
    return Internal("failed to load BPF device program on cgroup: " + why);
  }
  return UniqueFd(fd);
}

Status AttachDeviceProgram(int program_fd, const std::string& cgroup_dir) {
  UniqueFd dir(::open(cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return ErrnoStatus("open", cgroup_dir, errno);
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(dir.get());
  attr.attach_bpf_fd = static_cast<uint32_t>(program_fd);
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  // SAFETY: attaching holds a reference to the program in the cgroup, which outlives this
  // process's descriptor; it is freed with the cgroup.
  if (Bpf(BPF_PROG_ATTACH, attr) != 0) {
    return ErrnoStatus("attach BPF device program to", cgroup_dir, errno);
  }
  return Status::Ok();
}

}  // namespace thaw::sandbox

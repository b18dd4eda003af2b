#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "common/files.h"

namespace thaw::sandbox {
namespace {

Status WriteValue(const std::string& path, const std::string& value) {
  FILE* f = std::fopen(path.c_str(), "we");
  if (f == nullptr) return ErrnoStatus("open", path, errno);
  bool ok = std::fputs(value.c_str(), f) >= 0;
  ok = (std::fclose(f) == 0) && ok;  // cgroup files report errors on close
  if (!ok) return ErrnoStatus("write '" + value + "' to", path, errno);
  return Status::Ok();
}

// A cgroup file's leading integer (0 when unreadable): one read, no stream (thaw reads an
// instance's peak memory at its first answer, a hundred of them at once in a burst).
int64_t ReadInt(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[64];
  const ssize_t n = fd.valid() ? ::read(fd.get(), buf, sizeof(buf)) : -1;
  int64_t v = 0;
  if (n > 0) std::from_chars(buf, buf + n, v);
  return v;
}

// "key value" lines (memory.events, cpu.stat, memory.oom_control).
int64_t ReadKey(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string k;
  int64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("create cgroup", path, errno);
  }
  return Status::Ok();
}

Status KillAll(const std::string& procs_file) {
  // Two passes: a process forked between reading and killing is caught by the second.
  for (int pass = 0; pass < 2; ++pass) {
    std::ifstream in(procs_file);
    pid_t pid;
    while (in >> pid) ::kill(pid, SIGKILL);
  }
  return Status::Ok();
}

std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) out.push_back(e.path().filename().string());
  }
  return out;
}

class CgroupV1 final : public Cgroups {
 public:
  explicit CgroupV1(std::string root)
      : root_(std::move(root)), devices_(PathExists(root_ + "/devices/cgroup.procs")) {
    controllers_.assign(std::begin(kControllers), std::end(kControllers));
    if (devices_) controllers_.push_back("devices");
  }
  std::string Describe() const override {
    return devices_ ? "cgroup v1 (memory, cpu, cpuacct, pids, devices)"
                    : "cgroup v1 (memory, cpu, cpuacct, pids)";
  }

  std::string Dir(const char* controller, const std::string& name) const {
    return root_ + "/" + controller + "/thaw/" + name;
  }

  Status Create(const std::string& name, const CgroupLimits& l) override {
    for (const char* c : controllers_) {
      THAW_RETURN_IF_ERROR(MakeDir(root_ + "/" + c + "/thaw"));
      THAW_RETURN_IF_ERROR(MakeDir(Dir(c, name)));
    }
    return SetLimits(name, l);
  }

  Status SetLimits(const std::string& name, const CgroupLimits& l) override {
    const std::string mem = Dir("memory", name);
    // No swap beyond the limit, where the kernel accounts swap at all. memsw must never be
    // below the memory limit, so it moves first when raising and last when lowering.
    const std::string memsw = mem + "/memory.memsw.limit_in_bytes";
    const bool has_memsw = PathExists(memsw);
    if (has_memsw) (void)WriteValue(memsw, std::to_string(l.memory_bytes));
    THAW_RETURN_IF_ERROR(
        WriteValue(mem + "/memory.limit_in_bytes", std::to_string(l.memory_bytes)));
    if (has_memsw) (void)WriteValue(memsw, std::to_string(l.memory_bytes));
    THAW_RETURN_IF_ERROR(WriteValue(Dir("pids", name) + "/pids.max", std::to_string(l.pids_max)));
    int64_t shares = std::max<int64_t>(2, l.cpu_weight * 1024 / 100);
    THAW_RETURN_IF_ERROR(WriteValue(Dir("cpu", name) + "/cpu.shares", std::to_string(shares)));
    return Status::Ok();
  }

  std::vector<std::string> ProcsFiles(const std::string& name) const override {
    std::vector<std::string> files;
    for (const char* c : controllers_) files.push_back(Dir(c, name) + "/cgroup.procs");
    return files;
  }

  StatusOr<CgroupUsage> Usage(const std::string& name) const override {
    CgroupUsage u;
    const std::string mem = Dir("memory", name);
    if (!PathExists(mem)) return NotFound("no cgroup " + name);
    u.cpu_us = ReadInt(Dir("cpuacct", name) + "/cpuacct.usage") / 1000;
    u.peak_memory_bytes = ReadInt(mem + "/memory.max_usage_in_bytes");
    u.oom_kills = ReadKey(mem + "/memory.oom_control", "oom_kill");
    return u;
  }

  int64_t PeakMemoryBytes(const std::string& name) const override {
    return ReadInt(Dir("memory", name) + "/memory.max_usage_in_bytes");
  }

  std::string CpuFile(const std::string& name) const override {
    return Dir("cpuacct", name) + "/cpuacct.usage";
  }

  Status Kill(const std::string& name) override {
    return KillAll(Dir("pids", name) + "/cgroup.procs");
  }

  Status Remove(const std::string& name) override {
    Status result = Status::Ok();
    for (const char* c : controllers_) {
      std::string d = Dir(c, name);
      if (::rmdir(d.c_str()) != 0 && errno != ENOENT)
        result = ErrnoStatus("remove cgroup", d, errno);
    }
    return result;
  }

  std::vector<std::string> Names() const override {
    std::set<std::string> names;  // a cgroup may be left in some hierarchies and not others
    for (const char* c : controllers_) {
      for (auto& n : SubDirs(root_ + "/" + c + "/thaw")) names.insert(std::move(n));
    }
    return {names.begin(), names.end()};
  }

  Status DenyDevices(const std::string& name, const std::vector<DeviceNumber>& denied) override {
    if (!devices_) {
      return FailedPrecondition("failed to deny devices on cgroup " + name +
                                ": the v1 devices controller is not mounted at " + root_);
    }
    for (const std::string& line : DeviceDenyLines(denied)) {
      THAW_RETURN_IF_ERROR(WriteValue(Dir("devices", name) + "/devices.deny", line));
    }
    return Status::Ok();
  }

  static constexpr const char* kControllers[] = {"memory", "cpu", "cpuacct", "pids"};

 private:
  std::string root_;
  bool devices_;  // the devices hierarchy is mounted: instances get a cgroup there too
  std::vector<const char*> controllers_;
};

class CgroupV2 final : public Cgroups {
 public:
  explicit CgroupV2(std::string root) : root_(std::move(root)) {}
  std::string Describe() const override { return "cgroup v2 (memory, cpu, pids)"; }

  std::string Dir(const std::string& name) const { return root_ + "/thaw/" + name; }

  Status Create(const std::string& name, const CgroupLimits& l) override {
    const std::string parent = root_ + "/thaw";
    THAW_RETURN_IF_ERROR(MakeDir(parent));
    // Controllers must be enabled in the parent for the children to get their files.
    (void)WriteValue(root_ + "/cgroup.subtree_control", "+memory +cpu +pids");
    THAW_RETURN_IF_ERROR(WriteValue(parent + "/cgroup.subtree_control", "+memory +cpu +pids"));
    THAW_RETURN_IF_ERROR(MakeDir(Dir(name)));
    return SetLimits(name, l);
  }

  Status SetLimits(const std::string& name, const CgroupLimits& l) override {
    const std::string d = Dir(name);
    THAW_RETURN_IF_ERROR(WriteValue(d + "/memory.max", std::to_string(l.memory_bytes)));
    if (PathExists(d + "/memory.swap.max")) (void)WriteValue(d + "/memory.swap.max", "0");
    THAW_RETURN_IF_ERROR(WriteValue(d + "/pids.max", std::to_string(l.pids_max)));
    THAW_RETURN_IF_ERROR(WriteValue(d + "/cpu.weight", std::to_string(l.cpu_weight)));
    return Status::Ok();
  }

  std::vector<std::string> ProcsFiles(const std::string& name) const override {
    return {Dir(name) + "/cgroup.procs"};
  }

  StatusOr<CgroupUsage> Usage(const std::string& name) const override {
    const std::string d = Dir(name);
    if (!PathExists(d)) return NotFound("no cgroup " + name);
    CgroupUsage u;
    u.cpu_us = ReadKey(d + "/cpu.stat", "usage_usec");
    u.peak_memory_bytes = ReadInt(d + "/memory.peak");  // kernel 5.19+; else 0
    u.oom_kills = ReadKey(d + "/memory.events", "oom_kill");
    return u;
  }

  int64_t PeakMemoryBytes(const std::string& name) const override {
    return ReadInt(Dir(name) + "/memory.peak");  // kernel 5.19+; else 0
  }

  std::string CpuFile(const std::string& name) const override { return Dir(name) + "/cpu.stat"; }

  Status Kill(const std::string& name) override {
    const std::string d = Dir(name);
    if (PathExists(d + "/cgroup.kill")) return WriteValue(d + "/cgroup.kill", "1");
    return KillAll(d + "/cgroup.procs");
  }

  std::vector<std::string> Names() const override { return SubDirs(root_ + "/thaw"); }

  Status DenyDevices(const std::string& name, const std::vector<DeviceNumber>& denied) override {
    auto program = LoadDenyProgram(denied);
    if (!program.ok()) return program.status();
    return AttachDeviceProgram(program->get(), Dir(name));
  }

  Status Remove(const std::string& name) override {
    std::string d = Dir(name);
    if (::rmdir(d.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove cgroup", d, errno);
    return Status::Ok();
  }

 private:
  std::string root_;
};

}  // namespace

int64_t CpuWeightForMemory(int64_t memory_mb) {
  return std::clamp<int64_t>(memory_mb * 100 / 1769, 1, 10000);
}

StatusOr<std::unique_ptr<Cgroups>> Cgroups::Detect(const std::string& root) {
  if (::geteuid() != 0)
    return FailedPrecondition("cgroups need root (thaw runs as uid " + std::to_string(::geteuid()) +
                              ")");
  if (PathExists(root + "/cgroup.controllers")) {
    auto controllers = ReadFile(root + "/cgroup.controllers");
    std::string have = controllers.ok() ? *controllers : "";
    for (const char* c : {"memory", "cpu", "pids"}) {
      if (have.find(c) == std::string::npos) {
        return FailedPrecondition(std::string("cgroup v2 controller '") + c + "' is not available");
      }
    }
    return std::unique_ptr<Cgroups>(new CgroupV2(root));
  }
  for (const char* c : CgroupV1::kControllers) {
    if (!PathExists(root + "/" + c + "/cgroup.procs")) {
      return FailedPrecondition(std::string("cgroup v1 controller '") + c + "' is not mounted at " +
                                root + "/" + c);
    }
  }
  return std::unique_ptr<Cgroups>(new CgroupV1(root));
}

Status Cgroups::AddProcess(const std::string& name, pid_t pid) {
  for (const std::string& file : ProcsFiles(name)) {
    THAW_RETURN_IF_ERROR(WriteValue(file, std::to_string(pid)));
  }
  return Status::Ok();
}

StatusOr<CgroupProcs> CgroupProcs::Open(const Cgroups& cgroups, const std::string& name) {
  CgroupProcs procs;
  for (const std::string& file : cgroups.ProcsFiles(name)) {
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus("open", file, errno);
    procs.fds_.push_back(std::move(fd));
  }
  return procs;
}

Status CgroupProcs::Add(pid_t pid) const {
  const std::string text = std::to_string(pid);
  for (const UniqueFd& fd : fds_) {
    // Each write is a move: the kernel reports a refusal as the write's error.
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return ErrnoStatus("write '" + text + "' to", "cgroup.procs", errno);
    }
  }
  return Status::Ok();
}

CpuCounter CpuCounter::ForCgroupFile(const std::string& path) {
  CpuCounter c;
  c.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (c.fd_ >= 0) c.kind_ = path.ends_with("cpu.stat") ? Kind::kCpuStat : Kind::kCpuacctUsage;
  return c;
}

CpuCounter CpuCounter::ForProcess(pid_t pid) {
  CpuCounter c;
  c.fd_ = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (c.fd_ >= 0) c.kind_ = Kind::kProcStat;
  return c;
}

CpuCounter::CpuCounter(CpuCounter&& other) noexcept : kind_(other.kind_), fd_(other.fd_) {
  other.fd_ = -1;
  other.kind_ = Kind::kNone;
}

CpuCounter& CpuCounter::operator=(CpuCounter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    kind_ = other.kind_;
    other.fd_ = -1;
    other.kind_ = Kind::kNone;
  }
  return *this;
}

CpuCounter::~CpuCounter() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t CpuCounter::ReadMicros() const {
  if (fd_ < 0) return -1;
  char buf[1024];
  ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return -1;
  buf[n] = '\0';
  switch (kind_) {
    case Kind::kCpuacctUsage:
      return std::strtoll(buf, nullptr, 10) / 1000;
    case Kind::kCpuStat: {
      const char* p = std::strstr(buf, "usage_usec ");
      return p ? std::strtoll(p + 11, nullptr, 10) : -1;
    }
    case Kind::kProcStat: {
      // Fields after the ")" that closes the command name: state is 3rd, utime 14th, stime 15th.
      const char* p = std::strrchr(buf, ')');
      if (p == nullptr) return -1;
      long long utime = 0, stime = 0;
      if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime,
                      &stime) != 2) {
        return -1;
      }
      static const long kTicks = ::sysconf(_SC_CLK_TCK);
      return (utime + stime) * 1'000'000 / kTicks;
    }
    case Kind::kNone:
      break;
  }
  return -1;
}

}  // namespace thaw::sandbox

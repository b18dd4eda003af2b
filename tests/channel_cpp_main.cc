// A C++ function for channel_test.cc: reports what its invocation carried and which transport
// its process holds; fails, exits or answers too much when its event asks.
#include <dirent.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "thaw/runtime.h"

namespace {

using thaw::runtime::InvocationRequest;
using thaw::runtime::InvocationResponse;
using thaw::runtime::JsonEscape;

// The address families of the sockets this process holds, as "unix,inet"...
std::string SocketFamilies() {
  std::string out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return "?";
  while (dirent* e = ::readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == ::dirfd(dir)) continue;
    int domain = 0;
    socklen_t len = sizeof(domain);
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) continue;
    if (!out.empty()) out += ",";
    out += domain == AF_UNIX ? "unix" : domain == AF_INET ? "inet" : std::to_string(domain);
  }
  ::closedir(dir);
  return out;
}

// The CPUs this process may run on, as "0,1"...
std::string Cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return "?";
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (!out.empty()) out += ",";
    out += std::to_string(cpu);
  }
  return out;
}

bool Has(const std::string& event, const char* word) {
  return event.find(word) != std::string::npos;
}

}  // namespace

int main() {
  return thaw::runtime::Run([](const InvocationRequest& req) {
    if (Has(req.payload, "\"fail\"")) {
      return InvocationResponse::Failure("TestFailure", "asked to fail");
    }
    if (Has(req.payload, "\"exit\"")) std::exit(3);
    if (Has(req.payload, "\"big\"")) return InvocationResponse::Success(std::string(8192, 'x'));
    // Past the limit and the frame room beside it: skipped without being buffered whole.
    if (Has(req.payload, "\"huge\"")) {
      return InvocationResponse::Success(std::string(400 * 1024, 'y'));
    }
    return InvocationResponse::Success(
        "{\"request_id\":\"" + JsonEscape(req.request_id) +
        "\",\"remaining_ms\":" + std::to_string(req.RemainingMillis()) + ",\"arn\":\"" +
        JsonEscape(req.function_arn) + "\",\"trace_id\":\"" + JsonEscape(req.trace_id) +
        "\",\"client_context\":\"" + JsonEscape(req.client_context) +
        "\",\"pid\":" + std::to_string(::getpid()) + ",\"sockets\":\"" + SocketFamilies() +
        "\",\"cpus\":\"" + Cpus() + "\",\"payload\":\"" + JsonEscape(req.payload) + "\"}");
  });
}

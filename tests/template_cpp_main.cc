// A C++ function for template_test.cc: which process ran its init, who it is and what it draws.
// Its init starts a thread that never ends when its bundle holds a file named "threads" (a
// template must then refuse to fork). {"sleep": seconds} holds the call that long.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "thaw/runtime.h"

namespace {

using thaw::runtime::InvocationRequest;
using thaw::runtime::InvocationResponse;
using thaw::runtime::JsonEscape;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

double SleepSeconds(const std::string& event) {
  const size_t key = event.find("\"sleep\"");
  if (key == std::string::npos) return 0;
  return std::strtod(event.c_str() + event.find(':', key) + 1, nullptr);
}

}  // namespace

int main() {
  const pid_t init_pid = ::getpid();
  struct stat st;
  if (::stat((Env("LAMBDA_TASK_ROOT") + "/threads").c_str(), &st) == 0) {
    std::thread([] {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }).detach();
  }
  return thaw::runtime::Run([init_pid](const InvocationRequest& req) {
    if (const double s = SleepSeconds(req.payload); s > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(s));
    }
    return InvocationResponse::Success(
        "{\"pid\":" + std::to_string(::getpid()) + ",\"init_pid\":" + std::to_string(init_pid) +
        ",\"rand\":" + std::to_string(std::rand()) + ",\"stream\":\"" +
        JsonEscape(Env("AWS_LAMBDA_LOG_STREAM_NAME")) + "\",\"api\":\"" +
        JsonEscape(Env("AWS_LAMBDA_RUNTIME_API")) + "\",\"channel\":\"" +
        JsonEscape(Env("THAW_CHANNEL_FD")) + "\"}");
  });
}

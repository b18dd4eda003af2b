// hello-cpp: the smallest useful C++ function on thaw. Answers {"message":"hello, NAME"}.
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "thaw/runtime.h"

namespace {

// Pulls "name" out of a flat JSON object without a JSON library (keeps the binary tiny).
std::string NameFrom(const std::string& event) {
  auto key = event.find("\"name\"");
  if (key == std::string::npos) return "world";
  auto open = event.find('"', event.find(':', key) + 1);
  auto close = open == std::string::npos ? open : event.find('"', open + 1);
  if (close == std::string::npos) return "world";
  return event.substr(open + 1, close - open - 1);
}

// "sleep_ms": N holds the call that long (the burst benchmark needs calls that overlap).
int SleepMsFrom(const std::string& event) {
  auto key = event.find("\"sleep_ms\"");
  if (key == std::string::npos) return 0;
  return std::atoi(event.c_str() + event.find(':', key) + 1);
}

}  // namespace

int main() {
  return thaw::runtime::Run([](const thaw::runtime::InvocationRequest& req) {
    if (int ms = SleepMsFrom(req.payload); ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    return thaw::runtime::InvocationResponse::Success(
        "{\"message\":\"hello, " + thaw::runtime::JsonEscape(NameFrom(req.payload)) + "\"}");
  });
}

// hello-cpp: the smallest useful C++ function on thaw. Answers {"message":"hello, NAME"}.
#include <string>

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

}  // namespace

int main() {
  return thaw::runtime::Run([](const thaw::runtime::InvocationRequest& req) {
    return thaw::runtime::InvocationResponse::Success(
        "{\"message\":\"hello, " + thaw::runtime::JsonEscape(NameFrom(req.payload)) + "\"}");
  });
}

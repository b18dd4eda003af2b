// A C++ function that streams through the SDK's ResponseWriter, for streaming_test.cc: two
// server-sent events half a second apart (the second carries the wall time it was made at),
// then a failure when the event asks for one.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "thaw/runtime.h"

int main() {
  using thaw::runtime::InvocationResponse;
  return thaw::runtime::RunStreaming([](const thaw::runtime::InvocationRequest& req,
                                        thaw::runtime::ResponseWriter& out) {
    out.SetContentType("text/event-stream");
    out.Write("data: one\n\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    char event[64];
    std::snprintf(event, sizeof(event), "data: T=%.6f\n\n", now);
    out.Write(event);
    if (req.payload.find("fail") != std::string::npos) {
      return InvocationResponse::Failure("StreamError", "late failure");
    }
    return InvocationResponse::Success("");
  });
}

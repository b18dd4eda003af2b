// Cold-start benchmark: time from sending an invoke to the full response of a function that
// has no instance (scaled to zero between samples), against a running thaw server.
// Usage: coldstart SERVER KEY FUNCTION SAMPLES  -> prints p50/p99/min/max in ms.
#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli/http_client.h"

namespace {

bool ScaledToZero(const std::string& server, const std::string& key, const std::string& fn) {
  auto r = thaw::cli::HttpCall(server, "GET", "/v1/functions/" + fn, "",
                               {{"Authorization", "Bearer " + key}});
  if (!r.ok() || r->status != 200) return false;
  auto o = boost::json::parse(r->body).as_object();
  for (const auto& kv : o["instances"].as_object()) {
    if (kv.value().as_int64() != 0) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: coldstart SERVER KEY FUNCTION SAMPLES\n");
    return 2;
  }
  const std::string server = argv[1], key = argv[2], fn = argv[3];
  const int samples = std::atoi(argv[4]);
  std::vector<double> ms;
  for (int i = 0; i < samples; ++i) {
    // The function is deployed with idle_timeout_s: 0, so it scales to zero on the next tick.
    while (!ScaledToZero(server, key, fn))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto start = std::chrono::steady_clock::now();
    auto r = thaw::cli::HttpCall(server, "POST", "/v1/functions/" + fn + "/invoke", "{}",
                                 {{"Authorization", "Bearer " + key}});
    auto end = std::chrono::steady_clock::now();
    if (!r.ok() || r->status != 200 || r->Header("x-thaw-cold-start") != "true") {
      std::fprintf(stderr, "sample %d was not a successful cold start\n", i);
      return 1;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf("p50=%.2f p99=%.2f min=%.2f max=%.2f n=%zu\n", pct(0.5), pct(0.99), ms.front(),
              ms.back(), ms.size());
  return 0;
}

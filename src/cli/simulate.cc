// `thaw simulate`: reads the trace files, runs every standard policy, prints a table or JSON.
#include <boost/json.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/files.h"
#include "common/json_text.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace thaw::cli {
namespace {

int SimFail(const std::string& message) {
  std::fprintf(stderr, "thaw: %s\n", message.c_str());
  return 1;
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int CmdSimulate(const std::string& trace_path, const std::string& durations_path,
                const std::string& memory_path, bool json) {
  auto text = ReadFile(trace_path);
  if (!text.ok())
    return SimFail("cannot read --trace " + trace_path + ": " + text.status().message());
  auto trace = sim::ParseInvocations(*text, BaseName(trace_path));
  if (!trace.ok()) return SimFail(trace.status().message());
  if (!durations_path.empty()) {
    auto d = ReadFile(durations_path);
    if (!d.ok()) {
      return SimFail("cannot read --durations " + durations_path + ": " + d.status().message());
    }
    if (auto st = sim::ApplyDurations(*d, BaseName(durations_path), *trace); !st.ok()) {
      return SimFail(st.message());
    }
  }
  if (!memory_path.empty()) {
    auto m = ReadFile(memory_path);
    if (!m.ok())
      return SimFail("cannot read --memory " + memory_path + ": " + m.status().message());
    if (auto st = sim::ApplyMemory(*m, BaseName(memory_path), *trace); !st.ok()) {
      return SimFail(st.message());
    }
  }
  std::vector<sim::PolicyResult> results;
  for (const sim::PolicySpec& policy : sim::StandardPolicies()) {
    results.push_back(sim::Simulate(*trace, policy));
  }
  if (json) {
    boost::json::array policies;
    for (const sim::PolicyResult& r : results) {
      policies.push_back(boost::json::object{
          {"name", r.name},
          {"invocations", r.invocations},
          {"cold_starts", r.cold_starts},
          {"fork_starts", r.fork_starts},
          {"cold_start_pct", r.cold_start_pct},
          {"p75_function_cold_start_pct", r.p75_function_cold_start_pct},
          {"wasted_gb_s", r.wasted_gb_s},
      });
    }
    std::cout << JsonText(boost::json::object{{"functions", trace->functions.size()},
                                              {"minutes", trace->minutes},
                                              {"policies", std::move(policies)}})
              << "\n";
    return 0;
  }
  std::printf("%zu functions, %lld minutes\n", trace->functions.size(),
              static_cast<long long>(trace->minutes));
  std::printf("%-20s %12s %12s %8s %14s %12s %14s\n", "policy", "invocations", "cold starts",
              "cold %", "p75 fn cold %", "fork starts", "wasted GB-s");
  for (const sim::PolicyResult& r : results) {
    std::printf("%-20s %12lld %12lld %8.3f %14.2f %12lld %14.1f\n", r.name.c_str(),
                static_cast<long long>(r.invocations), static_cast<long long>(r.cold_starts),
                r.cold_start_pct, r.p75_function_cold_start_pct,
                static_cast<long long>(r.fork_starts), r.wasted_gb_s);
  }
  return 0;
}

}  // namespace thaw::cli

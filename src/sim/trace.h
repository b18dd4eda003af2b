// Traces in the format of the Azure Functions 2019 public dataset (Shahrad et al., ATC'20):
// invocations per function per minute, average durations per function, memory per app. Pure
// parsing: text in, a Trace or an error naming the file, line and column out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace thaw::sim {

// Without a durations or memory file (or a row for the function in it), these are assumed.
inline constexpr double kDefaultDurationMs = 1000;
inline constexpr double kDefaultMemoryMb = 128;  // thaw.yaml's default memory_mb

struct FunctionTrace {
  std::string owner, app, function, trigger;
  std::vector<int64_t> per_minute;  // invocations in each minute of the day
  double duration_ms = kDefaultDurationMs;
  double memory_mb = kDefaultMemoryMb;
};

struct Trace {
  std::vector<FunctionTrace> functions;
  int64_t minutes = 0;  // columns 1..minutes of the invocations file
};

// `HashOwner,HashApp,HashFunction,Trigger,1,2,...,N`, then one row per function. `name` is
// the file's name, for errors ("invocations.csv line 7: ...").
StatusOr<Trace> ParseInvocations(std::string_view text, const std::string& name);
// `HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,...`:
// sets each traced function's duration_ms to its Average. Other columns are not read.
Status ApplyDurations(std::string_view text, const std::string& name, Trace& trace);
// `HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,...`: sets the
// memory_mb of every traced function of each app to the app's AverageAllocatedMb.
Status ApplyMemory(std::string_view text, const std::string& name, Trace& trace);

}  // namespace thaw::sim

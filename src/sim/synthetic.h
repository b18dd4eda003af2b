// Synthetic days of traffic in the Azure Functions 2019 dataset's formats (trace.h), for tests
// and `make bench`: periodic timers, bursty HTTP functions and rare ones, from a seed. Pure and
// deterministic: the same options give the same bytes on every machine.
#pragma once

#include <cstdint>
#include <string>

namespace thaw::sim {

struct SyntheticOptions {
  int64_t functions = 500;
  int64_t minutes = 1440;
  uint64_t seed = 1;
};

struct SyntheticFiles {
  std::string invocations;  // HashOwner,HashApp,HashFunction,Trigger,1,...,minutes
  std::string durations;    // HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,...
  std::string memory;       // HashOwner,HashApp,SampleCount,AverageAllocatedMb,...
};

// Functions i % 10 in {0,1,2}: timers (every 1-120 minutes, sometimes a minute late); 3-6:
// HTTP (Poisson, 0.02-30 calls a minute, a day-night swing, 5% of minutes in 10x bursts);
// 7-9: rare (1-6 calls a day at random minutes). One app per function.
SyntheticFiles MakeSyntheticDay(const SyntheticOptions& options);

}  // namespace thaw::sim

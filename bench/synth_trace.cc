// synth_trace DIR [FUNCTIONS] [SEED]: writes a synthetic day (src/sim/synthetic.h) as
// DIR/invocations.csv, DIR/durations.csv and DIR/memory.csv, for `thaw simulate` in make bench.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/files.h"
#include "sim/synthetic.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: synth_trace DIR [FUNCTIONS] [SEED]\n");
    return 2;
  }
  const std::string dir = argv[1];
  thaw::sim::SyntheticOptions options;
  if (argc > 2) options.functions = std::atoll(argv[2]);
  if (argc > 3) options.seed = std::strtoull(argv[3], nullptr, 10);
  if (options.functions < 1) {
    std::fprintf(stderr, "synth_trace: FUNCTIONS must be at least 1\n");
    return 2;
  }
  const thaw::sim::SyntheticFiles files = thaw::sim::MakeSyntheticDay(options);
  for (const auto& [name, text] :
       {std::pair<const char*, const std::string*>{"invocations.csv", &files.invocations},
        {"durations.csv", &files.durations},
        {"memory.csv", &files.memory}}) {
    if (auto st = thaw::WriteFileAtomic(dir + "/" + name, *text); !st.ok()) {
      std::fprintf(stderr, "synth_trace: %s\n", st.message().c_str());
      return 1;
    }
  }
  return 0;
}

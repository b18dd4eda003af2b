#include "sim/synthetic.h"

#include <cmath>
#include <cstdio>
#include <vector>

namespace thaw::sim {
namespace {

// splitmix64: tiny, and defined here rather than by a standard library's distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  int64_t Below(int64_t n) { return static_cast<int64_t>(Next() % static_cast<uint64_t>(n)); }
  double LogUniform(double lo, double hi) {
    return std::exp(std::log(lo) + Uniform() * (std::log(hi) - std::log(lo)));
  }
  int64_t Poisson(double mean) {
    if (mean <= 0) return 0;
    if (mean < 30) {
      const double limit = std::exp(-mean);
      int64_t k = 0;
      for (double p = Uniform(); p > limit; p *= Uniform()) ++k;
      return k;
    }
    // Normal approximation (Box-Muller) for large means.
    const double u1 = std::max(Uniform(), 1e-12), u2 = Uniform();
    const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    return std::max<int64_t>(0, std::llround(mean + std::sqrt(mean) * z));
  }

 private:
  uint64_t state_;
};

std::string Hash(const char* kind, int64_t i) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s%06lld", kind, static_cast<long long>(i));
  return buf;
}

}  // namespace

SyntheticFiles MakeSyntheticDay(const SyntheticOptions& o) {
  Rng rng(o.seed);
  SyntheticFiles files;
  files.invocations = "HashOwner,HashApp,HashFunction,Trigger";
  for (int64_t m = 1; m <= o.minutes; ++m) files.invocations += "," + std::to_string(m);
  files.invocations += "\n";
  files.durations =
      "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
      "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
      "percentile_Average_99,percentile_Average_100\n";
  files.memory =
      "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,"
      "AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,"
      "AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,"
      "AverageAllocatedMb_pct100\n";
  const int64_t kPeriods[] = {1, 2, 5, 10, 15, 30, 60, 120};
  for (int64_t i = 0; i < o.functions; ++i) {
    std::vector<int64_t> calls(o.minutes, 0);
    const int64_t kind = i % 10;
    const char* trigger = "http";
    double duration_ms = rng.LogUniform(20, 3000);
    if (kind <= 2) {
      trigger = "timer";
      const int64_t period = kPeriods[rng.Below(8)];
      for (int64_t m = rng.Below(period); m < o.minutes; m += period) {
        const int64_t at = rng.Uniform() < 0.1 ? m + 1 : m;  // a late tick now and then
        if (at < o.minutes) ++calls[at];
      }
    } else if (kind <= 6) {
      const double rate = rng.LogUniform(0.02, 30);
      bool burst = false;
      for (int64_t m = 0; m < o.minutes; ++m) {
        // Busier by day than by night; bursts come and go (5% of minutes on average).
        const double swing = 1 + 0.8 * std::sin(2 * M_PI * static_cast<double>(m) / 1440.0);
        burst = burst ? rng.Uniform() < 0.7 : rng.Uniform() < 0.0158;
        calls[m] = rng.Poisson(rate * swing * (burst ? 10 : 1));
      }
    } else {
      trigger = "queue";
      const int64_t n = 1 + rng.Below(6);
      for (int64_t k = 0; k < n; ++k) ++calls[rng.Below(o.minutes)];
    }
    const std::string owner = Hash("owner", i), app = Hash("app", i), fn = Hash("fn", i);
    files.invocations += owner + "," + app + "," + fn + "," + trigger;
    int64_t total = 0;
    for (int64_t c : calls) {
      files.invocations += "," + std::to_string(c);
      total += c;
    }
    files.invocations += "\n";
    char row[256];
    std::snprintf(row, sizeof(row), "%s,%s,%s,%.1f,%lld,%.1f,%.1f,0,0,0,0,0,0,0\n", owner.c_str(),
                  app.c_str(), fn.c_str(), duration_ms, static_cast<long long>(total),
                  duration_ms / 2, duration_ms * 2);
    files.durations += row;
    const double memory_mb = std::round(rng.LogUniform(100, 1024));
    std::snprintf(row, sizeof(row), "%s,%s,1440,%.0f,0,0,0,0,0,0,0,0\n", owner.c_str(), app.c_str(),
                  memory_mb);
    files.memory += row;
  }
  return files;
}

}  // namespace thaw::sim

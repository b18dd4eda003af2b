#include "meter/cost.h"

#include <algorithm>
#include <climits>
#include <ctime>
#include <map>

namespace thaw::meter {
namespace {

using Int128 = __int128;

constexpr int64_t kMbPerGb = 1024;
constexpr int64_t kMsPerS = 1000;
constexpr int64_t kUsPerS = 1'000'000;
constexpr int64_t kPicoPerMicro = 1'000'000;

// Rounds num/den (both non-negative, den > 0) half up to an integer.
int64_t RoundHalfUp(Int128 num, Int128 den) {
  return static_cast<int64_t>((num * 2 + den) / (den * 2));
}

// Saturates: the token counts are what a function said, not what thaw measured.
int64_t TokensPico(int64_t prompt_tokens, int64_t completion_tokens, const PriceSheet& p) {
  const Int128 pico = Int128{prompt_tokens} * p.prompt_token_pico +
                      Int128{completion_tokens} * p.completion_token_pico;
  return pico > INT64_MAX ? INT64_MAX : static_cast<int64_t>(pico);
}

// The tokens' price over the common denominator pico x (MB/GB) x (us/s).
Int128 TokensTerm(const Sums& s, const PriceSheet& p) {
  return (Int128{s.prompt_tokens} * p.prompt_token_pico +
          Int128{s.completion_tokens} * p.completion_token_pico) *
         kMbPerGb * kUsPerS;
}

}  // namespace

int64_t BilledRequests(const Sums& s) { return s.invocations - s.throttled; }

int64_t LambdaCostPico(const Sample& s, const PriceSheet& p) {
  if (s.status == "throttled") return 0;
  const int64_t tokens = TokensPico(s.prompt_tokens, s.completion_tokens, p);
  if (s.status == "usage") return tokens;
  const int64_t gpu = static_cast<int64_t>(Int128{s.gpu_us} * p.gpu_second_pico / kUsPerS);
  if (s.status == "gpu_idle") return gpu;
  if (s.status == "template_init") {
    return static_cast<int64_t>(Int128{s.billed_ms} * s.memory_mb * p.init_gb_second_pico /
                                (kMbPerGb * kMsPerS));
  }
  return (s.status == "init_error" ? 0 : p.request_pico) +
         static_cast<int64_t>(Int128{s.billed_ms} * s.memory_mb * p.gb_second_pico /
                              (kMbPerGb * kMsPerS)) +
         gpu + tokens;
}

double MeanBatchSize(const Sums& s) {
  return s.batches > 0 ? static_cast<double>(s.batched_calls) / s.batches : 0.0;
}

void AddSample(const Sample& s, Sums& sums) {
  if (s.status == "gpu_idle") {  // GPUs held between invocations: billed, not an invocation
    sums.gpu_us += s.gpu_us;
    sums.gpu_idle_us += s.gpu_us;
    return;
  }
  if (s.status == "template_init") {  // billed at the init price; not an invocation
    ++sums.template_inits;
    sums.init_mb_ms += s.billed_ms * s.memory_mb;
    return;
  }
  if (s.status == "init_error") {  // billed and its CPU counted; not an invocation
    ++sums.init_failures;
    sums.billed_ms += s.billed_ms;
    sums.billed_mb_ms += s.billed_ms * s.memory_mb;
    sums.cpu_us += s.cpu_us;
    return;
  }
  ++sums.invocations;
  if (s.status == "success") {
    ++sums.success;
  } else if (s.status == "error") {
    ++sums.error;
  } else if (s.status == "timeout") {
    ++sums.timeout;
  } else if (s.status == "crash") {
    ++sums.crash;
  } else if (s.status == "throttled") {
    ++sums.throttled;
  }
  if (s.batch_size > 0) {
    ++sums.batched_calls;
    sums.batches += 1.0 / static_cast<double>(s.batch_size);
  }
  sums.cold_starts += s.cold_start ? 1 : 0;
  sums.fork_starts += s.cold_start && s.forked ? 1 : 0;
  sums.restore_starts += s.cold_start && s.restored ? 1 : 0;
  sums.billed_ms += s.billed_ms;
  sums.billed_mb_ms += s.billed_ms * s.memory_mb;
  sums.cpu_us += s.cpu_us;
  sums.gpu_us += s.gpu_us;
  sums.peak_mb_us += s.duration_us * s.max_memory_used_mb;
  sums.duration_us += s.duration_us;
  sums.prompt_tokens += s.prompt_tokens;
  sums.completion_tokens += s.completion_tokens;
}

int64_t Percentile(const std::vector<int64_t>& sorted, int p) {
  if (sorted.empty()) return 0;
  const int64_t n = static_cast<int64_t>(sorted.size());
  int64_t rank = (static_cast<int64_t>(p) * n + 99) / 100;  // ceil(p/100 x n)
  rank = std::clamp<int64_t>(rank, 1, n);
  return sorted[static_cast<size_t>(rank - 1)];
}

std::string UtcDay(int64_t wall_us) {
  time_t secs = static_cast<time_t>(wall_us / kUsPerS);
  tm t;
  gmtime_r(&secs, &t);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &t);
  return buf;
}

std::vector<Group> Aggregate(const std::vector<Sample>& samples, GroupBy by) {
  std::map<std::string, std::pair<Sums, std::vector<int64_t>>> groups;
  for (const Sample& s : samples) {
    auto& [sums, durations] = groups[by == GroupBy::kFunction ? s.function : UtcDay(s.start_us)];
    AddSample(s, sums);
    if (s.status != "init_error" && s.status != "gpu_idle") durations.push_back(s.duration_us);
  }
  std::vector<Group> out;
  for (auto& [key, g] : groups) {
    std::sort(g.second.begin(), g.second.end());
    out.push_back(Group{key, g.first, Percentile(g.second, 50), Percentile(g.second, 99)});
  }
  return out;
}

int64_t LambdaCostMicro(const Sums& s, const PriceSheet& p) {
  // Everything over the common denominator pico x (MB/GB) x (us/s).
  const Int128 den = Int128{kPicoPerMicro} * kMbPerGb * kUsPerS;
  Int128 num = Int128{BilledRequests(s)} * p.request_pico * kMbPerGb * kUsPerS +
               Int128{s.billed_mb_ms} * p.gb_second_pico * (kUsPerS / kMsPerS) +
               Int128{s.init_mb_ms} * p.init_gb_second_pico * (kUsPerS / kMsPerS) +
               Int128{s.gpu_us} * p.gpu_second_pico * kMbPerGb + TokensTerm(s, p);
  return RoundHalfUp(num, den);
}

int64_t ActualCostMicro(const Sums& s, const PriceSheet& p) {
  const Int128 den = Int128{kPicoPerMicro} * kMbPerGb * kUsPerS;
  Int128 num = Int128{BilledRequests(s)} * p.request_pico * kMbPerGb * kUsPerS +
               Int128{s.cpu_us} * p.cpu_second_pico * kMbPerGb +
               Int128{s.peak_mb_us} * p.peak_gb_second_pico +
               Int128{s.gpu_us} * p.gpu_second_pico * kMbPerGb + TokensTerm(s, p);
  return RoundHalfUp(num, den);
}

std::string FormatDollars(int64_t micro) {
  std::string sign = micro < 0 ? "-" : "";
  uint64_t m = micro < 0 ? -static_cast<uint64_t>(micro) : static_cast<uint64_t>(micro);
  std::string frac = std::to_string(m % 1'000'000);
  frac.insert(0, 6 - frac.size(), '0');
  return sign + "$" + std::to_string(m / 1'000'000) + "." + frac;
}

}  // namespace thaw::meter

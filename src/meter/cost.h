// Cost: usage aggregation and pricing over meter records. Pure functions of records and prices;
// money is integer micro-dollars, computed from integer sums (billed_ms x memory_mb, cpu_us,
// duration_us x max_memory_used_mb) and rounded once, half up, at the end of each total.
// Thread-compatible: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace thaw::meter {

// Prices in exact integers. A price per million requests in micro-dollars is the same number
// as a price per request in pico-dollars (1e-12 $), so per-request and per-second prices are
// all pico-dollars and the totals share one denominator.
struct PriceSheet {
  int64_t request_pico = 200'000;           // $0.20 per million requests (AWS Lambda x86)
  int64_t gb_second_pico = 16'666'700;      // $0.0000166667 per GB-s (AWS Lambda x86)
  int64_t cpu_second_pico = 24'000'000;     // $0.000024 per CPU-s (actual-use sheet)
  int64_t peak_gb_second_pico = 2'500'000;  // $0.0000025 per peak GB-s (actual-use sheet)
  int64_t instance_hour_micro = 20'800;     // $0.0208 per always-on instance hour (advisor)
  // Per second of one GPU held, on both sheets and in the advisor. An assumption: Modal's
  // published H100 rate ($0.001097/s, Dec 2025); thaw's operator sets their own.
  int64_t gpu_second_pico = 1'097'000'000;
  // Per token an OpenAI-style function reported (prompt and completion), on both sheets: a
  // price per million tokens in micro-dollars is this number. None by default: a self-hosted
  // model's tokens are already paid for in GB-s; an operator reselling a model sets them.
  int64_t prompt_token_pico = 0;
  int64_t completion_token_pico = 0;
  // Per GB-second of template init (init_gb_s), as Lambda bills the INIT phase; 0: free.
  int64_t init_gb_second_pico = 16'666'700;
};

// The columns of one invocation record that usage and cost need.
struct Sample {
  std::string function;
  int64_t start_us = 0;  // wall clock
  int64_t duration_us = 0;
  int64_t billed_ms = 0;
  int64_t memory_mb = 0;
  int64_t max_memory_used_mb = 0;
  int64_t cpu_us = 0;
  int64_t gpu_us = 0;
  bool cold_start = false;
  bool forked = false;    // a cold start forked from a template
  bool restored = false;  // a cold start restored from a snapshot
  // success | error | timeout | crash | throttled | init_error | gpu_idle (the GPU time an
  // instance held its GPUs outside invocations, recorded when it goes; not an invocation)
  std::string status;
  std::string tenant;
  int64_t prompt_tokens = 0;  // reported by OpenAI-style functions (gateway/openai_api.h)
  int64_t completion_tokens = 0;
  int64_t batch_size = 0;  // the batch the call ran in; 0: not batched
};

// Integer sums over a set of samples; every money figure is derived from these.
struct Sums {
  int64_t invocations = 0;
  int64_t success = 0, error = 0, timeout = 0, crash = 0, throttled = 0;
  // Instances whose init failed ("init_error" records): not invocations, but their init time
  // is billed (as Lambda bills the INIT phase) and their CPU counted.
  int64_t init_failures = 0;
  int64_t cold_starts = 0;
  int64_t fork_starts = 0;     // the cold starts forked from a template
  int64_t restore_starts = 0;  // restored from a snapshot; the rest were full
  // Template inits ("template_init" records): not invocations; billed as init_gb_s.
  int64_t template_inits = 0;
  int64_t init_mb_ms = 0;  // sum of their billed_ms x memory_mb
  int64_t billed_ms = 0;
  int64_t billed_mb_ms = 0;  // sum of billed_ms x memory_mb
  int64_t cpu_us = 0;
  int64_t gpu_us = 0;       // GPU-microseconds billed: invocations' and idle-but-held
  int64_t gpu_idle_us = 0;  // the idle-but-held part of gpu_us
  int64_t peak_mb_us = 0;   // sum of duration_us x max_memory_used_mb
  int64_t duration_us = 0;
  int64_t prompt_tokens = 0;  // tokens OpenAI-style functions reported
  int64_t completion_tokens = 0;
  // Batched calls, and the batches they ran in: a call of a batch of n counts 1/n of its batch,
  // so batched_calls / batches is the mean batch size.
  int64_t batched_calls = 0;
  double batches = 0;
};

// Calls per batch, on average, over the batched calls of `s` (0: none was batched).
double MeanBatchSize(const Sums& s);

struct Group {
  std::string key;  // function name, or YYYY-MM-DD (UTC) of start_us
  Sums sums;
  int64_t p50_duration_us = 0;  // nearest rank over the group's durations
  int64_t p99_duration_us = 0;
  int64_t max_memory_mb = 0;  // the largest configured memory seen (Meter::Totals only)
};

// kTenant and kAll: Meter::Totals only (Aggregate groups by function or day).
enum class GroupBy { kFunction, kDay, kTenant, kAll };

void AddSample(const Sample& s, Sums& sums);
// Groups ordered by key.
std::vector<Group> Aggregate(const std::vector<Sample>& samples, GroupBy by);
// Nearest-rank percentile (p in 1..100) of `sorted` (ascending); 0 when empty.
int64_t Percentile(const std::vector<int64_t>& sorted, int p);
std::string UtcDay(int64_t wall_us);

// Requests that are billed: all but the throttled (refused calls cost nothing, as on Lambda).
int64_t BilledRequests(const Sums& s);
// Lambda sheet: billed requests x request price + billed GB-s x GB-s price (GB = 1024 MB)
// + GPU-s x GPU price + template init GB-s x init price + tokens x token prices.
int64_t LambdaCostMicro(const Sums& s, const PriceSheet& p);
// One invocation on the Lambda sheet in pico-dollars (truncated), for running totals such as
// a tenant's month-to-date spend. A usage sample (status "usage", meter::kUsageStatus: the
// tokens reported after the invocation's own record) costs its tokens only.
int64_t LambdaCostPico(const Sample& s, const PriceSheet& p);
// Actual-use sheet: billed requests x request price + CPU-s x CPU price + peak GB-s x peak price,
// where peak GB-s is the peak memory actually used x the real (unrounded) duration; + GPU-s x
// GPU price (a GPU held is used, whatever its utilisation) + tokens x token prices.
int64_t ActualCostMicro(const Sums& s, const PriceSheet& p);
// "$1.234567": micro-dollars, exact.
std::string FormatDollars(int64_t micro);

}  // namespace thaw::meter

// Metrics: Prometheus counters and histograms for invocations, recorded on the hot path with
// atomics only (each pool holds its function's FunctionMetrics), and rendered in the text
// exposition format for GET /metrics. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

namespace thaw::metrics {

// Bucket upper bounds in seconds, shared by the duration histograms.
inline constexpr std::array<double, 14> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

class Histogram {
 public:
  void Observe(int64_t micros);
  // Appends the _bucket/_sum/_count lines for `name` with `labels` ("function=\"x\"").
  void Render(const std::string& name, const std::string& labels, std::string& out) const;

 private:
  std::array<std::atomic<uint64_t>, kBuckets.size()> buckets_{};  // non-cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> sum_us_{0};
};

// Bucket upper bounds of the batch-size histogram (calls per batch).
inline constexpr std::array<int64_t, 11> kBatchBuckets = {1,  2,   4,   8,   16,  32,
                                                          64, 128, 256, 512, 1024};

inline constexpr std::array<const char*, 5> kStatuses = {"success", "error", "timeout", "crash",
                                                         "throttled"};

struct FunctionMetrics {
  std::array<std::atomic<uint64_t>, kStatuses.size()> invocations{};
  std::atomic<uint64_t> cold_starts{0};
  std::atomic<uint64_t> fork_starts{0};     // the cold starts forked from a template
  std::atomic<uint64_t> restore_starts{0};  // restored from a snapshot (nodejs templates)
  std::atomic<uint64_t> init_failures{0};
  Histogram duration;
  Histogram init_duration;
  // Batched functions (`batch:`): calls per batch handed to an instance.
  std::array<std::atomic<uint64_t>, kBatchBuckets.size()> batch_sizes{};  // non-cumulative
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> batched_calls{0};

  // `status` is one of kStatuses.
  void Record(const std::string& status, int64_t duration_us, bool cold_start, int64_t init_us);
  void RecordBatch(int64_t size);
};

// Point-in-time values read at scrape time (instances, queues, meter lag).
struct Gauges {
  std::map<std::pair<std::string, std::string>, int64_t> instances;  // (function, state)
  std::map<std::string, int64_t> queued;                             // function
  std::map<std::string, int64_t> failing;  // function: init failures in a row (0: healthy)
  int64_t meter_pending = 0;
  // The durable Event queue: events waiting or running, and the age of the oldest, by function.
  std::map<std::string, int64_t> events_queued;
  std::map<std::string, double> events_oldest_age_s;
  // Function log lines that never reached their file, since start (logs::DroppedLines).
  int64_t log_lines_dropped_queue_full = 0;
  int64_t log_lines_dropped_write_failed = 0;
  struct Gpu {
    int index = 0;
    std::string name, holder;        // holder empty: free
    int64_t memory_used_bytes = -1;  // -1: unknown (no NVML)
    int64_t utilization_percent = -1;
  };
  std::vector<Gpu> gpus;
};

class Registry {
 public:
  // Stable for the registry's life: pools keep the pointer.
  FunctionMetrics* For(const std::string& function);
  // Every series of Render carries node="NAME" when `name` is not empty (a node of a cluster,
  // so that one Prometheus scraping every node can tell them apart).
  void SetNode(std::string name);
  std::string Render(const Gauges& gauges) const;

 private:
  std::string RenderSeries(const Gauges& gauges) const;  // mu_ held (shared)

  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<FunctionMetrics>> functions_;
  std::string node_;  // guarded by mu_
};

// `text` (the text exposition format) with `name="value"` as the first label of every sample
// line (comments and blank lines are kept as they are). The label must not be there already.
std::string WithLabel(const std::string& text, const std::string& name, const std::string& value);

// Escapes a label value for the text format (backslash, quote, newline).
std::string EscapeLabel(const std::string& value);

}  // namespace thaw::metrics

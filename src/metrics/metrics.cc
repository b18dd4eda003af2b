#include "metrics/metrics.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string_view>

namespace thaw::metrics {
namespace {

std::string FormatSeconds(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", seconds);
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " ";
  out += type;
  out += "\n";
}

}  // namespace

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string WithLabel(const std::string& text, const std::string& name, const std::string& value) {
  const std::string label = name + "=\"" + EscapeLabel(value) + "\"";
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end + 1;
    const std::string_view line(text.data() + start, end - start);
    start = end;
    const size_t name_end = line.find_first_of("{ \t\n");
    if (line.empty() || line[0] == '#' || line[0] == '\n' || name_end == std::string_view::npos ||
        name_end == 0) {
      out += line;
      continue;
    }
    out += line.substr(0, name_end);
    if (line[name_end] != '{') {
      out += "{" + label + "}";
      out += line.substr(name_end);
      continue;
    }
    const std::string_view rest = line.substr(name_end + 1);
    out += "{" + label + (rest.starts_with('}') ? "" : ",");
    out += rest;
  }
  return out;
}

void Histogram::Observe(int64_t micros) {
  const double seconds = static_cast<double>(micros) / 1e6;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(micros, std::memory_order_relaxed);
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string& out) const {
  uint64_t cumulative = 0;
  const uint64_t count = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out += name + "_bucket{" + labels + ",le=\"" + FormatSeconds(kBuckets[i]) + "\"} " +
           std::to_string(std::min(cumulative, count)) + "\n";
  }
  out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(count) + "\n";
  out += name + "_sum{" + labels + "} " +
         FormatSeconds(static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(count) + "\n";
}

void FunctionMetrics::Record(const std::string& status, int64_t duration_us, bool cold_start,
                             int64_t init_us) {
  for (size_t i = 0; i < kStatuses.size(); ++i) {
    if (status == kStatuses[i]) invocations[i].fetch_add(1, std::memory_order_relaxed);
  }
  if (status == "throttled") return;  // never ran: no duration
  duration.Observe(duration_us);
  if (cold_start) {
    cold_starts.fetch_add(1, std::memory_order_relaxed);
    init_duration.Observe(init_us);
  }
}

void FunctionMetrics::RecordBatch(int64_t size) {
  for (size_t i = 0; i < kBatchBuckets.size(); ++i) {
    if (size <= kBatchBuckets[i]) {
      batch_sizes[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  batches.fetch_add(1, std::memory_order_relaxed);
  batched_calls.fetch_add(static_cast<uint64_t>(size), std::memory_order_relaxed);
}

FunctionMetrics* Registry::For(const std::string& function) {
  {
    std::shared_lock lock(mu_);
    auto it = functions_.find(function);
    if (it != functions_.end()) return it->second.get();
  }
  std::unique_lock lock(mu_);
  auto& slot = functions_[function];
  if (!slot) slot = std::make_unique<FunctionMetrics>();
  return slot.get();
}

void Registry::SetNode(std::string name) {
  std::unique_lock lock(mu_);
  node_ = std::move(name);
}

std::string Registry::Render(const Gauges& gauges) const {
  std::shared_lock lock(mu_);
  std::string out = RenderSeries(gauges);
  return node_.empty() ? out : WithLabel(out, "node", node_);
}

std::string Registry::RenderSeries(const Gauges& gauges) const {
  std::string out;
  Header(out, "thaw_invocations_total", "counter", "Invocations by function and final status.");
  for (const auto& [fn, m] : functions_) {
    for (size_t i = 0; i < kStatuses.size(); ++i) {
      out += "thaw_invocations_total{function=\"" + EscapeLabel(fn) + "\",status=\"" +
             kStatuses[i] + "\"} " +
             std::to_string(m->invocations[i].load(std::memory_order_relaxed)) + "\n";
    }
  }
  Header(out, "thaw_throttles_total", "counter", "Invocations refused with 429.");
  for (const auto& [fn, m] : functions_) {
    out += "thaw_throttles_total{function=\"" + EscapeLabel(fn) + "\"} " +
           std::to_string(m->invocations[4].load(std::memory_order_relaxed)) + "\n";
  }
  Header(out, "thaw_cold_starts_total", "counter", "Invocations that started a new instance.");
  for (const auto& [fn, m] : functions_) {
    out += "thaw_cold_starts_total{function=\"" + EscapeLabel(fn) + "\"} " +
           std::to_string(m->cold_starts.load(std::memory_order_relaxed)) + "\n";
  }
  Header(out, "thaw_cold_starts_by_kind_total", "counter",
         "Cold starts by how the instance began: fork (from a template), restore (from a "
         "snapshot) or full.");
  for (const auto& [fn, m] : functions_) {
    const uint64_t all = m->cold_starts.load(std::memory_order_relaxed);
    const uint64_t fork = m->fork_starts.load(std::memory_order_relaxed);
    const uint64_t restore = m->restore_starts.load(std::memory_order_relaxed);
    out += "thaw_cold_starts_by_kind_total{function=\"" + EscapeLabel(fn) + "\",kind=\"fork\"} " +
           std::to_string(fork) + "\n";
    out += "thaw_cold_starts_by_kind_total{function=\"" + EscapeLabel(fn) +
           "\",kind=\"restore\"} " + std::to_string(restore) + "\n";
    out += "thaw_cold_starts_by_kind_total{function=\"" + EscapeLabel(fn) + "\",kind=\"full\"} " +
           std::to_string(all >= fork + restore ? all - fork - restore : 0) + "\n";
  }
  Header(out, "thaw_init_failures_total", "counter", "Instances whose init failed.");
  for (const auto& [fn, m] : functions_) {
    out += "thaw_init_failures_total{function=\"" + EscapeLabel(fn) + "\"} " +
           std::to_string(m->init_failures.load(std::memory_order_relaxed)) + "\n";
  }
  Header(out, "thaw_invocation_duration_seconds", "histogram",
         "Time from handing the event to the runtime to its answer.");
  for (const auto& [fn, m] : functions_) {
    m->duration.Render("thaw_invocation_duration_seconds", "function=\"" + EscapeLabel(fn) + "\"",
                       out);
  }
  Header(out, "thaw_init_duration_seconds", "histogram", "Instance initialisation time.");
  for (const auto& [fn, m] : functions_) {
    m->init_duration.Render("thaw_init_duration_seconds", "function=\"" + EscapeLabel(fn) + "\"",
                            out);
  }
  Header(out, "thaw_batch_size", "histogram",
         "Calls per batch handed to an instance (functions with batch: in thaw.yaml).");
  for (const auto& [fn, m] : functions_) {
    const uint64_t batches = m->batches.load(std::memory_order_relaxed);
    if (batches == 0) continue;
    const std::string labels = "function=\"" + EscapeLabel(fn) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBatchBuckets.size(); ++i) {
      cumulative += m->batch_sizes[i].load(std::memory_order_relaxed);
      out += "thaw_batch_size_bucket{" + labels + ",le=\"" + std::to_string(kBatchBuckets[i]) +
             "\"} " + std::to_string(std::min(cumulative, batches)) + "\n";
    }
    out += "thaw_batch_size_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(batches) + "\n";
    out += "thaw_batch_size_sum{" + labels + "} " +
           std::to_string(m->batched_calls.load(std::memory_order_relaxed)) + "\n";
    out += "thaw_batch_size_count{" + labels + "} " + std::to_string(batches) + "\n";
  }
  Header(out, "thaw_instances", "gauge", "Instances by function and state.");
  for (const auto& [key, n] : gauges.instances) {
    out += "thaw_instances{function=\"" + EscapeLabel(key.first) + "\",state=\"" + key.second +
           "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "thaw_queue_depth", "gauge", "Requests waiting for an instance.");
  for (const auto& [fn, n] : gauges.queued) {
    out += "thaw_queue_depth{function=\"" + EscapeLabel(fn) + "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "thaw_function_init_failures_in_a_row", "gauge",
         "Init failures since the function last started an instance (0: healthy).");
  for (const auto& [fn, n] : gauges.failing) {
    out += "thaw_function_init_failures_in_a_row{function=\"" + EscapeLabel(fn) + "\"} " +
           std::to_string(n) + "\n";
  }
  Header(out, "thaw_meter_write_lag_records", "gauge",
         "Meter records accepted but not yet committed to the database.");
  out += "thaw_meter_write_lag_records " + std::to_string(gauges.meter_pending) + "\n";
  Header(out, "thaw_async_events_queued", "gauge",
         "Event invocations accepted and not yet finished (waiting, retrying or running).");
  for (const auto& [function, n] : gauges.events_queued) {
    out += "thaw_async_events_queued{function=\"" + EscapeLabel(function) + "\"} " +
           std::to_string(n) + "\n";
  }
  Header(out, "thaw_async_oldest_event_age_seconds", "gauge",
         "Age of the oldest unfinished Event invocation.");
  for (const auto& [function, age] : gauges.events_oldest_age_s) {
    char value[32];
    std::snprintf(value, sizeof(value), "%.3f", age);
    out += "thaw_async_oldest_event_age_seconds{function=\"" + EscapeLabel(function) + "\"} " +
           value + "\n";
  }
  Header(out, "thaw_log_lines_dropped_total", "counter",
         "Function log lines kept in memory only: the writer queue was full, or the write failed.");
  out += "thaw_log_lines_dropped_total{reason=\"queue_full\"} " +
         std::to_string(gauges.log_lines_dropped_queue_full) + "\n";
  out += "thaw_log_lines_dropped_total{reason=\"write_failed\"} " +
         std::to_string(gauges.log_lines_dropped_write_failed) + "\n";
  if (gauges.gpus.empty()) return out;
  Header(out, "thaw_gpu_held", "gauge", "1 while an instance holds the GPU (holder), else 0.");
  for (const auto& g : gauges.gpus) {
    out += "thaw_gpu_held{gpu=\"" + std::to_string(g.index) + "\",name=\"" + EscapeLabel(g.name) +
           "\",holder=\"" + EscapeLabel(g.holder) + "\"} " + (g.holder.empty() ? "0" : "1") + "\n";
  }
  Header(out, "thaw_gpu_memory_used_bytes", "gauge", "GPU memory in use (NVML).");
  for (const auto& g : gauges.gpus) {
    if (g.memory_used_bytes < 0) continue;
    out += "thaw_gpu_memory_used_bytes{gpu=\"" + std::to_string(g.index) + "\"} " +
           std::to_string(g.memory_used_bytes) + "\n";
  }
  Header(out, "thaw_gpu_utilization_percent", "gauge", "GPU busy time, last sample (NVML).");
  for (const auto& g : gauges.gpus) {
    if (g.utilization_percent < 0) continue;
    out += "thaw_gpu_utilization_percent{gpu=\"" + std::to_string(g.index) + "\"} " +
           std::to_string(g.utilization_percent) + "\n";
  }
  return out;
}

}  // namespace thaw::metrics

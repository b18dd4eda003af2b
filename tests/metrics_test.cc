// Metrics rendering: counts add up and the output is valid Prometheus text exposition, as
// Debian's promtool checks it.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace thaw::metrics {
namespace {

// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> PromtoolCheck(const std::string& text) {
  char path[] = "/tmp/thaw-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  ::unlink(path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(MetricsTest, CountsAndHistogramsAddUp) {
  Registry registry;
  FunctionMetrics* m = registry.For("hello");
  EXPECT_EQ(m, registry.For("hello"));  // stable pointer
  m->Record("success", 800, true, 3000);
  m->Record("success", 2'000'000, false, 0);
  m->Record("timeout", 3'000'000, false, 0);
  m->Record("throttled", 0, false, 0);
  Gauges g;
  g.instances[{"hello", "ready"}] = 2;
  g.queued["hello"] = 1;
  g.meter_pending = 5;
  g.log_lines_dropped_queue_full = 7;
  g.log_lines_dropped_write_failed = 2;
  std::string text = registry.Render(g);
  EXPECT_NE(text.find("thaw_invocations_total{function=\"hello\",status=\"success\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("thaw_invocations_total{function=\"hello\",status=\"timeout\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("thaw_throttles_total{function=\"hello\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_cold_starts_total{function=\"hello\"} 1\n"), std::string::npos);
  // Throttled calls never ran: three durations, the 0.8 ms one in the 1 ms bucket.
  EXPECT_NE(text.find("thaw_invocation_duration_seconds_count{function=\"hello\"} 3\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("thaw_invocation_duration_seconds_bucket{function=\"hello\",le=\"0.001\"} 1\n"),
      std::string::npos);
  EXPECT_NE(text.find("thaw_invocation_duration_seconds_bucket{function=\"hello\",le=\"2.5\"} 2\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("thaw_invocation_duration_seconds_bucket{function=\"hello\",le=\"+Inf\"} 3\n"),
      std::string::npos);
  EXPECT_NE(text.find("thaw_instances{function=\"hello\",state=\"ready\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_queue_depth{function=\"hello\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_meter_write_lag_records 5\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_log_lines_dropped_total{reason=\"queue_full\"} 7\n"),
            std::string::npos);
  EXPECT_NE(text.find("thaw_log_lines_dropped_total{reason=\"write_failed\"} 2\n"),
            std::string::npos);
  auto [status, out] = PromtoolCheck(text);
  EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(MetricsTest, BatchSizeHistogramOnlyForBatchedFunctions) {
  Registry registry;
  registry.For("plain")->Record("success", 800, false, 0);
  FunctionMetrics* m = registry.For("digits");
  for (int64_t size : {1, 3, 16, 16}) m->RecordBatch(size);
  std::string text = registry.Render({});
  EXPECT_EQ(text.find("thaw_batch_size_count{function=\"plain\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("thaw_batch_size_bucket{function=\"digits\",le=\"1\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("thaw_batch_size_bucket{function=\"digits\",le=\"4\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("thaw_batch_size_bucket{function=\"digits\",le=\"16\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("thaw_batch_size_sum{function=\"digits\"} 36\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_batch_size_count{function=\"digits\"} 4\n"), std::string::npos);
  auto [status, out] = PromtoolCheck(text);
  EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabel("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Registry registry;
  registry.For("weird\"name")->Record("error", 10, false, 0);
  auto [status, out] = PromtoolCheck(registry.Render({}));
  EXPECT_EQ(status, 0) << out;
}

TEST(MetricsTest, WithLabelAddsTheLabelToEverySampleLine) {
  const std::string text =
      "# HELP a_total An a.\n# TYPE a_total counter\na_total 3\n"
      "b{function=\"f\",le=\"+Inf\"} 1\nc{} 2\n\nd\t4";
  EXPECT_EQ(WithLabel(text, "node", "n\"1"),
            "# HELP a_total An a.\n# TYPE a_total counter\na_total{node=\"n\\\"1\"} 3\n"
            "b{node=\"n\\\"1\",function=\"f\",le=\"+Inf\"} 1\nc{node=\"n\\\"1\"} 2\n\n"
            "d{node=\"n\\\"1\"}\t4");
}

// In a cluster every series names its node, and nothing else changes; without one, no label.
TEST(MetricsTest, EverySeriesCarriesTheNodeLabelInACluster) {
  Registry registry;
  FunctionMetrics* m = registry.For("hello");
  m->Record("success", 800, true, 3000);
  m->RecordBatch(2);
  Gauges g;
  g.instances[{"hello", "ready"}] = 1;
  g.queued["hello"] = 0;
  g.failing["hello"] = 0;
  g.events_queued["hello"] = 1;
  g.events_oldest_age_s["hello"] = 0.5;
  g.gpus.push_back({0, "H200", "hello", 1024, 7});
  const std::string alone = registry.Render(g);
  EXPECT_EQ(alone.find("node="), std::string::npos) << alone;

  registry.SetNode("node-a");
  const std::string text = registry.Render(g);
  size_t series = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    ++series;
    ASSERT_EQ(line.rfind("thaw_", 0), 0u) << line;
    EXPECT_NE(line.find("{node=\"node-a\""), std::string::npos) << line;
  }
  EXPECT_GT(series, 40u);
  EXPECT_EQ(WithLabel(alone, "node", "node-a"), text);
  EXPECT_NE(text.find("thaw_meter_write_lag_records{node=\"node-a\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("thaw_invocations_total{node=\"node-a\",function=\"hello\","
                      "status=\"success\"} 1\n"),
            std::string::npos);
  auto [status, out] = PromtoolCheck(text);
  EXPECT_EQ(status, 0) << out << "\n" << text;
}

}  // namespace
}  // namespace thaw::metrics

#include "server/prometheus_metrics.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/testing/exported_metrics.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;

PrometheusMetrics::Options TestOptions() {
  return {.model_name = "m",
          .block_size = 16,
          .num_kv_blocks = 100,
          .kv_cache_dtype = "bf16",
          .max_model_len = 512};
}

// The value of the series whose line starts with `series` (name and labels), or NaN.
double Value(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

TEST(PrometheusMetricsTest, EveryDocumentedMetricIsExportedWithTheModelLabel) {
  const PrometheusMetrics metrics(TestOptions());
  const std::string page = metrics.Render();
  for (const char* name : testing::kExportedMetricFamilies) {
    EXPECT_THAT(page, HasSubstr(absl::StrCat("# TYPE ", name, " "))) << name;
  }
  int num_series = 0;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    ++num_series;
    EXPECT_TRUE(absl::StrContains(line, "model_name=\"m\"")) << line;
    EXPECT_TRUE(absl::StartsWith(line, "pagoda_")) << line;
  }
  EXPECT_GT(num_series, 100);
  EXPECT_EQ(Value(page, R"(pagoda_cache_config_info{model_name="m",block_size="16",)"
                        R"(kv_cache_dtype="bf16",num_blocks="100"})"),
            1.0)
      << page;
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_capacity_blocks{model_name="m"})"), 100.0);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_blocks{model_name="m",state="free"})"), 100.0);
  EXPECT_EQ(Value(page, R"(pagoda_requests_rejected_total{model_name="m",reason="queue_full"})"),
            0.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_success_total{model_name="m",finished_reason="abort"})"),
            0.0);
}

TEST(PrometheusMetricsTest, GaugesComeFromTheEngineSnapshot) {
  PrometheusMetrics metrics(TestOptions());
  engine::EngineSnapshot snapshot;
  snapshot.num_running = 3;
  snapshot.num_waiting = 2;
  snapshot.kv = {.num_blocks = 100,
                 .num_used_blocks = 30,
                 .num_cached_blocks = 10,
                 .num_free_blocks = 60,
                 .usage_ratio = 0.3};
  metrics.SetEngineState(snapshot);
  const std::string page = metrics.Render();
  EXPECT_EQ(Value(page, R"(pagoda_num_requests_running{model_name="m"})"), 3.0);
  EXPECT_EQ(Value(page, R"(pagoda_num_requests_waiting{model_name="m"})"), 2.0);
  EXPECT_DOUBLE_EQ(Value(page, R"(pagoda_kv_cache_usage_ratio{model_name="m"})"), 0.3);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_blocks{model_name="m",state="used"})"), 30.0);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_blocks{model_name="m",state="cached"})"), 10.0);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_blocks{model_name="m",state="free"})"), 60.0);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_capacity_blocks{model_name="m"})"), 100.0);
}

TEST(PrometheusMetricsTest, StepsAdvanceCountersByDeltasAndFillHistograms) {
  PrometheusMetrics metrics(TestOptions());
  engine::StepMetrics step;
  step.num_scheduled_tokens = 40;
  step.num_generation_tokens = 3;
  step.num_preemptions = 1;
  step.step_seconds = 0.004;
  step.kv = {
      .num_blocks = 100, .prefix_queried_tokens = 64, .prefix_hit_tokens = 32, .num_evictions = 5};
  step.ttft_seconds = {0.002, 0.003};
  step.inter_token_seconds = {0.001};
  step.queue_seconds = {0.0005};
  step.new_token_ratio = 0.25;
  metrics.OnStep(step);
  step.kv.prefix_queried_tokens = 80;
  step.kv.prefix_hit_tokens = 40;
  step.kv.num_evictions = 7;
  step.ttft_seconds.clear();
  metrics.OnStep(step);

  const std::string page = metrics.Render();
  EXPECT_EQ(Value(page, R"(pagoda_prefix_cache_queried_tokens_total{model_name="m"})"), 80.0);
  EXPECT_EQ(Value(page, R"(pagoda_prefix_cache_hit_tokens_total{model_name="m"})"), 40.0);
  EXPECT_EQ(Value(page, R"(pagoda_kv_cache_evictions_total{model_name="m"})"), 7.0);
  EXPECT_EQ(Value(page, R"(pagoda_num_preemptions_total{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_new_token_ratio{model_name="m"})"), 0.25);
  EXPECT_EQ(Value(page, R"(pagoda_generation_tokens_total{model_name="m"})"), 6.0);
  EXPECT_EQ(Value(page, R"(pagoda_time_to_first_token_seconds_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_inter_token_latency_seconds_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_queue_time_seconds_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_iteration_tokens_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_iteration_tokens_sum{model_name="m"})"), 80.0);
  EXPECT_EQ(Value(page, R"(pagoda_engine_step_duration_seconds_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_engine_step_duration_seconds_bucket{model_name="m",le="0.005"})"),
            2.0);

  // A cumulative figure that goes down never makes a counter go down.
  step.kv.num_evictions = 1;
  metrics.OnStep(step);
  step.kv.num_evictions = 2;
  metrics.OnStep(step);
  EXPECT_EQ(Value(metrics.Render(), R"(pagoda_kv_cache_evictions_total{model_name="m"})"), 8.0);
}

TEST(PrometheusMetricsTest, FinishedAndRejectedRequests) {
  PrometheusMetrics metrics(TestOptions());
  metrics.OnRequestFinished({.finish_reason = engine::FinishReason::kStop,
                             .prompt_tokens = 10,
                             .generation_tokens = 5,
                             .e2e_seconds = 0.2,
                             .time_per_output_token_seconds = 0.01});
  metrics.OnRequestFinished({.finish_reason = engine::FinishReason::kAbort,
                             .prompt_tokens = 7,
                             .generation_tokens = 1,
                             .e2e_seconds = 0.1});
  metrics.OnRequestRejected("queue_full");
  metrics.OnRequestRejected("queue_full");
  metrics.OnRequestRejected("not_found");

  const std::string page = metrics.Render();
  EXPECT_EQ(Value(page, R"(pagoda_request_success_total{model_name="m",finished_reason="stop"})"),
            1.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_success_total{model_name="m",finished_reason="abort"})"),
            1.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_success_total{model_name="m",finished_reason="length"})"),
            0.0);
  EXPECT_EQ(Value(page, R"(pagoda_prompt_tokens_total{model_name="m"})"), 17.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_prompt_tokens_sum{model_name="m"})"), 17.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_generation_tokens_sum{model_name="m"})"), 6.0);
  EXPECT_EQ(Value(page, R"(pagoda_request_time_per_output_token_seconds_count{model_name="m"})"),
            1.0);
  EXPECT_EQ(Value(page, R"(pagoda_e2e_request_latency_seconds_count{model_name="m"})"), 2.0);
  EXPECT_EQ(Value(page, R"(pagoda_requests_rejected_total{model_name="m",reason="queue_full"})"),
            2.0);
  EXPECT_EQ(Value(page, R"(pagoda_requests_rejected_total{model_name="m",reason="not_found"})"),
            1.0);
  // Token-count buckets reach max_model_len.
  EXPECT_THAT(page, HasSubstr(R"(pagoda_request_prompt_tokens_bucket{model_name="m",le="1000"})"));
}

}  // namespace
}  // namespace pagoda::server

#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>

#include "bench/load/metrics_scrape.h"
#include "bench/load/stats.h"
#include "bench/load/workload.h"
#include "gtest/gtest.h"

namespace pagoda::bench {
namespace {

TEST(WorkloadTest, SyntheticLengthsPrefixAndDeterminism) {
  SyntheticOptions o{.num_prompts = 200,
                     .input_len = 100,
                     .output_len = 50,
                     .range_ratio = 0.5,
                     .prefix_len = 16,
                     .vocab_size = 1000,
                     .first_token_id = 3,
                     .seed = 9};
  const auto a = MakeSyntheticRequests(o);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 200u);
  for (const BenchRequest& r : *a) {
    EXPECT_GE(r.input_len, 16 + 50);
    EXPECT_LE(r.input_len, 16 + 150);
    EXPECT_EQ(r.input_len, static_cast<int>(r.prompt_token_ids.size()));
    EXPECT_GE(r.output_len, 25);
    EXPECT_LE(r.output_len, 75);
    for (const uint32_t t : r.prompt_token_ids) {
      EXPECT_GE(t, 3u);
      EXPECT_LT(t, 1000u);
    }
    EXPECT_TRUE(std::equal(r.prompt_token_ids.begin(), r.prompt_token_ids.begin() + 16,
                           (*a)[0].prompt_token_ids.begin()));
  }
  const auto b = MakeSyntheticRequests(o);
  EXPECT_EQ((*a)[7].prompt_token_ids, (*b)[7].prompt_token_ids);
  o.range_ratio = 1.0;
  EXPECT_FALSE(MakeSyntheticRequests(o).ok());
}

TEST(WorkloadTest, JsonlRecordsCycleAndErrorsNameTheLine) {
  const std::string path = ::testing::TempDir() + "/prompts.jsonl";
  std::ofstream(path) << R"({"prompt": "hello", "output_len": 7})"
                      << "\n\n"
                      << R"({"prompt_token_ids": [1, 2, 3]})"
                      << "\n";
  const auto requests = LoadJsonlRequests(path, 5, 32);
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), 5u);
  EXPECT_EQ(*(*requests)[0].prompt_text, "hello");
  EXPECT_EQ((*requests)[0].output_len, 7);
  EXPECT_EQ((*requests)[1].prompt_token_ids, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ((*requests)[1].output_len, 32);
  EXPECT_EQ(*(*requests)[2].prompt_text, "hello");
  std::ofstream(path) << R"({"text": "x"})"
                      << "\n";
  const auto bad = LoadJsonlRequests(path, 1, 8);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":1:"), absl::string_view::npos);
}

TEST(WorkloadTest, ArrivalsHaveTheRequestedRate) {
  const std::vector<double> burst =
      ArrivalOffsets(10, std::numeric_limits<double>::infinity(), 1.0, 1);
  EXPECT_EQ(burst, std::vector<double>(10, 0.0));
  for (const double burstiness : {1.0, 0.5}) {
    const std::vector<double> t = ArrivalOffsets(20000, 50.0, burstiness, 2);
    EXPECT_EQ(t[0], 0.0);
    EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
    EXPECT_NEAR(t.back() / 20000, 1.0 / 50, 0.001);  // mean gap
  }
}

TEST(StatsTest, PercentilesInterpolateLikeNumPy) {
  std::vector<double> v(101);
  std::iota(v.begin(), v.end(), 0.0);
  const Summary s = Summarize(v);
  EXPECT_DOUBLE_EQ(s.mean, 50);
  EXPECT_DOUBLE_EQ(s.median, 50);
  EXPECT_DOUBLE_EQ(s.p90, 90);
  EXPECT_DOUBLE_EQ(s.p99, 99);
  EXPECT_DOUBLE_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(Percentile({1, 2}, 50), 1.5);
  EXPECT_DOUBLE_EQ(Summarize({}).mean, 0);
}

TEST(MetricsScrapeTest, SumsSamplesAcrossLabels) {
  const auto values = ParsePrometheusText(
      "# HELP pagoda_x x\n# TYPE pagoda_x counter\n"
      "pagoda_kv_cache_blocks{model_name=\"m\",state=\"used\"} 3\n"
      "pagoda_kv_cache_blocks{model_name=\"m\",state=\"free\"} 5 1700000000\n"
      "pagoda_kv_cache_usage_ratio{model_name=\"m\"} 0.25\n"
      "pagoda_num_preemptions_total 7\n"
      "garbage line\n");
  EXPECT_DOUBLE_EQ(values.at("pagoda_kv_cache_blocks"), 8);
  EXPECT_DOUBLE_EQ(values.at("pagoda_kv_cache_usage_ratio"), 0.25);
  EXPECT_DOUBLE_EQ(values.at("pagoda_num_preemptions_total"), 7);
  EXPECT_FALSE(values.contains("garbage"));
}

TEST(MetricsScrapeTest, UnreachableServerIsAnError) {
  EXPECT_FALSE(HttpGet("127.0.0.1", 1, "/metrics", 500).ok());
}

}  // namespace
}  // namespace pagoda::bench

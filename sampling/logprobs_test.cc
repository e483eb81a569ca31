#include "sampling/logprobs.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::sampling {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr float kInf = std::numeric_limits<float>::infinity();

// The reference: log_softmax in long double, one token at a time.
std::vector<double> ReferenceLogSoftmax(const std::vector<float>& logits) {
  long double max = -INFINITY;
  for (float l : logits) max = std::max<long double>(max, l);
  long double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<long double>(l) - max);
  std::vector<double> out;
  for (float l : logits) out.push_back(static_cast<double>(l - max - std::log(sum)));
  return out;
}

TEST(LogprobsTest, MatchesAReferenceOnRandomRows) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> logits(1000 + trial * 997);
    for (float& l : logits) l = normal(rng);
    const std::vector<double> reference = ReferenceLogSoftmax(logits);
    const LogSoftmaxSummary summary = SummarizeLogits(logits, 20);
    ASSERT_EQ(summary.top.size(), 20u);
    std::vector<int> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[a] > logits[b]; });
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(summary.top[i].first, order[i]) << "trial " << trial << " rank " << i;
      // Tolerance: float logits, double accumulation.
      EXPECT_NEAR(summary.top[i].second - summary.log_normalizer, reference[order[i]], 1e-5);
    }
  }
}

TEST(LogprobsTest, TiesGoToTheLowestIdAndNanHasNoMass) {
  const std::vector<float> logits = {1, 3, NAN, 3, -kInf, 2};
  const LogSoftmaxSummary summary = SummarizeLogits(logits, 4);
  EXPECT_THAT(summary.top, ElementsAre(Pair(1, 3.0f), Pair(3, 3.0f), Pair(5, 2.0f), Pair(0, 1.0f)));
  const double expected = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(summary.log_normalizer, expected, 1e-9);
  EXPECT_TRUE(SummarizeLogits(logits, 0).top.empty());
  EXPECT_EQ(SummarizeLogits(std::vector<float>{-kInf, NAN}, 2).log_normalizer, -INFINITY);
}

TEST(LogprobsTest, SampledTokensLogprobIsTheRawDistributions) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> raw(512);
  for (float& l : raw) l = normal(rng);
  const std::vector<double> reference = ReferenceLogSoftmax(raw);
  // Temperature, penalties and bias change what is sampled, not the reported distribution.
  SamplingParams params{.temperature = 0.7f,
                        .top_k = 50,
                        .repetition_penalty = 1.3f,
                        .logit_bias = {{7, 5.0f}},
                        .logprobs = 3};
  SamplerState state(/*seed=*/42, /*prompt_tokens=*/std::vector<TokenId>{1, 2, 3});
  for (int draw = 0; draw < 50; ++draw) {
    std::vector<float> logits = raw;
    TokenLogprobs out;
    const absl::StatusOr<TokenId> token =
        SampleWithLogprobs(absl::MakeSpan(logits), params, state, {}, &out);
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(out.token, *token);
    EXPECT_NEAR(out.logprob, reference[*token], 1e-5);
    ASSERT_EQ(out.top.size(), 3u);
    EXPECT_NEAR(out.top[0].second, *std::max_element(reference.begin(), reference.end()), 1e-5);
    EXPECT_GE(out.top[0].second, out.top[1].second);
    EXPECT_GE(out.top[1].second, out.top[2].second);
  }
  // Greedy: the sampled token is the top one.
  params = {.temperature = 0.0f, .logprobs = 1};
  std::vector<float> logits = raw;
  TokenLogprobs out;
  ASSERT_TRUE(SampleWithLogprobs(absl::MakeSpan(logits), params, state, {}, &out).ok());
  EXPECT_EQ(out.token, out.top[0].first);
  EXPECT_FLOAT_EQ(out.logprob, out.top[0].second);
}

TEST(LogprobsTest, RangeAndGreedyRule) {
  SamplingParams params;
  EXPECT_TRUE(ValidateSamplingParams(params, 10).ok());
  params.logprobs = 20;
  EXPECT_TRUE(ValidateSamplingParams(params, 10).ok());
  params.logprobs = 21;
  EXPECT_EQ(ValidateSamplingParams(params, 10).message(),
            "logprobs: must be in [0, 20], or -1 for none, got 21");
  params.logprobs = -2;
  EXPECT_FALSE(ValidateSamplingParams(params, 10).ok());
  params = SamplingParams{.temperature = 0.0f};
  EXPECT_TRUE(IsPlainGreedy(params));
  params.logprobs = 0;
  EXPECT_FALSE(IsPlainGreedy(params)) << "a logprobs row needs its whole distribution";
}

}  // namespace
}  // namespace pagoda::sampling

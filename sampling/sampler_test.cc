#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::sampling {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Sample() that must succeed; -1 (and a test failure) when it does not.
TokenId SampleOk(absl::Span<float> logits, const SamplingParams& params, SamplerState& state,
                 absl::Span<const TokenId> banned = {}) {
  const absl::StatusOr<TokenId> token = Sample(logits, params, state, banned);
  EXPECT_TRUE(token.ok()) << token.status();
  return token.ok() ? *token : -1;
}

std::vector<float> RandomLogits(int vocab_size, float stddev, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> logits(vocab_size);
  for (float& l : logits) l = dist(gen);
  return logits;
}

// Samples `n` times from copies of `logits` with one state; returns counts per token.
std::vector<int> Histogram(const std::vector<float>& logits, const SamplingParams& params, int n,
                           uint64_t seed) {
  SamplerState state(seed, {});
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    std::vector<float> scratch = logits;
    const TokenId token = SampleOk(absl::MakeSpan(scratch), params, state);
    if (token < 0) break;
    ++counts[token];
  }
  return counts;
}

std::set<TokenId> Support(const std::vector<int>& counts) {
  std::set<TokenId> support;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > 0) support.insert(static_cast<TokenId>(i));
  }
  return support;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i)
    sum += p[i] = std::exp((logits[i] - max) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

TEST(SamplerRngTest, IsSplitMix64) {
  // Reference outputs of SplitMix64 from state 1234567 (as in the Rust rand_xoshiro tests).
  SamplerState state(1234567, {});
  EXPECT_EQ(state.NextUint64(), 6457827717110365317ull);
  EXPECT_EQ(state.NextUint64(), 3203168211198807973ull);
  EXPECT_EQ(state.NextUint64(), 9817491932198370423ull);
  EXPECT_EQ(state.num_draws(), 3u);
  for (int i = 0; i < 1000; ++i) {
    const double u = state.NextUniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(SamplerTest, GreedyIsArgmaxAndMakesNoDraw) {
  SamplingParams params;
  params.temperature = 0.0f;
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = RandomLogits(1000, 3.0f, seed);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    SamplerState state(seed, {});
    EXPECT_EQ(SampleOk(absl::MakeSpan(logits), params, state), expected);
    EXPECT_EQ(state.num_draws(), 0u);
  }
}

TEST(SamplerTest, GreedyTiesGoToLowestIdAndTinyTemperatureIsGreedy) {
  std::vector<float> logits = {1.0f, 5.0f, 2.0f, 5.0f, kNegInf, std::nanf("")};
  SamplingParams params;
  params.temperature = kGreedyTemperature / 2;
  SamplerState state(1, {});
  EXPECT_EQ(SampleOk(absl::MakeSpan(logits), params, state), 1);
}

TEST(SamplerTest, PlainGreedyIsOnlyGreedyWithoutAdjustments) {
  SamplingParams params;
  EXPECT_FALSE(IsPlainGreedy(params));  // temperature 1
  params.temperature = 0.0f;
  params.top_k = 5;  // irrelevant when greedy
  params.top_p = 0.5f;
  EXPECT_TRUE(IsPlainGreedy(params));
  // Each adjustment can move the argmax, so each one rules the shortcut out.
  SamplingParams biased = params;
  biased.logit_bias = {{3, 1.0f}};
  SamplingParams repeated = params;
  repeated.repetition_penalty = 1.2f;
  SamplingParams present = params;
  present.presence_penalty = 0.5f;
  SamplingParams frequent = params;
  frequent.frequency_penalty = -0.5f;
  for (const SamplingParams& p : {biased, repeated, present, frequent}) {
    EXPECT_FALSE(IsPlainGreedy(p));
  }
  // And when it holds, Sample is the argmax whatever the state's history.
  std::vector<float> logits = {1.0f, 5.0f, 2.0f, 5.0f, kNegInf, std::nanf("")};
  SamplerState state(1, std::vector<TokenId>{1, 1, 3});
  state.AddOutputToken(1);
  EXPECT_EQ(SampleOk(absl::MakeSpan(logits), params, state), 1);
}

TEST(SamplerTest, TemperatureMatchesSoftmaxDistribution) {
  const std::vector<float> logits = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, -1.0f, 1.5f, 0.2f};
  for (float temperature : {0.7f, 1.0f, 2.5f}) {
    SamplingParams params;
    params.temperature = temperature;
    constexpr int kDraws = 200000;
    const std::vector<int> counts = Histogram(logits, params, kDraws, 42);
    const std::vector<double> p = Softmax(logits, temperature);
    double chi_square = 0.0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double expected = p[i] * kDraws;
      chi_square += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    // 7 degrees of freedom: P(chi^2 > 24.32) = 0.001.
    EXPECT_LT(chi_square, 24.32) << "temperature " << temperature;
  }
}

TEST(SamplerTest, TopKNeverLeavesTheTopK) {
  const std::vector<float> logits = RandomLogits(5000, 1.0f, 7);
  std::vector<TokenId> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<TokenId>(i);
  std::sort(order.begin(), order.end(),
            [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
  for (int k : {1, 5, 50, 300, 1000}) {  // both the heap and the nth_element selection
    SamplingParams params;
    params.top_k = k;
    params.temperature = 3.0f;  // flatten, so that every kept token is drawn
    const std::set<TokenId> support = Support(Histogram(logits, params, k <= 50 ? 2000 : 500, k));
    const std::set<TokenId> top(order.begin(), order.begin() + k);
    EXPECT_TRUE(std::includes(top.begin(), top.end(), support.begin(), support.end())) << k;
    if (k <= 50) {
      EXPECT_EQ(support, top) << k;
    }
  }
}

TEST(SamplerTest, TopKKeepsExactlyKLowestIdsAmongTies) {
  const std::vector<float> logits = {0.0f, 1.0f, 1.0f, 1.0f, 1.0f, -2.0f};
  SamplingParams params;
  params.top_k = 2;
  EXPECT_EQ(Support(Histogram(logits, params, 2000, 3)), (std::set<TokenId>{1, 2}));
  params.top_k = 6;  // == vocab: off
  EXPECT_EQ(Support(Histogram(logits, params, 5000, 3)).size(), 6u);
}

// Four equally likely tokens (weight exactly 1 each, total exactly 4) make the top-p boundary
// exact: mass 2/4 reaches p = 0.5 with two tokens.
TEST(SamplerTest, TopPKeepsSmallestSetReachingPExactlyAtBoundary) {
  const std::vector<float> logits = {0.0f, 0.0f, kNegInf, 0.0f, 0.0f, kNegInf};
  for (int top_k : {0, 5}) {
    SamplingParams params;
    params.top_k = top_k;
    params.top_p = 0.5f;
    EXPECT_EQ(Support(Histogram(logits, params, 2000, 1)), (std::set<TokenId>{0, 1}));
    params.top_p = std::nextafter(0.5f, 1.0f);
    EXPECT_EQ(Support(Histogram(logits, params, 2000, 1)), (std::set<TokenId>{0, 1, 3}));
    params.top_p = 0.25f;
    EXPECT_EQ(Support(Histogram(logits, params, 2000, 1)), (std::set<TokenId>{0}));
    params.top_p = 1.0f;
    EXPECT_EQ(Support(Histogram(logits, params, 2000, 1)), (std::set<TokenId>{0, 1, 3, 4}));
  }
}

TEST(SamplerTest, TopPMatchesSortedCumulativeMass) {
  // A flat distribution over 50000 tokens: the nucleus holds thousands of tokens, which
  // exercises the threshold search and the growing partial sort.
  for (float stddev : {0.05f, 1.0f, 4.0f}) {
    const std::vector<float> logits = RandomLogits(20000, stddev, 11);
    const std::vector<double> p = Softmax(logits, 1.0);
    std::vector<TokenId> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<TokenId>(i);
    std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) { return p[a] > p[b]; });
    SamplingParams params;
    params.top_p = 0.6f;
    double cumulative = 0.0;
    size_t nucleus = 0;
    while (cumulative < 0.6) cumulative += p[order[nucleus++]];
    const double cutoff = p[order[nucleus - 1]];
    const std::vector<int> counts = Histogram(logits, params, 1000, 5);
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] > 0) {
        EXPECT_GE(p[i], cutoff) << "stddev " << stddev << " token " << i;
      }
    }
    // The least likely kept tokens are drawn too (the nucleus is not cut short): some draw
    // falls in the lower half of the nucleus.
    const double median = p[order[nucleus / 2]];
    int low = 0;
    for (size_t i = 0; i < counts.size(); ++i) low += (counts[i] > 0 && p[i] <= median);
    if (nucleus > 10) {
      EXPECT_GT(low, 0) << "stddev " << stddev;
    }
  }
}

TEST(SamplerTest, TopPSupportIsExactlyTheNucleus) {
  const std::vector<float> logits = RandomLogits(1000, 2.0f, 21);
  const std::vector<double> p = Softmax(logits, 0.8);
  std::vector<TokenId> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<TokenId>(i);
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) { return p[a] > p[b]; });
  for (float top_p : {0.3f, 0.6f}) {
    for (int top_k : {0, 200}) {
      // After top-k, top-p applies to the renormalized top-k distribution (vLLM).
      double kept_mass = 0.0;
      for (size_t i = 0; i < (top_k == 0 ? order.size() : static_cast<size_t>(top_k)); ++i) {
        kept_mass += p[order[i]];
      }
      std::set<TokenId> nucleus;
      double cumulative = 0.0;
      for (size_t i = 0; cumulative < top_p * kept_mass; ++i) {
        cumulative += p[order[i]];
        nucleus.insert(order[i]);
      }
      SamplingParams params;
      params.temperature = 0.8f;
      params.top_p = top_p;
      params.top_k = top_k;
      EXPECT_EQ(Support(Histogram(logits, params, 10000, 9)), nucleus) << top_p << " " << top_k;
    }
  }
}

TEST(SamplerTest, MinPDropsTokensBelowFractionOfMax) {
  const std::vector<float> logits = {std::log(0.09f), 0.0f, std::log(0.5f), std::log(0.2f),
                                     std::log(0.11f)};
  for (int top_k : {0, 4}) {
    for (float top_p : {1.0f, 0.999f}) {
      SamplingParams params;
      params.min_p = 0.1f;
      params.top_k = top_k;
      params.top_p = top_p;
      EXPECT_EQ(Support(Histogram(logits, params, 4000, 2)), (std::set<TokenId>{1, 2, 3, 4}))
          << top_k << " " << top_p;
      params.min_p = 0.3f;
      EXPECT_EQ(Support(Histogram(logits, params, 4000, 2)), (std::set<TokenId>{1, 2}));
      params.min_p = 1.0f;
      EXPECT_EQ(Support(Histogram(logits, params, 1000, 2)), (std::set<TokenId>{1}));
    }
  }
}

TEST(SamplerTest, PenaltiesFollowVllmFormulas) {
  SamplerState state(0, {1, 2, 5, 1});
  state.AddOutputToken(2);
  state.AddOutputToken(3);
  state.AddOutputToken(3);
  state.AddOutputToken(6);
  EXPECT_EQ(state.OutputCount(3), 2);
  EXPECT_TRUE(state.InPrompt(5));
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  std::vector<float> logits = {1.0f, 3.0f, -1.0f, 4.0f, 7.0f, 0.0f, -3.0f};
  ASSERT_TRUE(ApplyLogitAdjustments(absl::MakeSpan(logits), params, state).ok());
  EXPECT_THAT(logits, ElementsAre(1.0f,      // unseen
                                  1.5f,      // prompt: 3 / 2
                                  -2.75f,    // prompt and output once: -1 * 2 - 0.25 - 0.5
                                  1.0f,      // output twice: 4 / 2 - 0.5 - 0.5
                                  7.0f,      // unseen
                                  0.0f,      // prompt, logit 0: 0 * 2
                                  -6.75f));  // output once: -3 * 2 - 0.25 - 0.5
}

TEST(SamplerTest, NegativePenaltiesAndRepetitionBelowOne) {
  SamplerState state(0, {0});
  state.AddOutputToken(1);
  SamplingParams params;
  params.repetition_penalty = 0.5f;
  params.presence_penalty = -1.0f;
  params.frequency_penalty = -2.0f;
  std::vector<float> logits = {2.0f, -2.0f, 1.0f};
  ASSERT_TRUE(ApplyLogitAdjustments(absl::MakeSpan(logits), params, state).ok());
  EXPECT_THAT(logits, ElementsAre(4.0f, 2.0f, 1.0f));  // token 1: -2 * 0.5 + 2 + 1
}

TEST(SamplerTest, LogitBiasIsAppliedFirst) {
  SamplerState state(0, {1});
  SamplingParams params;
  params.logit_bias = {{1, 2.0f}, {0, -0.5f}, {1, 1.0f}};
  params.repetition_penalty = 2.0f;
  std::vector<float> logits = {1.0f, -1.0f, 0.25f};
  ASSERT_TRUE(ApplyLogitAdjustments(absl::MakeSpan(logits), params, state).ok());
  // Token 1: (-1 + 2 + 1) = 2 > 0, then divided by the penalty: 1.
  EXPECT_THAT(logits, ElementsAre(0.5f, 1.0f, 0.25f));

  SamplingParams greedy;
  greedy.temperature = 0.0f;
  greedy.logit_bias = {{2, 10.0f}};
  std::vector<float> more = {5.0f, 1.0f, 0.0f};
  EXPECT_EQ(SampleOk(absl::MakeSpan(more), greedy, state), 2);
}

std::vector<TokenId> Generate(uint64_t seed, const SamplingParams& params, int n,
                              SamplerState* other = nullptr) {
  SamplerState state(seed, {3, 4});
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    if (other != nullptr) {  // another request sampled in the same batch
      std::vector<float> noise = RandomLogits(64, 1.0f, i);
      SampleOk(absl::MakeSpan(noise), params, *other);
    }
    // Logits that depend on the history, as a model's would.
    std::vector<float> logits = RandomLogits(64, 1.5f, out.empty() ? 0 : out.back() + 1000 * i);
    out.push_back(SampleOk(absl::MakeSpan(logits), params, state));
    state.AddOutputToken(out.back());
  }
  return out;
}

TEST(SamplerTest, SameSeedSameTokensWhateverTheBatchOrThread) {
  SamplingParams params;
  params.top_p = 0.95f;
  params.top_k = 40;
  params.presence_penalty = 0.3f;
  const std::vector<TokenId> alone = Generate(99, params, 200);
  EXPECT_EQ(Generate(99, params, 200), alone);
  SamplerState other(5, {});
  EXPECT_EQ(Generate(99, params, 200, &other), alone);
  std::vector<TokenId> in_thread;
  std::thread thread([&] { in_thread = Generate(99, params, 200); });
  thread.join();
  EXPECT_EQ(in_thread, alone);
  EXPECT_NE(Generate(100, params, 200), alone);

  // Unseeded states get different seeds.
  EXPECT_NE(SamplerState(std::nullopt, {}).seed(), SamplerState(std::nullopt, {}).seed());
}

TEST(SamplerTest, BannedTokensAreNeverSampled) {
  const std::vector<float> logits = {3.0f, 2.9f, 0.0f, 2.8f};
  const std::vector<TokenId> banned = {0, 3};
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplerState state(8, {});
  std::vector<float> copy = logits;
  EXPECT_EQ(SampleOk(absl::MakeSpan(copy), greedy, state, banned), 1);
  for (int top_k : {0, 2}) {
    SamplingParams params;
    params.top_k = top_k;
    params.temperature = 5.0f;
    for (int i = 0; i < 2000; ++i) {
      copy = logits;
      const TokenId token = SampleOk(absl::MakeSpan(copy), params, state, banned);
      ASSERT_TRUE(token == 1 || token == 2) << token;
    }
  }
}

TEST(SamplerTest, NoSamplableTokenFailsTheCallNotTheProcess) {
  SamplerState state(0, {});
  for (const float temperature : {0.0f, 1.0f}) {
    for (const int top_k : {0, 1}) {
      SamplingParams params;
      params.temperature = temperature;
      params.top_k = top_k;
      std::vector<float> logits = {1.0f, 2.0f};
      const absl::StatusOr<TokenId> banned =
          Sample(absl::MakeSpan(logits), params, state, {{0, 1}});
      EXPECT_EQ(banned.status().code(), absl::StatusCode::kFailedPrecondition) << banned.status();
      EXPECT_THAT(std::string(banned.status().message()), ::testing::HasSubstr("no samplable"));
      const float nan = std::nanf("");
      std::vector<float> all_nan = {nan, nan, -std::numeric_limits<float>::infinity()};
      EXPECT_FALSE(Sample(absl::MakeSpan(all_nan), params, state).ok());
    }
  }
}

// The crash of the hardening issue: repetition_penalty 1e-38 passed validation, divided positive
// logits into +inf, and the "no samplable token" check aborted the daemon. It is refused now,
// and the sampler itself copes with +inf and NaN logits whatever their cause.
TEST(SamplerTest, TinyRepetitionPenaltyIsRefusedAndInfiniteLogitsAreSampled) {
  SamplingParams tiny;
  tiny.repetition_penalty = 1e-38f;
  const absl::Status refused = ValidateSamplingParams(tiny, 8);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()),
              StartsWith("repetition_penalty: must be in [0.01, 100], got 1e-38"));

  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::nanf("");
  const std::vector<float> logits = {1.0f, inf, nan, 3.0f, inf, -inf, 0.5f, 2.0f};
  SamplerState state(7, {});
  for (const float temperature : {0.0f, 0.7f}) {
    for (const int top_k : {0, 3}) {
      for (const float top_p : {1.0f, 0.5f}) {
        SamplingParams params;
        params.temperature = temperature;
        params.top_k = top_k;
        params.top_p = top_p;
        for (int i = 0; i < 200; ++i) {
          std::vector<float> copy = logits;
          const TokenId token = SampleOk(absl::MakeSpan(copy), params, state);
          // The two +inf tokens share all the mass; greedy takes the lower id.
          ASSERT_TRUE(token == 1 || (token == 4 && temperature > 0.0f)) << token;
        }
      }
    }
  }
}

TEST(SamplerTest, OutOfVocabularyIdsAreAnErrorAndLeaveTheLogits) {
  SamplingParams params;
  params.logit_bias = {{0, 1.0f}, {5, 1.0f}};
  SamplerState state(0, {});
  std::vector<float> logits = {1.0f, 2.0f};
  const absl::Status status = ApplyLogitAdjustments(absl::MakeSpan(logits), params, state);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(logits, ElementsAre(1.0f, 2.0f));
  const std::vector<TokenId> banned_out_of_vocab = {9};
  EXPECT_FALSE(Sample(absl::MakeSpan(logits), SamplingParams(), state, banned_out_of_vocab).ok());
  SamplerState long_prompt(0, {1, 70});
  SamplingParams repetition;
  repetition.repetition_penalty = 1.5f;
  EXPECT_FALSE(Sample(absl::MakeSpan(logits), repetition, long_prompt).ok());
  SamplerState long_output(0, {});
  long_output.AddOutputToken(70);
  SamplingParams presence;
  presence.presence_penalty = 0.5f;
  EXPECT_FALSE(Sample(absl::MakeSpan(logits), presence, long_output).ok());
}

TEST(ValidateSamplingParamsTest, AcceptsDefaultsAndEdges) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams(), 10).ok());
  SamplingParams params;
  params.temperature = 0.0f;
  params.top_p = 1.0f;
  params.top_k = 100;  // larger than the vocabulary: off
  EXPECT_TRUE(ValidateSamplingParams(params, 10).ok());
  params.temperature = 100.0f;
  params.repetition_penalty = 100.0f;
  EXPECT_TRUE(ValidateSamplingParams(params, 10).ok());
  params.min_p = 1.0f;
  params.presence_penalty = -2.0f;
  params.frequency_penalty = 2.0f;
  params.repetition_penalty = 0.01f;
  params.logit_bias = {{0, -100.0f}, {9, 100.0f}};
  EXPECT_TRUE(ValidateSamplingParams(params, 10).ok());
}

TEST(ValidateSamplingParamsTest, ErrorsNameTheField) {
  const float nan = std::nanf("");
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    void (*mutate)(SamplingParams&, float);
    float value;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](SamplingParams& p, float v) { p.temperature = v; }, -0.1f, "temperature"},
      {[](SamplingParams& p, float v) { p.temperature = v; }, inf, "temperature"},
      {[](SamplingParams& p, float v) { p.temperature = v; }, nan, "temperature"},
      {[](SamplingParams& p, float v) { p.temperature = v; }, 100.5f, "temperature"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, 0.0f, "top_p"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, 1.01f, "top_p"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, nan, "top_p"},
      {[](SamplingParams& p, float v) { p.top_k = static_cast<int>(v); }, -1.0f, "top_k"},
      {[](SamplingParams& p, float v) { p.min_p = v; }, -0.01f, "min_p"},
      {[](SamplingParams& p, float v) { p.min_p = v; }, 1.5f, "min_p"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, 0.0f, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, inf, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, 1e-38f, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, 0.0099f, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, 100.5f, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, nan, "repetition_penalty"},
      {[](SamplingParams& p, float v) { p.presence_penalty = v; }, 2.5f, "presence_penalty"},
      {[](SamplingParams& p, float v) { p.presence_penalty = v; }, nan, "presence_penalty"},
      {[](SamplingParams& p, float v) { p.frequency_penalty = v; }, -2.01f, "frequency_penalty"},
      {[](SamplingParams& p, float v) {
         p.logit_bias = {{10, v}};
       },
       1.0f, "logit_bias[10]: token id 10 is outside the vocabulary [0, 10)"},
      {[](SamplingParams& p, float v) {
         p.logit_bias = {{-1, v}};
       },
       1.0f, "logit_bias[-1]"},
      {[](SamplingParams& p, float v) {
         p.logit_bias = {{0, v}};
       },
       inf, "logit_bias[0]: must be finite and in [-100, 100], got inf"},
      {[](SamplingParams& p, float v) {
         p.logit_bias = {{0, v}};
       },
       -100.5f, "logit_bias[0]"},
      {[](SamplingParams& p, float v) {
         p.logit_bias = {{0, v}};
       },
       3e38f, "logit_bias[0]"},
      {[](SamplingParams& p, float v) {
         p.logit_bias.assign(kMaxLogitBiasEntries + 1, {0, v});
       },
       1.0f, "logit_bias: at most 1024 entries, got 1025"},
  };
  for (const Case& c : cases) {
    SamplingParams params;
    c.mutate(params, c.value);
    const absl::Status status = ValidateSamplingParams(params, 10);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field << " " << c.value;
    // The field, then ": " and the rule (a case may spell out the whole message).
    const std::string prefix = c.field.find(':') == std::string::npos ? c.field + ": " : c.field;
    EXPECT_THAT(std::string(status.message()), StartsWith(prefix)) << status.message();
  }
}

}  // namespace
}  // namespace pagoda::sampling

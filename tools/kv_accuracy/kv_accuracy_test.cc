#include "tools/kv_accuracy/kv_accuracy.h"

#include <cmath>
#include <vector>

#include "engine/engine_factory.h"
#include "gtest/gtest.h"

namespace pagoda::kv_accuracy {
namespace {

sampling::TokenLogprobs Entry(TokenId token, std::vector<std::pair<TokenId, double>> probs) {
  sampling::TokenLogprobs e;
  e.token = token;
  for (const auto& [id, p] : probs) {
    e.top.emplace_back(id, static_cast<float>(std::log(p)));
    if (id == token) e.logprob = static_cast<float>(std::log(p));
  }
  return e;
}

TEST(KvAccuracyCompareTest, MatchesHandComputedFigures) {
  // One position: p = {7: 0.5, 8: 0.3, rest 0.2}, q = {8: 0.4, 7: 0.4, rest 0.2}; token 7.
  const TextScores p = {{Entry(7, {{7, 0.5}, {8, 0.3}})}};
  const TextScores q = {{Entry(7, {{8, 0.4}, {7, 0.4}})}};
  const absl::StatusOr<Comparison> same = Compare(p, p);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->mean_kl, 0.0);
  EXPECT_EQ(same->greedy_agreement, 1.0);
  const absl::StatusOr<Comparison> c = Compare(p, q);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_tokens, 1);
  EXPECT_NEAR(c->reference_perplexity, 2.0, 1e-6);
  EXPECT_NEAR(c->test_perplexity, 2.5, 1e-6);
  const double kl = 0.5 * std::log(0.5 / 0.4) + 0.3 * std::log(0.3 / 0.4);  // rest: 0.2 vs 0.2
  EXPECT_NEAR(c->mean_kl, kl, 1e-6);
  EXPECT_EQ(c->greedy_agreement, 0.0);  // 7 against 8
  // A token only one list holds joins the rest: {7} + rest(0.5 vs 0.6).
  const TextScores r = {{Entry(7, {{7, 0.4}, {9, 0.3}})}};
  EXPECT_NEAR(Compare(p, r)->mean_kl, 0.5 * std::log(0.5 / 0.4) + 0.5 * std::log(0.5 / 0.6), 1e-6);
  EXPECT_FALSE(Compare(p, {{}}).ok());
  EXPECT_FALSE(Compare(p, {{Entry(8, {{8, 0.5}})}}).ok());
}

engine::EngineConfig Tiny(model::DType kv) {
  engine::EngineConfig config;
  config.model = "dummy:tiny";
  config.weight_dtype = model::DType::kF32;
  config.kv_cache_dtype = kv;
  config.kv_cache_memory_bytes = 8 << 20;
  config.max_num_batched_tokens = 32;  // texts span several chunks
  config.num_threads = 2;
  config.seed = 5;
  config.enable_prefix_caching = false;
  return config;
}

std::vector<std::vector<TokenId>> Texts() {
  std::vector<std::vector<TokenId>> texts;
  for (int i = 0; i < 12; ++i) {
    std::vector<TokenId> t;
    for (int j = 0; j < 20 + 9 * i; ++j) t.push_back(1 + (i * 37 + j * 11 + j * j) % 250);
    texts.push_back(t);
  }
  return texts;
}

TEST(KvAccuracyTest, SameDtypeIsExactAndBf16IsCloseButNotEqual) {
  auto f32 = engine::CreateEngineCore(Tiny(model::DType::kF32));
  auto f32_again = engine::CreateEngineCore(Tiny(model::DType::kF32));
  auto bf16 = engine::CreateEngineCore(Tiny(model::DType::kBF16));
  ASSERT_TRUE(f32.ok() && f32_again.ok() && bf16.ok());
  const std::vector<std::vector<TokenId>> texts = Texts();
  const absl::StatusOr<TextScores> a = ScoreTexts(**f32, texts, 5);
  const absl::StatusOr<TextScores> b = ScoreTexts(**f32_again, texts, 3);
  const absl::StatusOr<TextScores> c = ScoreTexts(**bf16, texts, 5);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
  ASSERT_EQ(a->size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ((*a)[i].size(), texts[i].size() - 1);
    EXPECT_EQ((*a)[i][0].top.size(), static_cast<size_t>(kTopK));
  }
  const absl::StatusOr<Comparison> same = Compare(*a, *b);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->mean_kl, 0.0);  // batching differently changes nothing
  EXPECT_EQ(same->greedy_agreement, 1.0);
  EXPECT_EQ(same->test_perplexity, same->reference_perplexity);
  const absl::StatusOr<Comparison> rounded = Compare(*a, *c);
  ASSERT_TRUE(rounded.ok());
  EXPECT_GT(rounded->mean_kl, 0.0);
  EXPECT_LT(rounded->mean_kl, 1e-3);
  EXPECT_GT(rounded->greedy_agreement, 0.9);
  EXPECT_NEAR(rounded->test_perplexity / rounded->reference_perplexity, 1.0, 0.01);
  EXPECT_FALSE(ScoreTexts(**f32, {{5}}).ok());
}

}  // namespace
}  // namespace pagoda::kv_accuracy

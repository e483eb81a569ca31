#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_weights.h"

namespace pagoda::model {
namespace {

using ::testing::HasSubstr;

std::vector<const WeightTensor*> AllTensors(const ModelWeights& w) {
  std::vector<const WeightTensor*> all = {&w.embed_tokens(), &w.final_norm(), &w.lm_head()};
  for (const LayerWeights& l : w.layers()) {
    for (const WeightTensor* t : {&l.input_norm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj,
                                  &l.post_attention_norm, &l.gate_proj, &l.up_proj, &l.down_proj}) {
      all.push_back(t);
    }
    for (const auto* bias : {&l.q_bias, &l.k_bias, &l.v_bias}) {
      if (bias->has_value()) all.push_back(&**bias);
    }
  }
  return all;
}

bool SameBytes(const WeightTensor& a, const WeightTensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape &&
         std::memcmp(a.data, b.data, static_cast<size_t>(a.size_bytes())) == 0;
}

float At(const WeightTensor& t, int64_t i) {
  if (t.dtype == DType::kF32) return static_cast<const float*>(t.data)[i];
  const uint16_t h = static_cast<const uint16_t*>(t.data)[i];
  return t.dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
}

TEST(DummyPresetTest, PresetsMatchPublishedSizes) {
  const std::vector<std::pair<std::string, int64_t>> expected = {{"llama-110m", 109529856},
                                                                 {"tinyllama-1.1b", 1100048384},
                                                                 {"llama-3.2-1b", 1235814400},
                                                                 {"llama-3.1-8b", 8030261248}};
  for (const auto& [name, num_parameters] : expected) {
    absl::StatusOr<ModelConfig> c = DummyPresetConfig(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_EQ(c->NumParameters(), num_parameters) << name;
    EXPECT_EQ(c->hidden_size, c->num_heads * c->head_dim) << name;
  }
  absl::StatusOr<ModelConfig> l3 = DummyPresetConfig("llama-3.2-1b");
  EXPECT_TRUE(l3->tie_word_embeddings);
  EXPECT_EQ(l3->num_kv_heads, 8);
  EXPECT_FLOAT_EQ(l3->rope_scaling->factor, 32.0f);
  EXPECT_EQ(DummyPresetConfig("llama-3.1-8b")->rope_scaling->factor, 8.0f);
}

TEST(DummyPresetTest, TinyExercisesGqaAndUnknownNamesListKnownOnes) {
  absl::StatusOr<ModelConfig> tiny = DummyPresetConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden_size, 64);
  EXPECT_EQ(tiny->num_heads, 4);
  EXPECT_EQ(tiny->num_kv_heads, 2);
  EXPECT_EQ(tiny->vocab_size, 512);
  const absl::Status status = DummyPresetConfig("gpt-5").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("tiny, llama-110m, tinyllama-1.1b"));
}

TEST(DummyWeightsTest, DeterministicPerSeed) {
  const ModelConfig c = *DummyPresetConfig("tiny");
  auto a = MakeDummyWeights(c, 1234, DType::kBF16);
  auto b = MakeDummyWeights(c, 1234, DType::kBF16);
  auto other = MakeDummyWeights(c, 1235, DType::kBF16);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  const auto ta = AllTensors(**a);
  const auto tb = AllTensors(**b);
  const auto to = AllTensors(**other);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_TRUE(SameBytes(*ta[i], *tb[i])) << i;
    EXPECT_FALSE(SameBytes(*ta[i], *to[i])) << i;
  }
  // Distinct tensors of one model draw from distinct streams.
  EXPECT_NE(At((*a)->layers()[0].gate_proj, 0), At((*a)->layers()[0].up_proj, 0));
  EXPECT_NE(At((*a)->layers()[0].q_proj, 5), At((*a)->layers()[1].q_proj, 5));
}

TEST(DummyWeightsTest, Bf16IsRoundedF32) {
  const ModelConfig c = *DummyPresetConfig("tiny");
  auto f32 = MakeDummyWeights(c, 5, DType::kF32);
  auto bf16 = MakeDummyWeights(c, 5, DType::kBF16);
  ASSERT_TRUE(f32.ok() && bf16.ok());
  EXPECT_EQ((*bf16)->matrix_dtype(), DType::kBF16);
  EXPECT_EQ((*bf16)->final_norm().dtype, DType::kF32);
  EXPECT_EQ((*f32)->matrix_bytes(), 2 * (*bf16)->matrix_bytes());
  const WeightTensor& a = (*f32)->layers()[1].down_proj;
  const WeightTensor& b = (*bf16)->layers()[1].down_proj;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    ASSERT_EQ(At(b, i), Bf16ToF32(F32ToBf16(At(a, i))));
  }
}

TEST(DummyWeightsTest, ScaledForStableActivations) {
  ModelConfig c = *DummyPresetConfig("tiny");
  c.architecture = "Qwen2ForCausalLM";
  c.attention_bias = true;
  auto w = MakeDummyWeights(c, 3, DType::kF32);
  ASSERT_TRUE(w.ok());
  auto stddev = [](const WeightTensor& t) {
    double sum = 0, sum_squares = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      sum += At(t, i);
      sum_squares += double{At(t, i)} * At(t, i);
    }
    const double n = static_cast<double>(t.num_elements());
    return std::sqrt(sum_squares / n - (sum / n) * (sum / n));
  };
  const LayerWeights& l = (*w)->layers()[0];
  EXPECT_NEAR(stddev(l.gate_proj), 1.0 / std::sqrt(64.0), 0.01);
  EXPECT_NEAR(stddev(l.down_proj), 1.0 / std::sqrt(192.0), 0.005);
  EXPECT_NEAR(stddev((*w)->embed_tokens()), 1.0 / std::sqrt(64.0), 0.01);
  ASSERT_TRUE(l.q_bias.has_value());
  EXPECT_NEAR(stddev(*l.q_bias), 0.02, 0.01);
  for (int64_t i = 0; i < l.input_norm.num_elements(); ++i) {
    EXPECT_GE(At(l.input_norm, i), 0.95f);
    EXPECT_LE(At(l.input_norm, i), 1.05f);
  }
  EXPECT_NE(&(*w)->lm_head(), &(*w)->embed_tokens());  // tiny is untied
}

TEST(DummyWeightsTest, RejectsEmptyConfig) {
  EXPECT_EQ(MakeDummyWeights(ModelConfig{}, 1, DType::kF32).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// llama-110m in BF16 (220 MB) is what the benchmarks generate; report how long it takes.
TEST(DummyWeightsTest, Llama110mGenerates) {
  const ModelConfig c = *DummyPresetConfig("llama-110m");
  const auto start = std::chrono::steady_clock::now();
  auto w = MakeDummyWeights(c, 42, DType::kBF16);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(w.ok()) << w.status();
  std::cout << "llama-110m BF16 dummy weights: " << (*w)->matrix_bytes() / 1e6 << " MB in "
            << seconds << " s\n";
  EXPECT_EQ((*w)->matrix_bytes(), 2 * (c.NumParameters() - 25 * 768));
  EXPECT_TRUE(std::isfinite(At((*w)->layers()[11].down_proj, 12345)));
}

}  // namespace
}  // namespace pagoda::model

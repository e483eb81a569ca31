#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"

namespace pagoda::kernels::cpu {
namespace {

// SiLU-and-mul against a double-precision reference, on random values including large
// magnitudes (where exp over- or underflows in float) and lengths that leave vector tails.
TEST(ElementwiseTest, SiluAndMulMatchesReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (const int n : {1, 15, 16, 17, 100, 2048}) {
    std::vector<float> gate(n), up(n), out(n);
    for (int i = 0; i < n; ++i) {
      gate[i] = normal(rng);
      up[i] = normal(rng);
    }
    gate[0] = -100.0f;  // exp(100) overflows a float
    if (n > 1) gate[1] = 100.0f;
    SiluAndMul(gate.data(), up.data(), n, out.data());
    for (int i = 0; i < n; ++i) {
      const double g = gate[i];
      const double expected = g / (1.0 + std::exp(-g)) * up[i];
      // Relative 1e-6 (float rounding of a few operations and the exp polynomial's ~1e-7),
      // plus an absolute floor for results near zero.
      ASSERT_NEAR(out[i], expected, 1e-6 * std::abs(expected) + 1e-30) << "n=" << n << " i=" << i;
    }
    // In place (out aliases gate), as the model calls it.
    std::vector<float> in_place = gate;
    SiluAndMul(in_place.data(), up.data(), n, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

// RMSNorm against a double-precision reference, rows of lengths that leave vector tails, values
// up to 1e4 (a residual stream before its norm), in place as well.
// A bf16 table packed into WeightLayout::kTiles (a tied lm_head's) gives every row exactly,
// as the rows layout does: first and last rows of the blocks, repeats.
TEST(ElementwiseTest, EmbeddingReadsATiledTable) {
  constexpr int64_t kVocab = 48, kDim = 96;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> rows(kVocab * kDim), tiles(rows.size());
  for (uint16_t& v : rows) v = FloatToBf16(normal(rng));
  ThreadPool pool(2);
  PackWeightsToTiles(rows.data(), kVocab, kDim, tiles.data(), pool);
  const std::vector<TokenId> tokens = {0, 15, 16, 17, 47, 5, 5, 31};
  std::vector<float> from_rows(tokens.size() * kDim), from_tiles(from_rows.size());
  Embedding(tokens, rows.data(), WeightType::kBF16, kDim, from_rows.data());
  Embedding(tokens, tiles.data(), WeightType::kBF16, kDim, from_tiles.data(), WeightLayout::kTiles);
  EXPECT_EQ(from_tiles, from_rows);
  EXPECT_EQ(from_rows[kDim + 3], Bf16ToFloat(rows[15 * kDim + 3]));
}

TEST(ElementwiseTest, RmsNormMatchesReference) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const int dim : {1, 8, 15, 16, 17, 64, 100, 768, 8192}) {
    const int rows = 3;
    std::vector<float> x(static_cast<size_t>(rows) * dim), weight(dim), out(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * (i % 7 == 0 ? 1e4f : 1.0f);
    for (float& w : weight) w = 1.0f + 0.1f * normal(rng);
    RmsNorm(x.data(), weight.data(), rows, dim, 1e-5f, out.data());
    for (int r = 0; r < rows; ++r) {
      double sum = 0;
      for (int i = 0; i < dim; ++i) sum += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(sum / dim + 1e-5);
      for (int i = 0; i < dim; ++i) {
        const double expected = x[r * dim + i] * inv * weight[i];
        // A few float roundings (the scale, two products): relative 1e-6.
        ASSERT_NEAR(out[r * dim + i], expected, 1e-6 * std::abs(expected) + 1e-30)
            << "dim=" << dim << " row " << r << " i=" << i;
      }
    }
    std::vector<float> in_place = x;
    RmsNorm(in_place.data(), weight.data(), rows, dim, 1e-5f, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

}  // namespace
}  // namespace pagoda::kernels::cpu

namespace pagoda::kernels::cpu {
namespace {

// RoPE angles: float32 products below `exact_from` (Hugging Face's rounding), double from it
// on, where a float32 product at position 5e7 would be off by more than a radian.
TEST(RopeAnglesTest, PositionsPastTheContextAreExact) {
  const std::vector<float> inv_freq = RopeInverseFrequencies(64, 10000.0f, std::nullopt);
  const std::vector<int32_t> positions = {3, 4095, 50'000'000};
  RopeAngles angles;
  ComputeRopeAngles(positions, inv_freq, &angles, /*exact_from=*/4096);
  const size_t half = inv_freq.size();
  for (size_t t = 0; t < positions.size(); ++t) {
    for (size_t j = 0; j < half; ++j) {
      const long double angle = static_cast<long double>(positions[t]) * inv_freq[j];
      const float float_angle = static_cast<float>(positions[t]) * inv_freq[j];
      if (positions[t] < 4096) {  // exactly HF's float32 product
        EXPECT_EQ(angles.cos[t * half + j], std::cos(float_angle));
      } else {
        EXPECT_NEAR(angles.cos[t * half + j], static_cast<float>(std::cos(angle)), 1e-6f) << j;
        EXPECT_NEAR(angles.sin[t * half + j], static_cast<float>(std::sin(angle)), 1e-6f) << j;
      }
    }
  }
  // The float32 product is what the exact path avoids: at 5e7 it is off by more than 0.01 in
  // some dimension's cosine.
  float worst = 0;
  for (size_t j = 0; j < half; ++j) {
    worst = std::max(worst, std::fabs(std::cos(static_cast<float>(50'000'000) * inv_freq[j]) -
                                      static_cast<float>(std::cos(50'000'000.0L * inv_freq[j]))));
  }
  EXPECT_GT(worst, 0.01f);
}

}  // namespace
}  // namespace pagoda::kernels::cpu

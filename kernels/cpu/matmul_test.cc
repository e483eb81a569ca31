#include "kernels/cpu/matmul.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/matmul_amx.h"

namespace pagoda::kernels::cpu {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Each case checks MatMul (whatever vector path this CPU takes) against the portable loop on
// random inputs. Tolerance: f32 paths differ only by summation order, 1e-4 relative to the sum
// of |x*w|; the bf16-dot path also rounds activations to bf16 (8 bits of mantissa), so
// 2^-8 of that sum.
void CheckAgainstReference(WeightType type, const Shape& s, bool with_bias, int threads,
                           bool allow_amx = true) {
  std::mt19937 rng(static_cast<uint32_t>(s.m * 1000003 + s.n * 1009 + s.k));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(s.m * s.k), bias(s.n), y(s.m * s.n), ref(s.m * s.n);
  for (float& v : x) v = dist(rng);
  for (float& v : bias) v = dist(rng);
  std::vector<float> w32(s.n * s.k);
  std::vector<uint16_t> w16(s.n * s.k);
  for (size_t i = 0; i < w32.size(); ++i) {
    w16[i] = FloatToBf16(dist(rng));
    w32[i] = Bf16ToFloat(w16[i]);
  }
  MatMulArgs args{.x = x.data(),
                  .w = type == WeightType::kF32 ? static_cast<const void*>(w32.data())
                                                : static_cast<const void*>(w16.data()),
                  .w_type = type,
                  .bias = with_bias ? bias.data() : nullptr,
                  .y = ref.data(),
                  .m = s.m,
                  .n = s.n,
                  .k = s.k};
  MatMulReference(args);
  ThreadPool pool(threads);
  args.y = y.data();
  MatMul(args, pool, allow_amx);
  const std::string isa = MatMulIsa();
  const bool bf16_dot =
      type == WeightType::kBF16 && s.m >= 4 && (isa == "avx512bf16" || isa == "amx-bf16");
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      float magnitude = 0.0f;
      for (int64_t c = 0; c < s.k; ++c) magnitude += std::fabs(x[i * s.k + c] * w32[j * s.k + c]);
      const float tol = (bf16_dot ? 1.0f / 256 : 1e-4f) * (magnitude + 1.0f);
      ASSERT_NEAR(y[i * s.n + j], ref[i * s.n + j], tol)
          << "m=" << s.m << " n=" << s.n << " k=" << s.k << " at (" << i << "," << j << ")";
    }
  }
}

TEST(MatMulTest, MatchesReferenceForF32Weights) {
  for (const Shape& s :
       {Shape{1, 17, 64}, Shape{3, 64, 100}, Shape{9, 33, 768}, Shape{16, 8, 31}}) {
    CheckAgainstReference(WeightType::kF32, s, /*with_bias=*/false, 2);
    CheckAgainstReference(WeightType::kF32, s, /*with_bias=*/true, 1);
  }
}

TEST(MatMulTest, MatchesReferenceForBf16Weights) {
  for (const Shape& s :
       {Shape{1, 17, 64}, Shape{4, 64, 96}, Shape{16, 40, 768}, Shape{5, 7, 45}, Shape{2, 3, 1},
        // 8-row tiles reduced together (SumLanes16), with k tails past the last 32 and odd n.
        Shape{8, 34, 45}, Shape{24, 19, 100}}) {
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/true, 2);
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/true, 2, /*allow_amx=*/false);
  }
}

// The AMX tiles take bf16 products with n a multiple of 16 and k of 32: every row count (whole
// and partial 16-row blocks, pairs and single blocks of both), one and two output blocks, with
// and without bias, and the widths of llama-110m and TinyLlama.
TEST(MatMulTest, AmxTilesMatchTheReference) {
  if (!amx::Available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the kernel refuses it)";
  for (const Shape& s : {Shape{4, 16, 32}, Shape{16, 32, 64}, Shape{17, 48, 96}, Shape{33, 80, 768},
                         Shape{40, 16, 2048}, Shape{64, 2048, 64}, Shape{9, 112, 5632}}) {
    ASSERT_TRUE(MatMulTakesAmx({.w_type = WeightType::kBF16, .m = s.m, .n = s.n, .k = s.k}));
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/s.m % 2 == 1, 2);
  }
  EXPECT_EQ(std::string(MatMulIsa()), "amx-bf16");
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kBF16, .m = 16, .n = 40, .k = 64}));
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kBF16, .m = 16, .n = 48, .k = 48}));
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kF32, .m = 16, .n = 48, .k = 64}));
  // Three rows or fewer keep the exact f32 path.
  EXPECT_FALSE(MatMulTakesAmx({.w_type = WeightType::kBF16, .m = 3, .n = 48, .k = 64}));
}

TEST(MatMulTest, ReportsAnIsa) { EXPECT_FALSE(std::string(MatMulIsa()).empty()); }

}  // namespace
}  // namespace pagoda::kernels::cpu

#include "kernels/cpu/matmul.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"

namespace pagoda::kernels::cpu {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Each case checks MatMul (whatever vector path this CPU takes) against the portable loop on
// random inputs. Tolerance: f32 paths differ only by summation order, 1e-4 relative to the sum
// of |x*w|; the bf16-dot path also rounds activations to bf16 (8 bits of mantissa), so
// 2^-8 of that sum.
void CheckAgainstReference(WeightType type, const Shape& s, bool with_bias, int threads) {
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
  MatMul(args, pool);
  const bool bf16_dot =
      type == WeightType::kBF16 && s.m >= 4 && std::string(MatMulIsa()) == "avx512bf16";
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
       {Shape{1, 17, 64}, Shape{4, 64, 96}, Shape{16, 40, 768}, Shape{5, 7, 45}, Shape{2, 3, 1}}) {
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/true, 2);
  }
}

TEST(MatMulTest, ReportsAnIsa) { EXPECT_FALSE(std::string(MatMulIsa()).empty()); }

}  // namespace
}  // namespace pagoda::kernels::cpu

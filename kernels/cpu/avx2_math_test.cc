#include "kernels/cpu/avx2_math.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace pagoda::kernels::cpu::avx2 {
namespace {

// The 8-lane helpers, called directly so that they are checked wherever the CPU has AVX2 (the
// kernels take them only on CPUs without AVX-512), against double-precision references.

PAGODA_AVX2_TARGET void Exp8(const float* x, float* out) {
  _mm256_storeu_ps(out, Exp(_mm256_loadu_ps(x)));
}
PAGODA_AVX2_TARGET void SiluMul8(const float* g, const float* u, float* out) {
  _mm256_storeu_ps(out, SiluMul(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
}
PAGODA_AVX2_TARGET float Sum8Of(const float* x) { return Sum8(_mm256_loadu_ps(x)); }

// Relative 2e-7 (the polynomial's ~1e-7 and the float rounding of a few operations) over the
// whole unclamped range, the ends included; outside it the clamp gives exp(-87) and exp(88):
// never inf, never a denormal.
TEST(Avx2MathTest, ExpMatchesTheReference) {
  if (!Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  std::vector<float> x;
  for (float v = -87.0f; v <= 88.0f; v += 0.173f) x.push_back(v);
  for (const float v : {-87.0f, 88.0f, 0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, -0.5f}) x.push_back(v);
  while (x.size() % 8 != 0) x.push_back(1.0f);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); i += 8) Exp8(x.data() + i, out.data() + i);
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = std::exp(static_cast<double>(x[i]));
    ASSERT_NEAR(out[i], expected, 2e-7 * expected) << "exp(" << x[i] << ")";
  }
  const float beyond[8] = {-1000.0f, -88.5f, 89.0f, 1000.0f, -INFINITY, INFINITY, -87.0f, 88.0f};
  float clamped[8];
  Exp8(beyond, clamped);
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(std::isnormal(clamped[i])) << "exp(" << beyond[i] << ") = " << clamped[i];
    EXPECT_EQ(clamped[i], beyond[i] < 0 ? clamped[6] : clamped[7]) << "exp(" << beyond[i] << ")";
  }
}

// silu(g) * u, relative 1e-6 plus a floor near zero, with gates whose exp over- or underflows.
TEST(Avx2MathTest, SiluMulAndSum8MatchTheReference) {
  if (!Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> g(64), u(64), out(64);
  for (float& v : g) v = normal(rng);
  for (float& v : u) v = normal(rng);
  g[0] = -100.0f;
  g[1] = 100.0f;
  for (size_t i = 0; i < g.size(); i += 8) SiluMul8(g.data() + i, u.data() + i, out.data() + i);
  for (size_t i = 0; i < g.size(); ++i) {
    const double expected = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    ASSERT_NEAR(out[i], expected, 1e-6 * std::abs(expected) + 1e-30) << "i=" << i;
  }
  const float lanes[8] = {1, 2, 4, 8, 16, 32, 64, 128};  // a wrong lane shows in the sum's bits
  EXPECT_EQ(Sum8Of(lanes), 255.0f);
}

PAGODA_AVX2_TARGET void LoadInt8(const int8_t* p, float* out) { _mm256_storeu_ps(out, Load8(p)); }
PAGODA_AVX2_TARGET void LoadBf16(const Bf16* p, float* out) { _mm256_storeu_ps(out, Load8(p)); }

// Every int8 code, and bf16 values (the sign, a denormal, infinity), exactly.
TEST(Avx2MathTest, LoadsWidenInt8AndBf16Exactly) {
  if (!Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  int8_t codes[256];
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<int8_t>(i - 128);
  float out[256];
  for (int i = 0; i < 256; i += 8) LoadInt8(codes + i, out + i);
  for (int i = 0; i < 256; ++i) ASSERT_EQ(out[i], static_cast<float>(i - 128)) << i;
  const float values[8] = {1.0f, -2.5f, 3.0e38f, -1.0e-39f, INFINITY, 0.0f, -0.0f, 65504.0f};
  Bf16 rows[8];
  for (int i = 0; i < 8; ++i) rows[i].bits = FloatToBf16(values[i]);
  LoadBf16(rows, out);
  for (int i = 0; i < 8; ++i) {
    const float want = Bf16ToFloat(rows[i].bits);
    EXPECT_EQ(std::memcmp(&out[i], &want, sizeof(float)), 0) << values[i];  // -0 too
  }
}

PAGODA_AVX2_TARGET void SumInt8x8Of(const int32_t (*v)[8], int32_t* out) {
  __m256i x[8];
  for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v[i]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), SumInt8x8(x));
}

// Lane j of SumInt8x8 is the exact sum of vector j: each vector's lanes are distinct powers of
// two times a per-vector sign and offset, so a lane taken from the wrong vector or position shows.
TEST(Avx2MathTest, SumInt8x8SumsEachVectorIntoItsLane) {
  if (!Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  int32_t v[8][8];
  int64_t want[8] = {};
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 8; ++l) {
      v[j][l] = (j % 2 == 0 ? 1 : -1) * ((1 << (l + 3 * j % 7)) + 1000 * j);
      want[j] += v[j][l];
    }
  }
  int32_t out[8];
  SumInt8x8Of(v, out);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(out[j], want[j]) << "vector " << j;
}

}  // namespace
}  // namespace pagoda::kernels::cpu::avx2

#include "kernels/cpu/fp8.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"

namespace pagoda::kernels::cpu {
namespace {

// Values written out by hand from the OCP FP8 spec's tables.
TEST(Fp8Test, DecodesTheSpecsLandmarks) {
  EXPECT_EQ(Fp8E4M3ToFloat(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(Fp8E4M3ToFloat(0x80)));
  EXPECT_EQ(Fp8E4M3ToFloat(0x38), 1.0f);    // exponent 7 = bias
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e), 448.0f);  // S.1111.110
  EXPECT_EQ(Fp8E4M3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0x7f)));
  EXPECT_EQ(Fp8E5M2ToFloat(0x3c), 1.0f);
  EXPECT_EQ(Fp8E5M2ToFloat(0x7b), 57344.0f);
  EXPECT_EQ(Fp8E5M2ToFloat(0x01), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isinf(Fp8E5M2ToFloat(0x7c)));
  EXPECT_TRUE(std::isnan(Fp8E5M2ToFloat(0x7d)));
}

// Every finite code encodes back to itself (zero's sign kept), and the codes are ordered.
TEST(Fp8Test, EveryFiniteCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    const float e4 = Fp8E4M3ToFloat(static_cast<uint8_t>(code));
    if (!std::isnan(e4)) {
      EXPECT_EQ(FloatToFp8E4M3(e4), code) << code;
    }
    const float e5 = Fp8E5M2ToFloat(static_cast<uint8_t>(code));
    if (std::isfinite(e5)) {
      EXPECT_EQ(FloatToFp8E5M2(e5), code) << code;
    }
  }
  for (int code = 1; code < 0x7e; ++code) {
    EXPECT_LT(Fp8E4M3ToFloat(static_cast<uint8_t>(code)),
              Fp8E4M3ToFloat(static_cast<uint8_t>(code + 1)));
  }
}

// Encoding picks the nearest code, ties to the even code, on random values of every scale;
// checked against a search over the 256 decoded values. Overflow saturates; NaN stays NaN.
TEST(Fp8Test, EncodingRoundsToNearestEvenAndSaturates) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 18);
  const auto nearest = [](float x, float (*decode)(uint8_t), float max) {
    if (std::fabs(x) >= max) return std::copysign(max, x);
    float best = 0;
    double best_err = std::numeric_limits<double>::infinity();
    for (int code = 0; code < 256; ++code) {
      const float v = decode(static_cast<uint8_t>(code));
      if (!std::isfinite(v)) continue;
      const double err = std::fabs(static_cast<double>(v) - x);
      const bool even = (code & 1) == 0;
      if (err < best_err || (err == best_err && even)) best = v, best_err = err;
    }
    return best;
  };
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(mantissa(rng), exponent(rng));
    EXPECT_EQ(Fp8E4M3ToFloat(FloatToFp8E4M3(x)), nearest(x, Fp8E4M3ToFloat, kFp8E4M3Max)) << x;
    EXPECT_EQ(Fp8E5M2ToFloat(FloatToFp8E5M2(x)), nearest(x, Fp8E5M2ToFloat, kFp8E5M2Max)) << x;
  }
  EXPECT_EQ(Fp8E4M3ToFloat(FloatToFp8E4M3(1.0625f)), 1.0f);   // halfway 1 and 1.125: to even
  EXPECT_EQ(Fp8E4M3ToFloat(FloatToFp8E4M3(1.1875f)), 1.25f);  // halfway 1.125 and 1.25
  EXPECT_EQ(FloatToFp8E4M3(1e9f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(FloatToFp8E5M2(1e9f), 0x7b);
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(FloatToFp8E4M3(std::nanf("")))));
  EXPECT_TRUE(std::isnan(Fp8E5M2ToFloat(FloatToFp8E5M2(std::nanf("")))));
}

#if defined(__x86_64__)
// The AVX-512 loads (through float16) agree with the table on every finite code.
PAGODA_AVX512_TARGET void LoadAll(const uint8_t* codes, float* e4, float* e5) {
  for (int i = 0; i < 256; i += 16) {
    _mm512_storeu_ps(e4 + i, avx512::Load16(reinterpret_cast<const Fp8E4M3*>(codes + i)));
    _mm512_storeu_ps(e5 + i, avx512::Load16(reinterpret_cast<const Fp8E5M2*>(codes + i)));
  }
}

// Every finite code as the table decodes it; E5M2's NaN codes as NaN.
void ExpectEveryCodeDecoded(const float* e4, const float* e5) {
  for (int i = 0; i < 256; ++i) {
    const float want4 = Fp8E4M3ToFloat(static_cast<uint8_t>(i));
    if (!std::isnan(want4)) {
      EXPECT_EQ(e4[i], want4) << i;
    }
    const float want5 = Fp8E5M2ToFloat(static_cast<uint8_t>(i));
    if (std::isnan(want5)) {
      EXPECT_TRUE(std::isnan(e5[i])) << i;
    } else {
      EXPECT_EQ(e5[i], want5) << i;
    }
  }
}

uint8_t* AllCodes() {
  static uint8_t codes[256];
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  return codes;
}

TEST(Fp8Test, Avx512LoadsDecodeEveryCodeExactly) {
  if (!avx512::Supported()) GTEST_SKIP() << "no AVX-512";
  float e4[256], e5[256];
  LoadAll(AllCodes(), e4, e5);
  ExpectEveryCodeDecoded(e4, e5);
}

// The same for the 8-lane AVX2 loads (E4M3 as its value / 256, scaled back here).
PAGODA_AVX2_TARGET void LoadAllAvx2(const uint8_t* codes, float* e4, float* e5) {
  for (int i = 0; i < 256; i += 8) {
    const __m256 over256 = avx2::Load8Over256(reinterpret_cast<const Fp8E4M3*>(codes + i));
    _mm256_storeu_ps(e4 + i, _mm256_mul_ps(over256, _mm256_set1_ps(256.0f)));
    _mm256_storeu_ps(e5 + i, avx2::Load8(reinterpret_cast<const Fp8E5M2*>(codes + i)));
  }
}

TEST(Fp8Test, Avx2LoadsDecodeEveryCodeExactly) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2";
  float e4[256], e5[256];
  LoadAllAvx2(AllCodes(), e4, e5);
  ExpectEveryCodeDecoded(e4, e5);
}
#endif

}  // namespace
}  // namespace pagoda::kernels::cpu

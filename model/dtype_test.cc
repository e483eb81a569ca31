#include "model/dtype.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace pagoda::model {
namespace {

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(F32ToBf16(-2.5f), 0xc020);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to infinity
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::bit_cast<float>(0x7f800001u)))));
}

TEST(DTypeTest, EveryBf16RoundTrips) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float value = Bf16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    EXPECT_EQ(F32ToBf16(value), bits);
  }
}

TEST(DTypeTest, EveryF16RoundTripsThroughF32) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const float value = F16ToF32(static_cast<uint16_t>(bits));
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(value)))) << bits;
      continue;
    }
    ASSERT_EQ(F32ToF16(value), bits) << bits;
  }
}

TEST(DTypeTest, F16KnownValuesAndRounding) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // least subnormal
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);               // halfway to 65536: ties to even = infinity
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // halfway to the least subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 subnormal units: ties to 2
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  // Between the largest subnormal and the least normal: rounds up into the normals.
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)), 0x0400);
}

// Brute force against the nearest float16 found by comparing neighbours, on a sweep of floats.
TEST(DTypeTest, F16MatchesNearestOnSweep) {
  for (uint32_t bits = 0x33800000u; bits < 0x477ff000u; bits += 997) {
    const float value = std::bit_cast<float>(bits);
    const uint16_t h = F32ToF16(value);
    const double error = std::fabs(static_cast<double>(F16ToF32(h)) - value);
    const double below = std::fabs(static_cast<double>(F16ToF32(h - 1)) - value);
    EXPECT_LE(error, below) << bits;
    if (h < 0x7bff) {
      const double above = std::fabs(static_cast<double>(F16ToF32(h + 1)) - value);
      EXPECT_LE(error, above) << bits;
    }
  }
}

}  // namespace
}  // namespace pagoda::model

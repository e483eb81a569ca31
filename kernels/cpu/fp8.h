#pragma once

// The two OCP 8-bit floating-point formats of an FP8 KV cache (the "OFP8" spec that NVIDIA's
// __nv_fp8_e4m3 / __nv_fp8_e5m2 and vLLM's fp8 KV cache follow):
//   E4M3 ("fn": finite, no infinities): 1 sign, 4 exponent (bias 7), 3 mantissa bits; largest
//        448; subnormals down to 2^-9; S.1111.111 is NaN.
//   E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits, IEEE-like (infinities and NaNs);
//        largest finite 57344; subnormals down to 2^-16. It is the upper byte of a float16.
// Both decode exactly to float. Encoding rounds to nearest, ties to even, and saturates to the
// largest finite value (NVIDIA's __NV_SATFINITE), so a K/V value never becomes inf; NaN stays
// NaN. Header-only: the attention loops inline the decoding.

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace pagoda::kernels::cpu {

struct Fp8E4M3 {
  uint8_t bits;
};
struct Fp8E5M2 {
  uint8_t bits;
};

namespace internal {

// Every code's value, built at compile time from the bit layout.
template <int kExpBits, int kMantBits, bool kIeee>
constexpr std::array<float, 256> Fp8Table() {
  std::array<float, 256> table{};
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  constexpr int kMaxExp = (1 << kExpBits) - 1;
  for (int code = 0; code < 256; ++code) {
    const uint32_t sign = static_cast<uint32_t>(code >> 7) << 31;
    const int e = (code >> kMantBits) & kMaxExp;
    const int m = code & ((1 << kMantBits) - 1);
    float value;
    if (kIeee && e == kMaxExp) {
      value = std::bit_cast<float>(m == 0 ? 0x7f800000u : 0x7fc00000u);
    } else if (!kIeee && e == kMaxExp && m == (1 << kMantBits) - 1) {
      value = std::bit_cast<float>(0x7fc00000u);
    } else if (e == 0) {  // subnormal: m * 2^(1 - bias - mant_bits)
      value = static_cast<float>(m) *
              std::bit_cast<float>(static_cast<uint32_t>(127 + 1 - kBias - kMantBits) << 23);
    } else {
      value = std::bit_cast<float>(static_cast<uint32_t>(e - kBias + 127) << 23 |
                                   static_cast<uint32_t>(m) << (23 - kMantBits));
    }
    table[code] =
        (code >> 7) != 0 ? std::bit_cast<float>(std::bit_cast<uint32_t>(value) | sign) : value;
  }
  return table;
}

inline constexpr std::array<float, 256> kE4M3Values = Fp8Table<4, 3, false>();
inline constexpr std::array<float, 256> kE5M2Values = Fp8Table<5, 2, true>();

// Rounds |x| (finite, >= 0) to the format's grid, ties to even, and saturates to `max_finite`;
// returns the code of the result (without sign). The grid's step is 2^(e - mant_bits) in the
// binade [2^e, 2^(e+1)) and the subnormal step below the smallest normal.
template <int kExpBits, int kMantBits>
inline uint8_t EncodeMagnitude(float a, float max_finite) {
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  constexpr int kMinNormalExp = 1 - kBias;
  if (a >= max_finite) a = max_finite;
  int exp = 0;
  std::frexp(a, &exp);  // a = f * 2^exp with f in [0.5, 1)
  const int binade = exp - 1 < kMinNormalExp ? kMinNormalExp : exp - 1;
  const float step = std::ldexp(1.0f, binade - kMantBits);
  const float q = std::nearbyint(a / step) * step;  // ties to even (the default rounding mode)
  const float r = q > max_finite ? max_finite : q;
  if (r == 0.0f) return 0;
  std::frexp(r, &exp);
  const int e = exp - 1;
  if (e < kMinNormalExp) {  // subnormal: the multiple of the subnormal step
    return static_cast<uint8_t>(r / std::ldexp(1.0f, kMinNormalExp - kMantBits));
  }
  const int m = static_cast<int>(std::ldexp(r, -e) * (1 << kMantBits)) - (1 << kMantBits);
  return static_cast<uint8_t>((e + kBias) << kMantBits | m);
}

}  // namespace internal

inline float Fp8E4M3ToFloat(uint8_t bits) { return internal::kE4M3Values[bits]; }
inline float Fp8E5M2ToFloat(uint8_t bits) { return internal::kE5M2Values[bits]; }

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

inline uint8_t FloatToFp8E4M3(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  return sign | internal::EncodeMagnitude<4, 3>(std::fabs(x), kFp8E4M3Max);
}

inline uint8_t FloatToFp8E5M2(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  return sign | internal::EncodeMagnitude<5, 2>(std::fabs(x), kFp8E5M2Max);
}

inline float ToFloat(Fp8E4M3 x) { return Fp8E4M3ToFloat(x.bits); }
inline float ToFloat(Fp8E5M2 x) { return Fp8E5M2ToFloat(x.bits); }
inline void FromFloat(float x, Fp8E4M3* out) { out->bits = FloatToFp8E4M3(x); }
inline void FromFloat(float x, Fp8E5M2* out) { out->bits = FloatToFp8E5M2(x); }

// The largest finite value of a KV element type: a scaled cache's scale is absmax / this.
template <typename T>
constexpr float ScaledMax();
template <>
constexpr float ScaledMax<int8_t>() {
  return 127.0f;
}
template <>
constexpr float ScaledMax<Fp8E4M3>() {
  return kFp8E4M3Max;
}
template <>
constexpr float ScaledMax<Fp8E5M2>() {
  return kFp8E5M2Max;
}

}  // namespace pagoda::kernels::cpu

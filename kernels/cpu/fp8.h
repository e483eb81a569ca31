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
#include <type_traits>

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

// Encodes a float's magnitude bits `u` (sign cleared, not NaN) in a format of kMantBits mantissa
// bits and exponent bias kBias, rounding to nearest even and saturating to `max_code` (the
// largest finite code) for values at or above `max_bits` (the largest finite value's float
// bits). Normal results round the float's mantissa in place (a carry moves into the exponent,
// as it should) and rebias the exponent; subnormal results count subnormal steps.
template <int kMantBits, int kBias>
inline uint8_t EncodeMagnitudeBits(uint32_t u, uint32_t max_bits, uint32_t max_code) {
  if (u >= max_bits) return static_cast<uint8_t>(max_code);
  constexpr int kDrop = 23 - kMantBits;
  constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(127 + 1 - kBias) << 23;
  if (u >= kMinNormalBits) {
    const uint32_t rounded = u + ((1u << (kDrop - 1)) - 1) + ((u >> kDrop) & 1u);
    const uint32_t code = (rounded >> kDrop) - (static_cast<uint32_t>(127 - kBias) << kMantBits);
    return static_cast<uint8_t>(code > max_code ? max_code : code);
  }
  // Below the smallest normal: multiples of 2^(1 - bias - mant_bits), ties to even.
  const float steps =
      std::bit_cast<float>(u) *
      std::bit_cast<float>(static_cast<uint32_t>(127 - 1 + kBias + kMantBits) << 23);
  return static_cast<uint8_t>(std::nearbyint(steps));
}

}  // namespace internal

inline float Fp8E4M3ToFloat(uint8_t bits) { return internal::kE4M3Values[bits]; }
inline float Fp8E5M2ToFloat(uint8_t bits) { return internal::kE5M2Values[bits]; }

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;

namespace internal {

// x in a format of kMantBits mantissa bits and bias kBias whose largest finite value is
// `max_value` (code `max_code`); NaN becomes 0x7f, a NaN in both formats.
template <int kMantBits, int kBias>
inline uint8_t FloatToFp8(float x, float max_value, uint32_t max_code) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t u = bits & 0x7fffffffu;
  if (u > 0x7f800000u) return 0x7f;
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  return sign |
         EncodeMagnitudeBits<kMantBits, kBias>(u, std::bit_cast<uint32_t>(max_value), max_code);
}

}  // namespace internal

inline uint8_t FloatToFp8E4M3(float x) { return internal::FloatToFp8<3, 7>(x, kFp8E4M3Max, 0x7e); }
inline uint8_t FloatToFp8E5M2(float x) { return internal::FloatToFp8<2, 15>(x, kFp8E5M2Max, 0x7b); }

inline float ToFloat(Fp8E4M3 x) { return Fp8E4M3ToFloat(x.bits); }
inline float ToFloat(Fp8E5M2 x) { return Fp8E5M2ToFloat(x.bits); }
inline void FromFloat(float x, Fp8E4M3* out) { out->bits = FloatToFp8E4M3(x); }
inline void FromFloat(float x, Fp8E5M2* out) { out->bits = FloatToFp8E5M2(x); }

// The 8-bit KV element types, stored with a scale per token and head (or, FP8, per head).
template <typename T>
inline constexpr bool kScaled =
    std::is_same_v<T, int8_t> || std::is_same_v<T, Fp8E4M3> || std::is_same_v<T, Fp8E5M2>;

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

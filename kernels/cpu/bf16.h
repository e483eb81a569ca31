#pragma once

#include <cstdint>
#include <cstring>

namespace pagoda::kernels::cpu {

// A bfloat16 value in memory (the upper half of a float), as stored in a BF16 KV cache.
struct Bf16 {
  uint16_t bits;
};

// bfloat16 <-> float. Round to nearest even; NaN stays NaN.
inline float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Widening conversions the attention loops inline into vectorized code.
inline float ToFloat(float x) { return x; }
inline float ToFloat(int8_t x) { return static_cast<float>(x); }
inline float ToFloat(Bf16 x) { return Bf16ToFloat(x.bits); }
inline void FromFloat(float x, float* out) { *out = x; }
inline void FromFloat(float x, Bf16* out) { out->bits = FloatToBf16(x); }

}  // namespace pagoda::kernels::cpu

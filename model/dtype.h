#pragma once

// Element types of model weights and their conversions to and from float32. Header-only: the
// conversions sit in the inner loops of weight loading and of the CPU kernels.

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kernels/cpu/bf16.h"

namespace pagoda::model {

// Element type of a weight tensor or of the KV cache. kF32, kBF16, kF16 are little-endian
// IEEE-754 formats: float32, bfloat16 (the upper half of a float32), float16 (binary16). kInt8
// and the FP8 types (OCP E4M3 and E5M2, kernels/cpu/fp8.h) are KV-cache types only, stored with
// a bf16 scale per token and head (kernels/paged_kv_cache.h); weights never have them.
enum class DType { kF32, kBF16, kF16, kInt8, kFp8E4M3, kFp8E5M2 };

// The 8-bit KV-cache types, which carry per-token scales.
constexpr bool IsScaledKvType(DType dtype) {
  return dtype == DType::kInt8 || dtype == DType::kFp8E4M3 || dtype == DType::kFp8E5M2;
}

// The dtype a flag value names, case-insensitively: f32/fp32/float32, bf16/bfloat16,
// f16/fp16/float16, int8, fp8/fp8_e4m3 (vLLM's alias), fp8_e5m2; nullopt otherwise. Which ones
// a flag accepts is the flag's business.
inline std::optional<DType> DTypeFromFlagValue(std::string_view value) {
  std::string lower(value);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "f32" || lower == "fp32" || lower == "float32") return DType::kF32;
  if (lower == "bf16" || lower == "bfloat16") return DType::kBF16;
  if (lower == "f16" || lower == "fp16" || lower == "float16") return DType::kF16;
  if (lower == "int8") return DType::kInt8;
  if (lower == "fp8" || lower == "fp8_e4m3") return DType::kFp8E4M3;
  if (lower == "fp8_e5m2") return DType::kFp8E5M2;
  return std::nullopt;
}

// Bytes per element (an int8 KV cache's scales come on top: CpuKvCache::BytesPerBlock).
constexpr int64_t DTypeSize(DType dtype) {
  return dtype == DType::kF32 ? 4 : IsScaledKvType(dtype) ? 1 : 2;
}

// The safetensors spelling: "F32", "BF16", "F16".
constexpr std::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kInt8:
      return "I8";
    case DType::kFp8E4M3:
      return "F8_E4M3";
    case DType::kFp8E5M2:
      return "F8_E5M2";
  }
  return "?";
}

// Exact: every bfloat16 is a float32. (The kernels' conversion, so loader and kernels agree.)
inline float Bf16ToF32(uint16_t bits) { return kernels::cpu::Bf16ToFloat(bits); }

// Round to nearest, ties to even. NaN stays NaN (quiet); infinities and overflow give infinity.
inline uint16_t F32ToBf16(float value) { return kernels::cpu::FloatToBf16(value); }

// Exact: every float16 (subnormals included) is a float32.
inline float F16ToF32(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even, with float16 subnormals. NaN stays NaN (quiet); magnitudes of
// 65520 and above give infinity.
inline uint16_t F32ToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | (magnitude >> 13));
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520
  if (magnitude >= 0x38800000u) {  // a float16 normal: rebias the exponent, round 23 -> 10 bits
    uint32_t rebiased = magnitude - 0x38000000u;
    rebiased += 0xfffu + ((rebiased >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rebiased >> 13));
  }
  if (magnitude < 0x33000000u)
    return static_cast<uint16_t>(sign);  // below half the least subnormal
  // A float16 subnormal: the result counts units of 2^-24. The mantissa with its hidden bit is
  // value * 2^(150 - exponent), so shift right by 126 - exponent (14..24), rounding to even.
  const uint32_t exponent = magnitude >> 23;
  const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exponent;
  uint32_t result = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (result & 1u) != 0)) ++result;
  return static_cast<uint16_t>(sign | result);
}

}  // namespace pagoda::model

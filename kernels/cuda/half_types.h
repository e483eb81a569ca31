#pragma once

// Host-side conversions between float and the GPU kernels' 16-bit element types
// (__nv_bfloat16, __half), rounding to nearest even; for tests, benchmarks and weight loaders.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace pagoda::kernels::cuda {

template <typename T>
T FromFloatHost(float x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(x);
  } else {
    static_assert(std::is_same_v<T, __half>, "T must be __nv_bfloat16 or __half");
    return __float2half_rn(x);
  }
}

template <typename T>
float ToFloatHost(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    static_assert(std::is_same_v<T, __half>, "T must be __nv_bfloat16 or __half");
    return __half2float(x);
  }
}

// x rounded to T and back: the value a T array holds for x.
template <typename T>
float RoundToHost(float x) {
  return ToFloatHost(FromFloatHost<T>(x));
}

// The 16 bits of x, and back.
template <typename T>
uint16_t BitsOf(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return static_cast<__nv_bfloat16_raw>(x).x;
  } else {
    static_assert(std::is_same_v<T, __half>, "T must be __nv_bfloat16 or __half");
    return static_cast<__half_raw>(x).x;
  }
}

template <typename T>
T FromBits(uint16_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return T(raw);
  } else {
    static_assert(std::is_same_v<T, __half>, "T must be __nv_bfloat16 or __half");
    __half_raw raw;
    raw.x = bits;
    return T(raw);
  }
}

}  // namespace pagoda::kernels::cuda

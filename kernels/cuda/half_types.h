#pragma once

// Host-side conversions between float and the GPU kernels' 16-bit element types
// (__nv_bfloat16, __half), rounding to nearest even; for tests, benchmarks and weight loaders.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

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

// The values of `values` in T.
template <typename T>
std::vector<T> ToDeviceType(const std::vector<float>& values) {
  std::vector<T> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = FromFloatHost<T>(values[i]);
  return out;
}

// `n` values drawn from N(0, sigma) with `seed`, already rounded to T (so a kernel reading them
// as T sees exactly these floats).
template <typename T>
std::vector<float> RandomRounded(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> values(n);
  for (float& x : values) x = RoundToHost<T>(normal(rng));
  return values;
}

}  // namespace pagoda::kernels::cuda

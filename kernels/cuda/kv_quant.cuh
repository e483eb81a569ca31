#pragma once

// 8-bit KV-cache elements on the GPU (internal to kernels/cuda): int8_t, __nv_fp8_e4m3 and
// __nv_fp8_e5m2, with the layout and scales of kernels/paged_kv_cache.h (a bf16 scale per token
// and KV head beside the block, or a static float scale per KV head). The quantizer rounds
// exactly as the CPU one (kernels/cpu/paged_attention.cc, QuantizeHead): scale = bf16(absmax /
// the type's largest value), then x / scale rounded to nearest even and saturated, so a pool
// written on either device decodes to the same values.
//
// Dequantizing is exact in the kernels' 16-bit types: int8 values, E4M3 and E5M2 all fit the
// significand and exponent range of both bf16 and fp16. So the attention kernels turn a tile of
// 8-bit elements into a tile of T as it is, and apply the scales outside the tensor-core
// products: a key's scale to its score, a value's scale to its probability.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/mma_primitives.cuh"

namespace pagoda::kernels::cuda::internal {

template <typename C>
inline constexpr bool kQuantizedKv =
    std::is_same_v<C, int8_t> || std::is_same_v<C, __nv_fp8_e4m3> ||
    std::is_same_v<C, __nv_fp8_e5m2>;

// The largest finite value of an 8-bit KV type (a scale is absmax / this).
template <typename C>
__host__ __device__ constexpr float QuantMax() {
  if constexpr (std::is_same_v<C, int8_t>) {
    return 127.0f;
  } else if constexpr (std::is_same_v<C, __nv_fp8_e4m3>) {
    return 448.0f;
  } else {
    static_assert(std::is_same_v<C, __nv_fp8_e5m2>);
    return 57344.0f;
  }
}

// A bf16 scale's bits as float, and a float rounded (to nearest even) to bf16 bits.
__host__ __device__ __forceinline__ float Bf16BitsToFloat(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

__host__ __device__ __forceinline__ uint16_t FloatToBf16Bits(float x) {
  const __nv_bfloat16 b = __float2bfloat16_rn(x);
  uint16_t bits;
  std::memcpy(&bits, &b, sizeof(bits));
  return bits;
}

// x (already divided by the scale) as an 8-bit element: nearest even, saturated.
template <typename C>
__host__ __device__ __forceinline__ uint8_t QuantizeElement(float x) {
  if constexpr (std::is_same_v<C, int8_t>) {
    const float q = fminf(fmaxf(rintf(x), -127.0f), 127.0f);
    return static_cast<uint8_t>(static_cast<int8_t>(q));
  } else {
    constexpr __nv_fp8_interpretation_t kind =
        std::is_same_v<C, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2;
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, kind));
  }
}

// Two consecutive 8-bit elements (the low byte first) as a packed pair of T, exactly. FP8 goes
// through the hardware's fp8x2 -> f16x2 conversion on sm_89 and later.
template <typename C, typename T>
__device__ __forceinline__ uint32_t DequantizePair(uint16_t two) {
  float lo, hi;
  if constexpr (std::is_same_v<C, int8_t>) {
    lo = static_cast<float>(static_cast<int8_t>(two & 0xff));
    hi = static_cast<float>(static_cast<int8_t>(two >> 8));
  } else {
    constexpr __nv_fp8_interpretation_t kind =
        std::is_same_v<C, __nv_fp8_e4m3> ? __NV_E4M3 : __NV_E5M2;
    const __half2_raw raw =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), kind);
    if constexpr (std::is_same_v<T, __half>) {
      uint32_t packed;
      std::memcpy(&packed, &raw, sizeof(packed));
      return packed;
    }
    __half_raw l, h;
    l.x = raw.x;
    h.x = raw.y;
    lo = __half2float(__half(l));
    hi = __half2float(__half(h));
  }
  return PackPair<T>(lo, hi);
}

// Dequantizes a raw K tile and the V tile that follows it ([rows][kHeadDim] bytes each) into
// the 16-bit K and V tiles at `k_out` and `k_out + tile_elems` ([rows][kRowStride] elements),
// each thread taking the pairs first, first + step, ... (first and step even).
template <typename C, typename T, int kHeadDim, int kRowStride>
__device__ __forceinline__ void DequantizeTiles(const uint8_t* raw, int raw_tile_bytes, T* k_out,
                                                int tile_elems, int first, int step) {
  for (int i = first; i < raw_tile_bytes; i += step) {
    const int d = (i / kHeadDim) * kRowStride + i % kHeadDim;
    *reinterpret_cast<uint32_t*>(k_out + d) =
        DequantizePair<C, T>(*reinterpret_cast<const uint16_t*>(raw + i));
    *reinterpret_cast<uint32_t*>(k_out + tile_elems + d) =
        DequantizePair<C, T>(*reinterpret_cast<const uint16_t*>(raw + raw_tile_bytes + i));
  }
}

}  // namespace pagoda::kernels::cuda::internal

#pragma once

// The reshape-and-cache kernel (internal to kernels/cuda; reshape_and_cache.cu launches it, and
// the CPU emulation test runs the same source).

#include <cstdint>

#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/reshape_and_cache.h"

namespace pagoda::kernels::cuda::internal {

inline constexpr int kReshapeThreads = 128;

// The cache position (block, offset in the block) of token `token`'s slot; false for a negative
// slot (padding) or one past the pool (a caller bug that must not corrupt memory).
template <typename T, typename C>
__device__ __forceinline__ bool TokenSlot(const ReshapeAndCacheParams<T, C>& p, int64_t token,
                                          int64_t* block, int64_t* offset) {
  const int64_t slot = p.slot_mapping[token];
  if (slot < 0) return false;
  *block = slot / p.cache.block_size;
  *offset = slot % p.cache.block_size;
  return *block < p.cache.num_blocks;
}

// One block per token; each thread copies 16-byte vectors of the token's K and V rows.
template <typename T>
__global__ void __launch_bounds__(kReshapeThreads)
    ReshapeAndCacheKernel(const ReshapeAndCacheParams<T> p) {
  const int64_t token = blockIdx.x;
  const PagedKvCacheView<T>& c = p.cache;
  int64_t block, offset;
  if (!TokenSlot(p, token, &block, &offset)) return;
  const int vecs_per_head = c.head_dim / kVecElems;
  for (int v = threadIdx.x; v < c.num_kv_heads * vecs_per_head; v += kReshapeThreads) {
    const int head = v / vecs_per_head;
    const int col = (v % vecs_per_head) * kVecElems;
    const int64_t dst =
        ((block * c.num_kv_heads + head) * c.block_size + offset) * c.head_dim + col;
    const int64_t src_col = static_cast<int64_t>(head) * c.head_dim + col;
    const uint4 k = *reinterpret_cast<const uint4*>(p.key + token * p.key_token_stride + src_col);
    const uint4 val =
        *reinterpret_cast<const uint4*>(p.value + token * p.value_token_stride + src_col);
    *reinterpret_cast<uint4*>(c.key + dst) = k;
    *reinterpret_cast<uint4*>(c.value + dst) = val;
  }
}

// One warp quantizes one token's head of `d` elements: the scale is the head's absmax / the
// type's largest value, rounded to bf16 (stored by lane 0), or `static_scale` when `scale_out`
// is null (FP8 with per-head scales).
template <typename T, typename C>
__device__ __forceinline__ void QuantizeHeadRow(const T* src, C* dst, uint16_t* scale_out,
                                                float static_scale, int d, int lane) {
  float scale = static_scale;
  if (scale_out != nullptr) {
    float amax = 0.0f;
    for (int i = lane; i < d; i += kWarpSize) amax = fmaxf(amax, fabsf(ToFloat(src[i])));
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, offset));
    }
    const uint16_t bits = FloatToBf16Bits(amax / QuantMax<C>());
    if (lane == 0) *scale_out = bits;
    scale = Bf16BitsToFloat(bits);
  }
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  uint8_t* out = reinterpret_cast<uint8_t*>(dst);
  for (int i = lane; i < d; i += kWarpSize) out[i] = QuantizeElement<C>(ToFloat(src[i]) * inv);
}

// The 8-bit cache's version: one block per token, one warp per KV head (in turn).
template <typename T, typename C>
__global__ void __launch_bounds__(kReshapeThreads)
    ReshapeAndQuantizeKernel(const ReshapeAndCacheParams<T, C> p) {
  const int64_t token = blockIdx.x;
  const PagedKvCacheView<C>& c = p.cache;
  int64_t block, offset;
  if (!TokenSlot(p, token, &block, &offset)) return;
  const int lane = threadIdx.x % kWarpSize;
  for (int head = threadIdx.x / kWarpSize; head < c.num_kv_heads;
       head += kReshapeThreads / kWarpSize) {
    const int64_t s = (block * c.num_kv_heads + head) * c.block_size + offset;  // ScaleIndex
    const int64_t src = static_cast<int64_t>(head) * c.head_dim;
    const bool per_token = c.key_scale != nullptr;
    QuantizeHeadRow<T, C>(p.key + token * p.key_token_stride + src, c.key + s * c.head_dim,
                          per_token ? c.key_scale + s : nullptr,
                          per_token ? 0.0f : c.head_key_scale[head], c.head_dim, lane);
    QuantizeHeadRow<T, C>(p.value + token * p.value_token_stride + src, c.value + s * c.head_dim,
                          per_token ? c.value_scale + s : nullptr,
                          per_token ? 0.0f : c.head_value_scale[head], c.head_dim, lane);
  }
}

}  // namespace pagoda::kernels::cuda::internal

#pragma once

// The reshape-and-cache kernel (internal to kernels/cuda; reshape_and_cache.cu launches it, and
// the CPU emulation test runs the same source).

#include <cstdint>

#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/reshape_and_cache.h"

namespace pagoda::kernels::cuda::internal {

inline constexpr int kReshapeThreads = 128;

// One block per token; each thread copies 16-byte vectors of the token's K and V rows.
template <typename T>
__global__ void __launch_bounds__(kReshapeThreads)
    ReshapeAndCacheKernel(const ReshapeAndCacheParams<T> p) {
  const int64_t token = blockIdx.x;
  const int64_t slot = p.slot_mapping[token];
  const PagedKvCacheView<T>& c = p.cache;
  if (slot < 0) return;
  const int64_t block = slot / c.block_size;
  const int64_t offset = slot % c.block_size;
  if (block >= c.num_blocks) return;
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

}  // namespace pagoda::kernels::cuda::internal

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/reshape_and_cache.h"

namespace pagoda::kernels::cuda {
namespace {

using internal::kVecElems;

constexpr int kThreads = 128;

// One block per token; each thread copies 16-byte vectors of the token's K and V rows.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ReshapeAndCacheKernel(const ReshapeAndCacheParams<T> p) {
  const int64_t token = blockIdx.x;
  const int64_t slot = p.slot_mapping[token];
  const PagedKvCacheView<T>& c = p.cache;
  if (slot < 0) return;
  const int64_t block = slot / c.block_size;
  const int64_t offset = slot % c.block_size;
  if (block >= c.num_blocks) return;
  const int vecs_per_head = c.head_dim / kVecElems;
  for (int v = threadIdx.x; v < c.num_kv_heads * vecs_per_head; v += kThreads) {
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

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

template <typename T>
absl::Status ReshapeAndCache(const ReshapeAndCacheParams<T>& p, cudaStream_t stream) {
  const PagedKvCacheView<T>& c = p.cache;
  if (p.num_tokens < 0 || c.head_dim <= 0 || c.head_dim % kVecElems != 0 ||
      p.key_token_stride % kVecElems != 0 || p.value_token_stride % kVecElems != 0 ||
      c.num_kv_heads <= 0 || c.block_size <= 0) {
    return absl::InvalidArgumentError(
        "ReshapeAndCache: head_dim and token strides must be positive multiples of 8");
  }
  const int64_t row = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  if (p.key_token_stride < row || p.value_token_stride < row) {
    return absl::InvalidArgumentError("ReshapeAndCache: token strides < num_kv_heads * head_dim");
  }
  if (!Aligned16(p.key) || !Aligned16(p.value) || !Aligned16(c.key) || !Aligned16(c.value)) {
    return absl::InvalidArgumentError("ReshapeAndCache: arrays must be 16-byte aligned");
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  if (p.key == nullptr || p.value == nullptr || c.key == nullptr || c.value == nullptr ||
      p.slot_mapping == nullptr) {
    return absl::InvalidArgumentError("ReshapeAndCache: null device pointer");
  }
  ReshapeAndCacheKernel<T><<<p.num_tokens, kThreads, 0, stream>>>(p);
  return LaunchStatus("ReshapeAndCacheKernel");
}

template absl::Status ReshapeAndCache<__nv_bfloat16>(const ReshapeAndCacheParams<__nv_bfloat16>&,
                                                     cudaStream_t);
template absl::Status ReshapeAndCache<__half>(const ReshapeAndCacheParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda

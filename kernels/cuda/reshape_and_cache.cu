#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/reshape_and_cache.h"
#include "kernels/cuda/reshape_and_cache_kernel.cuh"

namespace pagoda::kernels::cuda {
namespace {

using internal::kVecElems;

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
  return internal::LaunchKernel("ReshapeAndCacheKernel", &internal::ReshapeAndCacheKernel<T>,
                                p.num_tokens, internal::kReshapeThreads, 0, stream, p);
}

template absl::Status ReshapeAndCache<__nv_bfloat16>(const ReshapeAndCacheParams<__nv_bfloat16>&,
                                                     cudaStream_t);
template absl::Status ReshapeAndCache<__half>(const ReshapeAndCacheParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda

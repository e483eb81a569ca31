#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/attention_params_check.h"
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

template <typename T, typename C>
absl::Status ReshapeAndCache(const ReshapeAndCacheParams<T, C>& p, cudaStream_t stream) {
  const PagedKvCacheView<C>& c = p.cache;
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
  if (absl::Status status = internal::CheckKvScales(p); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ReshapeAndCache: ", status.message()));
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  if (p.key == nullptr || p.value == nullptr || c.key == nullptr || c.value == nullptr ||
      p.slot_mapping == nullptr) {
    return absl::InvalidArgumentError("ReshapeAndCache: null device pointer");
  }
  if constexpr (internal::kQuantizedKv<C>) {
    return internal::LaunchKernel("ReshapeAndQuantizeKernel",
                                  &internal::ReshapeAndQuantizeKernel<T, C>, p.num_tokens,
                                  internal::kReshapeThreads, 0, stream, p);
  } else {
    return internal::LaunchKernel("ReshapeAndCacheKernel", &internal::ReshapeAndCacheKernel<T>,
                                  p.num_tokens, internal::kReshapeThreads, 0, stream, p);
  }
}

#define PAGODA_INSTANTIATE_RESHAPE(T, C) \
  template absl::Status ReshapeAndCache<T, C>(const ReshapeAndCacheParams<T, C>&, cudaStream_t);
PAGODA_INSTANTIATE_RESHAPE(__nv_bfloat16, __nv_bfloat16)
PAGODA_INSTANTIATE_RESHAPE(__half, __half)
PAGODA_INSTANTIATE_RESHAPE(__nv_bfloat16, int8_t)
PAGODA_INSTANTIATE_RESHAPE(__nv_bfloat16, __nv_fp8_e4m3)
PAGODA_INSTANTIATE_RESHAPE(__nv_bfloat16, __nv_fp8_e5m2)
#undef PAGODA_INSTANTIATE_RESHAPE

}  // namespace pagoda::kernels::cuda

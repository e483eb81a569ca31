#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rope_kernel.cuh"

namespace pagoda::kernels::cuda {

template <typename T>
absl::Status ApplyRope(const RopeParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_heads <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      p.query_token_stride < static_cast<int64_t>(p.num_heads) * p.head_dim ||
      (p.key != nullptr &&
       (p.num_kv_heads <= 0 ||
        p.key_token_stride < static_cast<int64_t>(p.num_kv_heads) * p.head_dim))) {
    return absl::InvalidArgumentError("ApplyRope: bad sizes or strides");
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  if (p.query == nullptr || p.positions == nullptr || p.inv_freq == nullptr) {
    return absl::InvalidArgumentError("ApplyRope: null device pointer");
  }
  const size_t smem = sizeof(float) * p.head_dim;
  return internal::LaunchKernel("RopeKernel", &internal::RopeKernel<T>, p.num_tokens,
                                internal::kRopeThreads, smem, stream, p);
}

template absl::Status ApplyRope<__nv_bfloat16>(const RopeParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status ApplyRope<__half>(const RopeParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda

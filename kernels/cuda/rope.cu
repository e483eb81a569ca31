#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/rope.h"

namespace pagoda::kernels::cuda {
namespace {

constexpr int kThreads = 128;

// One block per token: the token's cos/sin table in shared memory, then every (head, j) pair.
template <typename T>
__global__ void __launch_bounds__(kThreads) RopeKernel(const RopeParams<T> p) {
  float* table = internal::DynamicShared<float>();  // cos [half], then sin [half]
  const int half = p.head_dim / 2;
  float* cos_table = table;
  float* sin_table = table + half;
  const int64_t t = blockIdx.x;
  const float position = static_cast<float>(p.positions[t]);
  for (int j = threadIdx.x; j < half; j += kThreads) {
    // The angle rounded to float first, as the CPU reference and Hugging Face do.
    const float angle = position * p.inv_freq[j];
    sincosf(angle, &sin_table[j], &cos_table[j]);
  }
  __syncthreads();
  const int num_heads = p.num_heads + (p.key != nullptr ? p.num_kv_heads : 0);
  for (int i = threadIdx.x; i < num_heads * half; i += kThreads) {
    const int h = i / half;
    const int j = i % half;
    T* x =
        h < p.num_heads
            ? p.query + t * p.query_token_stride + static_cast<int64_t>(h) * p.head_dim
            : p.key + t * p.key_token_stride + static_cast<int64_t>(h - p.num_heads) * p.head_dim;
    const float a = internal::ToFloat(x[j]);
    const float b = internal::ToFloat(x[j + half]);
    x[j] = internal::FromFloat<T>(a * cos_table[j] - b * sin_table[j]);
    x[j + half] = internal::FromFloat<T>(b * cos_table[j] + a * sin_table[j]);
  }
}

}  // namespace

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
  RopeKernel<T><<<p.num_tokens, kThreads, smem, stream>>>(p);
  return LaunchStatus("RopeKernel");
}

template absl::Status ApplyRope<__nv_bfloat16>(const RopeParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status ApplyRope<__half>(const RopeParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda

#pragma once

// The RoPE kernel (internal to kernels/cuda; rope.cu launches it, and the CPU emulation test
// runs the same source).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/rope.h"

namespace pagoda::kernels::cuda::internal {

inline constexpr int kRopeThreads = 128;

// One block per token: the token's cos/sin table in shared memory, then every (head, j) pair.
template <typename T>
__global__ void __launch_bounds__(kRopeThreads) RopeKernel(const RopeParams<T> p) {
  float* table = DynamicShared<float>();  // cos [half], then sin [half]
  const int half = p.head_dim / 2;
  float* cos_table = table;
  float* sin_table = table + half;
  const int64_t t = blockIdx.x;
  const float position = static_cast<float>(p.positions[t]);
  for (int j = threadIdx.x; j < half; j += kRopeThreads) {
    // The angle rounded to float first, as the CPU reference and Hugging Face do.
    const float angle = position * p.inv_freq[j];
    sincosf(angle, &sin_table[j], &cos_table[j]);
  }
  __syncthreads();
  const int num_heads = p.num_heads + (p.key != nullptr ? p.num_kv_heads : 0);
  for (int i = threadIdx.x; i < num_heads * half; i += kRopeThreads) {
    const int h = i / half;
    const int j = i % half;
    T* x =
        h < p.num_heads
            ? p.query + t * p.query_token_stride + static_cast<int64_t>(h) * p.head_dim
            : p.key + t * p.key_token_stride + static_cast<int64_t>(h - p.num_heads) * p.head_dim;
    const float a = ToFloat(x[j]);
    const float b = ToFloat(x[j + half]);
    x[j] = FromFloat<T>(a * cos_table[j] - b * sin_table[j]);
    x[j + half] = FromFloat<T>(b * cos_table[j] + a * sin_table[j]);
  }
}

}  // namespace pagoda::kernels::cuda::internal

#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace pagoda::kernels::cuda {

// Rotary position embedding on the GPU, in place, Hugging Face rotate_half convention (the
// semantics of cpu::ApplyRope): for j < head_dim / 2 the pair (x[j], x[j + head_dim / 2]) of
// every head of token t is rotated by the angle float(positions[t]) * inv_freq[j]. The angles'
// cos and sin are computed on the device (accurate sincosf) from inv_freq, which the host
// computes once with cpu::RopeInverseFrequencies (Llama 3 scaling included) and uploads.
// T is __nv_bfloat16 or __half, math in fp32. Every pointer is device memory; strides are in
// elements.
template <typename T>
struct RopeParams {
  // Head h of token t at query + t * query_token_stride + h * head_dim (q and k may be slices of
  // a fused QKV activation).
  T* query = nullptr;
  int64_t query_token_stride = 0;
  T* key = nullptr;  // may be null: rotate the queries only
  int64_t key_token_stride = 0;
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  int32_t num_tokens = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // even
};

// Enqueues the rotation on `stream`. INVALID_ARGUMENT for bad sizes or null arrays, INTERNAL
// when the launch fails.
template <typename T>
absl::Status ApplyRope(const RopeParams<T>& params, cudaStream_t stream);

}  // namespace pagoda::kernels::cuda

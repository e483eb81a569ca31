#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace pagoda::kernels::cuda {

// The GPU counterparts of kernels/cpu/elementwise.h for activations of type T (__nv_bfloat16 or
// __half): fp32 arithmetic, one rounding to T per output. Every pointer is device memory, valid
// until the call's work on the stream has finished; calls only enqueue work on `stream`. Each
// kernel uses 16-byte vectors when its arrays are 16-byte aligned and its lengths and strides
// multiples of 8, scalar accesses otherwise. INVALID_ARGUMENT for negative sizes or null arrays,
// INTERNAL when a launch fails.

// out[t, :] = table[token_ids[t], :]. table: [vocab_size, dim], out: [num_tokens, dim].
// Token ids outside [0, vocab_size) (a caller bug: the server validates ids) give zero rows
// rather than reads out of bounds.
template <typename T>
struct EmbeddingParams {
  const int32_t* token_ids = nullptr;  // [num_tokens]
  const T* table = nullptr;
  int64_t vocab_size = 0;
  int64_t dim = 0;
  int32_t num_tokens = 0;
  T* out = nullptr;
};
template <typename T>
absl::Status Embedding(const EmbeddingParams<T>& params, cudaStream_t stream);

// out = x / sqrt(mean(x^2) + eps) * weight, per row. x, out: [rows, dim]; weight: [dim]. out may
// alias x.
template <typename T>
struct RmsNormParams {
  const T* x = nullptr;
  const T* weight = nullptr;
  T* out = nullptr;
  int32_t rows = 0;
  int32_t dim = 0;
  float eps = 1e-5f;
};
template <typename T>
absl::Status RmsNorm(const RmsNormParams<T>& params, cudaStream_t stream);

// out[r, i] = silu(gate[r, i]) * up[r, i] for i < dim (the SwiGLU activation). Row strides allow
// a fused [rows, 2 * dim] gate_up activation (gate = base, up = base + dim, strides 2 * dim).
// out may alias gate or up.
template <typename T>
struct SiluAndMulParams {
  const T* gate = nullptr;
  int64_t gate_row_stride = 0;
  const T* up = nullptr;
  int64_t up_row_stride = 0;
  T* out = nullptr;
  int64_t out_row_stride = 0;
  int32_t rows = 0;
  int32_t dim = 0;
};
template <typename T>
absl::Status SiluAndMul(const SiluAndMulParams<T>& params, cudaStream_t stream);

// y += x over n elements (the residual connection).
template <typename T>
struct AddInPlaceParams {
  T* y = nullptr;
  const T* x = nullptr;
  int64_t n = 0;
};
template <typename T>
absl::Status AddInPlace(const AddInPlaceParams<T>& params, cudaStream_t stream);

// Greedy sampling on the device: tokens[r] = the index of the largest of
// logits[r * row_stride + 0 .. vocab_size), by sampling::Sample's greedy rule (the lowest
// index among ties; NaN is never chosen), or -1 for a row with nothing above -inf (which the CPU
// sampler refuses as "no samplable token"). One block per row.
template <typename T>
struct ArgmaxParams {
  const T* logits = nullptr;
  int64_t row_stride = 0;
  int64_t vocab_size = 0;
  int32_t rows = 0;
  int32_t* tokens = nullptr;  // [rows]
};
template <typename T>
absl::Status Argmax(const ArgmaxParams<T>& params, cudaStream_t stream);

}  // namespace pagoda::kernels::cuda

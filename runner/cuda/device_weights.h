#pragma once

// A Llama-family model's weights on the GPU as the CUDA model runner uses them: one element type
// (bf16 or f16), Q/K/V and gate/up fused, GEMM sizes padded.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_buffer.h"
#include "model/dtype.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace pagoda::runner::cuda {

// Model dimensions as the GPU buffers use them. GEMM sizes must be multiples of 8 (16-byte
// rows): the intermediate size and the vocabulary are padded with zero weights, which leave the
// results unchanged (silu(0) * 0 = 0 into zero columns of down_proj; padded logits are dropped).
struct DeviceDims {
  int64_t hidden = 0;
  int64_t q_dim = 0;
  int64_t kv_dim = 0;
  int64_t qkv_dim = 0;
  int64_t intermediate = 0;  // padded
  int64_t vocab = 0;         // the model's
  int64_t vocab_padded = 0;

  explicit DeviceDims(const model::ModelConfig& c)
      : hidden(c.hidden_size),
        q_dim(int64_t{c.num_heads} * c.head_dim),
        kv_dim(int64_t{c.num_kv_heads} * c.head_dim),
        qkv_dim(q_dim + 2 * kv_dim),
        intermediate(RoundUpTo8(c.intermediate_size)),
        vocab(c.vocab_size),
        vocab_padded(RoundUpTo8(c.vocab_size)) {}

  static int64_t RoundUpTo8(int64_t n) { return (n + 7) / 8 * 8; }
};

// One decoder layer, every tensor in the element type.
struct DeviceLayer {
  kernels::cuda::DeviceBuffer input_norm;  // [hidden]
  kernels::cuda::DeviceBuffer qkv;         // [qkv_dim, hidden]: q_proj, k_proj, v_proj rows
  kernels::cuda::DeviceBuffer qkv_bias;    // [qkv_dim], or empty without attention bias
  kernels::cuda::DeviceBuffer o_proj;      // [hidden, q_dim]
  kernels::cuda::DeviceBuffer post_norm;   // [hidden]
  kernels::cuda::DeviceBuffer gate_up;     // [2 * intermediate, hidden]: gate rows, then up rows
  kernels::cuda::DeviceBuffer down;        // [hidden, intermediate]
};

struct DeviceWeights {
  kernels::cuda::DeviceBuffer embed;       // [vocab, hidden]
  kernels::cuda::DeviceBuffer lm_head;     // [vocab_padded, hidden]; empty when it is `embed`
  kernels::cuda::DeviceBuffer final_norm;  // [hidden]
  kernels::cuda::DeviceBuffer inv_freq;    // float [head_dim / 2], RoPE (Llama 3 scaling included)
  std::vector<DeviceLayer> layers;
  int64_t size_bytes = 0;  // all of the above
};

// Converts `weights` (F32, BF16 or F16, as loaded) to `dtype` (kBF16 or kF16; a tensor already in
// it is copied as is) and uploads them to the current device, with `dims` =
// DeviceDims(weights.config()). RESOURCE_EXHAUSTED when the device is full.
absl::StatusOr<DeviceWeights> UploadWeights(const model::ModelWeights& weights,
                                            const DeviceDims& dims, model::DType dtype);

}  // namespace pagoda::runner::cuda

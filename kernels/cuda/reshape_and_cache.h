#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda {

// Writes the batch's new K and V rows into their cache slots on the GPU (cpu::ReshapeAndCache's
// semantics; slot = block * block_size + offset). With the [num_blocks, num_kv_heads,
// block_size, head_dim] layout one token's row of one KV head is head_dim contiguous elements at
// both ends, so every thread copies 16-byte vectors. T is __nv_bfloat16 or __half. C, the
// cache's element type, is T, or an 8-bit type (int8_t, __nv_fp8_e4m3, __nv_fp8_e5m2): each
// token's head is then quantized with its scale (stored beside it) or its head's static scale,
// rounded as the CPU's ReshapeAndCache rounds (kernels/paged_kv_cache.h). Every pointer is
// device memory; strides are in elements.
template <typename T, typename C = T>
struct ReshapeAndCacheParams {
  // KV head h of token t is at key + t * key_token_stride + h * head_dim (k and v may be slices
  // of a fused QKV activation).
  const T* key = nullptr;
  int64_t key_token_stride = 0;
  const T* value = nullptr;
  int64_t value_token_stride = 0;
  // [num_tokens]. A negative slot marks a padding token (e.g. of a captured CUDA graph) and is
  // skipped; so is a slot past the pool, which is a caller bug that must not corrupt memory.
  const int64_t* slot_mapping = nullptr;
  int32_t num_tokens = 0;
  PagedKvCacheView<C> cache;  // device pools
};

// Enqueues the copy on `stream`. INVALID_ARGUMENT unless head_dim and both strides are multiples
// of 8 and every array is 16-byte aligned; INTERNAL when the launch fails.
template <typename T, typename C = T>
absl::Status ReshapeAndCache(const ReshapeAndCacheParams<T, C>& params, cudaStream_t stream);

}  // namespace pagoda::kernels::cuda

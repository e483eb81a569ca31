#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "common/attention_window.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda {

// Causal varlen attention over the paged KV cache on the GPU, for prefill chunks, prefix-cache
// hits and decodes alike: the semantics of cpu::PagedAttention. Request r owns query tokens
// [query_start[r], query_start[r+1]) (n of them, 0 <= n <= context_lens[r]); they are the last n
// tokens of its context (already written by ReshapeAndCache), so its query i attends context
// positions [0, context_len - n + i]. T (query, output and cache) is __nv_bfloat16 or __half.
//
// FlashAttention-2 style: a thread block takes 64 rows of one request and one KV head, a row
// being a (query token, query head of the group) pair, so every K/V tile read from the cache
// serves the whole GQA group. K/V tiles (64 tokens, 32 for head dim 256) go through the block
// table into shared memory with 16-byte cp.async, double-buffered; Q K^T and P V run on tensor
// cores (mma.sync m16n8k16, fp32 accumulation) with an online softmax in fp32.
// Limits (speed only): no split of long contexts across blocks (a short chunk at the end of a
// very long context runs on few blocks), no warp specialization or TMA (sm_90 runs the sm_80
// code), P is rounded to T for the P V product as in FlashAttention-2.

// Device workspace bytes for a batch of `num_requests`: each request's first work item.
inline int64_t PagedPrefillWorkspaceBytes(int32_t num_requests) {
  return (static_cast<int64_t>(num_requests) + 1) * static_cast<int64_t>(sizeof(int32_t));
}

// Arguments of one call. Every pointer is device memory, valid until the call's work on the
// stream has finished. Strides are in elements. C, the cache's element type, is T or an 8-bit
// type with its scales, as for PagedDecodeParams.
template <typename T, typename C = T>
struct PagedPrefillParams {
  // Query head h of token t is at query + t * query_token_stride + h * head_dim (q may be a
  // slice of a fused QKV activation). 4-byte aligned.
  const T* query = nullptr;
  int64_t query_token_stride = 0;   // >= num_heads * head_dim, even
  T* output = nullptr;              // written like the query
  int64_t output_token_stride = 0;  // >= num_heads * head_dim, even
  int32_t num_requests = 0;
  // An upper bound on the batch's query tokens, sum of n over requests (sizes the launch).
  int32_t num_query_tokens = 0;
  int32_t num_heads = 0;      // a multiple of cache.num_kv_heads
  PagedKvCacheView<C> cache;  // device pools, 16-byte aligned; head_dim in kSupportedHeadDims
  const int32_t* query_start = nullptr;   // [num_requests + 1], absolute token rows, ascending
  const int32_t* context_lens = nullptr;  // [num_requests]
  // [num_requests, max_blocks_per_request]; only the first ceil(context_len / block_size)
  // entries of a row are read.
  const int32_t* block_tables = nullptr;
  int32_t max_blocks_per_request = 0;
  float scale = 1.0f;  // usually 1 / sqrt(head_dim)
  // A sliding window (common/attention_window.h): each query attends its last
  // window.sliding_window positions; table entries no query attends are never read. No sinks.
  common::AttentionWindow window;
  void* workspace = nullptr;  // PagedPrefillWorkspaceBytes(num_requests) bytes, 4-byte aligned
  int64_t workspace_bytes = 0;
};

// Enqueues the attention of every request of the batch on `stream` (a small planning kernel,
// then the attention kernel). Because query_start holds absolute token rows, a runner may pass
// a sub-range of a batch's requests by offsetting query_start, context_lens and block_tables.
// INVALID_ARGUMENT for parameters that break the contract (checked on the host; device arrays
// are not read), INTERNAL when a launch fails. Does not synchronize.
template <typename T, typename C = T>
absl::Status PagedAttentionPrefill(const PagedPrefillParams<T, C>& params, cudaStream_t stream);

}  // namespace pagoda::kernels::cuda

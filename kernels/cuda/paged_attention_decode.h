#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/attention_window.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cuda {

// Paged-attention decode on the GPU: one query token per request attends to all of its
// request's context through the block table (the semantics of cpu::PagedAttention with one query
// per request). T, the element type of the query, the output and the KV cache, is __nv_bfloat16
// or __half; all arithmetic is fp32 except the tensor-core products (T inputs, fp32 sums).
//
// Work split: one thread block per (request, KV head, partition of the context). It reads each
// K/V tile of its KV head once, with 16-byte loads, for all the query heads of the group (up to
// 16 per block; larger groups use several blocks). When there are too few (request, KV head)
// pairs to fill the GPU, long contexts are cut into partitions (split-K): each writes an fp32
// partial output and log-sum-exp to the workspace and a second kernel merges them.

// Head dims the kernels are compiled for.
inline constexpr int kSupportedHeadDims[] = {32, 64, 80, 96, 128, 256};
constexpr bool IsSupportedHeadDim(int head_dim) {
  for (const int d : kSupportedHeadDims) {
    if (d == head_dim) return true;
  }
  return false;
}

// How contexts are split. Partition p of a request covers context positions
// [p * size, (p + 1) * size) with size = max(partition_size, a multiple of 16 that fits the
// request's context into max_num_partitions), so any plan is correct for any context length;
// the plan only decides speed and the workspace size.
struct PagedDecodePlan {
  int32_t partition_size = 0;  // tokens, a positive multiple of kDecodePartitionAlignment
  // 1 = no split (no workspace, no merge kernel); at most kMaxDecodePartitions.
  int32_t max_num_partitions = 1;
};
inline constexpr int32_t kDecodePartitionAlignment = 16;
inline constexpr int32_t kMaxDecodePartitions = 8192;

// What the planner needs to know about a decode batch.
struct PagedDecodeShape {
  int32_t num_requests = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t max_context_len = 0;  // an upper bound on the batch's context_lens
};

// The plan for `shape` on a GPU that holds `resident_blocks` decode thread blocks at once
// (multiprocessors x blocks per multiprocessor): no split when the batch alone gives every
// resident slot a couple of blocks, else partitions of at least 256 tokens, enough of them to do
// so. A pure function (tested without a GPU).
PagedDecodePlan PlanPagedDecodeFor(const PagedDecodeShape& shape, int64_t resident_blocks);

// Decode thread blocks of head dim `head_dim` the current device holds at once (multiprocessors x
// the kernel's occupancy): PlanPagedDecodeFor's `resident_blocks`. Queries the device; a caller
// planning every step computes it once.
absl::StatusOr<int64_t> PagedDecodeResidentBlocks(int head_dim);

// The plan for `shape` on the current device (its multiprocessor count and the kernel's
// occupancy). The result can be reused for every call whose batch fits the shape, e.g. in a
// captured CUDA graph planned for max_model_len.
absl::StatusOr<PagedDecodePlan> PlanPagedDecode(const PagedDecodeShape& shape);

// Device workspace bytes a call with `plan` needs: fp32 partial outputs and log-sum-exps,
// num_requests * num_heads * max_num_partitions * (head_dim + 1) floats; 0 without a split.
inline int64_t PagedDecodeWorkspaceBytes(const PagedDecodePlan& plan, int32_t num_requests,
                                         int32_t num_heads, int32_t head_dim) {
  if (plan.max_num_partitions <= 1) return 0;
  return static_cast<int64_t>(num_requests) * num_heads * plan.max_num_partitions * (head_dim + 1) *
         static_cast<int64_t>(sizeof(float));
}

// Arguments of one decode call. Every pointer is device memory, valid until the call's work on
// the stream has finished. Strides are in elements. C, the cache's element type, is T, or an
// 8-bit type (int8_t, __nv_fp8_e4m3, __nv_fp8_e5m2) with the scales of kernels/paged_kv_cache.h:
// per token and KV head (key_scale/value_scale), or per KV head (head_key_scale/
// head_value_scale, FP8 only), dequantized inside the kernel.
template <typename T, typename C = T>
struct PagedDecodeParams {
  // Query head h of request r's token t = query_start[r] is at query + t * query_token_stride +
  // h * head_dim (so q may be a slice of a fused QKV activation). 4-byte aligned.
  const T* query = nullptr;
  int64_t query_token_stride = 0;  // >= num_heads * head_dim, even
  // Written like the query: [num_tokens, num_heads, head_dim] at output_token_stride.
  T* output = nullptr;
  int64_t output_token_stride = 0;  // >= num_heads * head_dim, even
  int32_t num_requests = 0;
  int32_t num_heads = 0;      // a multiple of cache.num_kv_heads; query head h uses KV head
                              // h / (num_heads / num_kv_heads)
  PagedKvCacheView<C> cache;  // device pools, 16-byte aligned; head_dim in kSupportedHeadDims
  const int32_t* query_start = nullptr;   // [num_requests]: the token row of each request
  const int32_t* context_lens = nullptr;  // [num_requests], >= 1 (0 writes zeros)
  // [num_requests, max_blocks_per_request]; only the first ceil(context_len / block_size)
  // entries of a row are read.
  const int32_t* block_tables = nullptr;
  int32_t max_blocks_per_request = 0;
  float scale = 1.0f;  // usually 1 / sqrt(head_dim)
  // A sliding window (common/attention_window.h): the request attends its last
  // window.sliding_window positions, and table entries before them are never read. No sinks.
  common::AttentionWindow window;
  PagedDecodePlan plan;
  void* workspace = nullptr;  // PagedDecodeWorkspaceBytes(plan, ...) bytes, 16-byte aligned
  int64_t workspace_bytes = 0;
};

// Enqueues the decode (and, with a split plan, the merge) kernel on `stream`. Returns
// INVALID_ARGUMENT for parameters that break the contract above (checked on the host; device
// arrays are not read), INTERNAL when a launch fails. Does not synchronize.
template <typename T, typename C = T>
absl::Status PagedAttentionDecode(const PagedDecodeParams<T, C>& params, cudaStream_t stream);

}  // namespace pagoda::kernels::cuda

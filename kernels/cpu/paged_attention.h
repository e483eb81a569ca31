#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "common/attention_window.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/paged_kv_cache.h"

namespace pagoda::kernels::cpu {

// Writes the new tokens' K and V into their slots (slot = block * block_size + offset),
// rounding to the cache's element type T (float or Bf16), or quantizing to int8, Fp8E4M3 or
// Fp8E5M2 with each token's and head's scale (absmax / the type's largest value, bf16) stored
// beside it (kernels/paged_kv_cache.h).
// key, value: [num_tokens, num_kv_heads, head_dim]; slots: [num_tokens].
template <typename T>
void ReshapeAndCache(const float* key, const float* value, absl::Span<const int64_t> slots,
                     const PagedKvCacheView<T>& cache);

// Causal attention of a flat batch of query tokens over their requests' paged context
// (prefill chunks and decodes mixed). Request r owns query tokens
// [query_start[r], query_start[r+1]); its context holds context_lens[r] tokens (those of
// earlier steps and of this step, all already written by ReshapeAndCache), and its queries are
// the last tokens of that context, so query i of n attends context positions
// [0, context_len - n + i], or, with a window, the part of it that `window` keeps
// (common/attention_window.h). K/V are read only through the request's row of block_tables,
// and only for attended positions: entries of blocks no query attends may be anything.
template <typename T>  // the cache's element type: float, Bf16, or int8_t, Fp8E4M3, Fp8E5M2
                       // (dequantized in the dot products: scores scaled by the K scale, V
                       // weights by the V scale)
struct PagedAttentionArgs {
  const float* query = nullptr;  // [num_tokens, num_heads, head_dim]
  float* output = nullptr;       // [num_tokens, num_heads, head_dim]
  int32_t num_heads = 0;         // a multiple of cache.num_kv_heads (GQA)
  PagedKvCacheView<T> cache;
  absl::Span<const int32_t> query_start;   // [num_requests + 1], query_start[0] == 0
  absl::Span<const int32_t> context_lens;  // [num_requests]
  absl::Span<const int32_t> block_tables;  // [num_requests, max_blocks_per_request]
  int32_t max_blocks_per_request = 0;
  float scale = 1.0f;              // usually 1/sqrt(head_dim)
  common::AttentionWindow window;  // default: full causal attention
  // StreamingLLM: the queries rotated at their position in the cache rather than in the text,
  // [num_tokens, num_heads, head_dim], used against the sink keys (window.sink_tokens > 0).
  // Keys are cached rotated at their text positions, so a window key's score depends on the
  // text distance, equal to the cache distance; a sink key's on the cache distance, through
  // this query. Null: `query` for every key.
  const float* sink_query = nullptr;
  // Prefill chunks go to the query blocks (attention_blocks.h) where the cache type and shape
  // allow: on AMX tiles where the CPU has them and `allow_amx`, else on AVX-512, else on AVX2.
  // `allow_query_blocks` = false keeps every query on the per-query path; `allow_avx512` = false
  // takes the AVX2 kernels where the CPU has AVX-512 too (tests and benchmarks compare the paths).
  // On AVX2, a batch of decodes of similar lengths takes a task per token that reads every KV
  // head's tiles of a block in one run (float, bf16 and FP8 caches); `allow_whole_blocks` = false
  // keeps them on a task per (token, KV head).
  bool allow_amx = true;
  bool allow_query_blocks = true;
  bool allow_avx512 = true;
  bool allow_whole_blocks = true;
};

// Parallel over (token, KV head); each task reads its KV head's tiles once for the whole group
// of query heads that share it; softmax in f32 with max subtraction. On AVX-512, else AVX2 (8
// lanes, the same plan) for head dims 64, 80, 96, 128 and 256; a compiler-vectorized loop for
// the others. A request with enough
// queries this step (prefill chunks: 4 on AMX, 16 on AVX-512) in a bf16 or 8-bit cache is instead
// parallel over (16 queries, KV head) blocks that walk their keys once for the 16
// (attention_blocks.h). An f32 cache keeps every query on the per-query path, so that a query's
// result does not depend on what else its step holds.
template <typename T>
void PagedAttention(const PagedAttentionArgs<T>& args, ThreadPool& pool);

}  // namespace pagoda::kernels::cpu

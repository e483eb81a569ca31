#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "kernels/cpu/paged_attention.h"

// Query-blocked paged attention on Intel AMX tiles, for prefill chunks over a bf16 cache.
// Internal to kernels/cpu/paged_attention.cc, which dispatches here.
//
// A task takes up to 16 consecutive queries of one request and one KV head (with every query
// head of its group) and walks their keys once, flash-attention style: per 128 keys, the scores
// of 16 keys x 16 queries on a tile (computed transposed, S^T = K Q^T, so that the K rows are
// read in place from the paged blocks as tile rows), an online softmax down the 16 query lanes,
// then O += P V on the tiles. Q and P are split into two bf16 parts (hi + lo, their sum within
// 2^-15 of the f32 value) and K and V are bf16 already, so the products have the accuracy of the
// f32 vector path: decode (one query, vector path) and prefill agree as before.
namespace pagoda::kernels::cpu::amx {

inline constexpr int kQueryBlock = 16;  // queries per task: the columns of a score tile

// One task: queries [first, first + count) of `request` (indices among its queries, count <=
// kQueryBlock), against KV head `kv_head`.
struct QueryBlock {
  int32_t request = 0;
  int32_t first = 0;
  int32_t count = 0;
  int32_t kv_head = 0;
};

// Whether AttendQueryBlocks serves this call: AMX usable, head_dim a multiple of 32 up to 256,
// block_size a multiple of 16, full causal attention or a sliding window without sinks.
bool SupportsAttention(const PagedAttentionArgs<Bf16>& a);

// Writes the outputs of every query of `blocks`, on the calling thread. Requires
// SupportsAttention(a).
void AttendQueryBlocks(const PagedAttentionArgs<Bf16>& a, absl::Span<const QueryBlock> blocks);

}  // namespace pagoda::kernels::cpu::amx

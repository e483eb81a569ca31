#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

// Query-blocked paged attention for prefill chunks. Internal to kernels/cpu/paged_attention.cc,
// which dispatches here.
//
// A task takes up to 16 consecutive queries of one request and one KV head (with every query
// head of its group) and walks their keys once, flash-attention style: per 128 keys, the scores
// of each key against the 16 queries as one vector of 16 lanes (S^T, key-major, so the online
// softmax runs down the lanes with no horizontal reductions), then O += P V. Each K and V row is
// read once per 16 queries instead of once per query. Three backends:
//  - AMX tiles (head dims a multiple of 32, blocks a multiple of 16): S^T = K Q^T with bf16 K
//    rows read in place from the paged blocks as tile rows (8-bit rows first widened to bf16 in
//    a 128-row scratch tile, exactly), and P V on the tiles (V packed once per call). Q and P are
//    split into two bf16 parts (hi + lo, their sum within 2^-15 of the f32 value) and K and V
//    are exact in bf16, so the products have the accuracy of the f32 vector path.
//  - AVX-512 in f32 (head dims a multiple of 16): the chunk's K and V widened to f32 once for
//    the group, each score row 16 FMAs wide, P V register-blocked over 4 queries.
//  - AVX2 in f32, for CPUs without AVX-512 (head dims a multiple of 8; attention_blocks_avx2.cc):
//    the AVX-512 plan with each score row as two 8-lane vectors.
// 8-bit caches (int8, FP8) dequantize as the per-query path does: a key row's scale (per token,
// or the head's static one) multiplies its scores and a value row's scale its weights, so no
// dequantized copy of the context is made. Either way the result matches the per-query vector
// path to f32 rounding, not bit for bit: a query's result then depends on the path its step took
// (a prompt chunked differently can take the other one), and through the next layer's K/V, so
// can a rounding to bf16 or 8 bits. f32 caches, the exact mode, stay on the per-query path,
// whose result for a query is the same whatever else is in the batch (as the f32 GEMMs are).
namespace pagoda::kernels::cpu::blocks {

inline constexpr int kQueryBlock = 16;  // queries per task: the lanes of a score row

// One task: queries [first, first + count) of `request` (indices among its queries, count <=
// kQueryBlock), against KV head `kv_head`.
struct QueryBlock {
  int32_t request = 0;
  int32_t first = 0;
  int32_t count = 0;
  int32_t kv_head = 0;
};

enum class Backend { kNone, kAmx, kAvx512, kAvx2 };

// The backend this call's requests with at least MinQueries() queries take, for a bf16 or 8-bit
// cache: AMX where allowed, usable and the shape suits the tiles, else AVX-512 where allowed, the
// CPU has it and the head dim is a multiple of 16 up to 256, else AVX2 where the CPU has it and
// the head dim is a multiple of 8 up to 256; kNone for f32 caches, attention sinks,
// !allow_query_blocks, or none of these. Full causal attention or a sliding window.
template <typename T>
Backend BackendFor(const PagedAttentionArgs<T>& a);

// Queries a request needs this step for its queries to go to the blocks: below it the
// per-query path is cheaper (a block costs the same with 1 query as with 16).
int32_t MinQueries(Backend backend);

// 64 bytes: one tile row, or 16 f32 lanes. Tile data is written and read only through
// intrinsics, which may alias anything.
struct alignas(64) Line {
  float f[16];
};

// The V of every request that has query blocks on AMX, packed once per call as the tiles' right
// operands (each block used to pack its own keys again: 16 times per key over a long prompt).
// Built on the calling thread with the pool's help; read-only afterwards, from any thread.
class PackedValues {
 public:
  PackedValues() = default;  // nothing packed: for the other backends

  // Packs, on `pool`, keys [WindowStart(first query), context_len) of every (request, KV head)
  // that `blocks` covers, from the multiple of 32 at or below the first; keys outside that range
  // are zeros. Empty unless `backend` is kAmx.
  template <typename T>
  static PackedValues Build(const PagedAttentionArgs<T>& a, absl::Span<const QueryBlock> blocks,
                            Backend backend, ThreadPool& pool);

  // The tiles of `request`'s KV head from key `key` (a multiple of 32, at or after the first
  // packed) on: tile (step, t) -- keys key + 32 step .., head dims 16 t .. -- starts at row
  // (step * head_dim / 16 + t) * 16; its row r holds the pairs of keys 2r and 2r + 1.
  const float* Tiles(int32_t request, int32_t kv_head, int32_t key) const;

 private:
  // The first row of Tiles(request, kv_head, key) in rows_.
  int64_t Row(int32_t request, int32_t kv_head, int32_t key) const;

  int d_vectors_ = 0;
  int num_kv_heads_ = 0;
  std::vector<int64_t> offset_;     // per (request, KV head): its first row, or -1
  std::vector<int32_t> first_key_;  // per request
  std::vector<Line> rows_;
};

// The query blocks of one call with a bf16 or 8-bit cache: the backend (BackendFor), the tasks (16
// queries x KV head of every request with at least MinQueries(backend) queries,
// the longest key ranges first: a task's cost grows with the keys it walks, and the pool hands out
// tasks in order) and, for AMX, their packed V. No tasks when the backend is kNone.
struct Plan {
  Backend backend = Backend::kNone;
  std::vector<QueryBlock> blocks;
  PackedValues values;

  // Whether a request with `num_queries` queries this step is in `blocks` (else its queries
  // take the per-query path).
  bool Takes(int32_t num_queries) const { return num_queries >= MinQueries(backend); }
};
template <typename T>
Plan MakePlan(const PagedAttentionArgs<T>& a, ThreadPool& pool);

// Writes the outputs of the queries of plan.blocks[begin, end), on the calling thread.
template <typename T>
void AttendQueryBlocks(const PagedAttentionArgs<T>& a, const Plan& plan, int64_t begin,
                       int64_t end);

}  // namespace pagoda::kernels::cpu::blocks

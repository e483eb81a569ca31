#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/attention_blocks.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/kv_scales.h"

// What the query-block backends share (attention_blocks.cc: AMX and AVX-512;
// attention_blocks_avx2.cc: AVX2). Internal to those two files.
namespace pagoda::kernels::cpu::blocks {

inline constexpr int kChunk = 128;  // keys per online-softmax step
inline constexpr int kMaxHeadDim = 256;
// The running max before any key: finite, so that max - max is never inf - inf.
inline constexpr float kNoMax = -1e30f;

// The query lanes that attend key `pos`, as bits: query i sits at base + i (i < m) and sees pos
// when pos <= base + i and, with a sliding window W, pos > base + i - W.
inline uint32_t LaneBits(const common::AttentionWindow& w, int32_t base, int m, int32_t pos) {
  const int32_t lo = std::max(pos - base, 0);
  const int32_t hi =
      w.sliding_window > 0 ? std::min(m - 1, pos - base + w.sliding_window - 1) : m - 1;
  if (lo > hi) return 0;
  return ((2u << hi) - 1) & ~((1u << lo) - 1);
}

// The context position of block b's first query (a request's queries are its last tokens).
template <typename T>
int32_t FirstPosition(const PagedAttentionArgs<T>& a, const QueryBlock& b) {
  const int32_t n = a.query_start[b.request + 1] - a.query_start[b.request];
  return a.context_lens[b.request] - n + b.first;
}

// What a task reads and writes besides the cache (the same whatever the cache's type).
struct QueryIo {
  const float* query;  // [tokens, num_heads, head_dim]
  float* output;       // same shape
  int num_heads;
  float scale;  // the attention scale, applied to the queries
};

// The keys of one task: [lo, hi], read through the request's block table.
template <typename T>
struct KeyRange {
  const PagedKvCacheView<T>* cache;
  const int32_t* table;
  int kv_head;
  int32_t lo, hi;

  bool Live(int32_t pos) const { return pos >= lo && pos <= hi; }
  // Whether any key of the `n`-key tile at `pos` is attended.
  bool TileLive(int32_t pos, int n) const { return pos + n - 1 >= lo && pos <= hi; }
  const T* Key(int32_t pos) const {
    return cache->key +
           cache->Offset(table[pos / cache->block_size], kv_head, pos % cache->block_size);
  }
  const T* Value(int32_t pos) const {
    return cache->value +
           cache->Offset(table[pos / cache->block_size], kv_head, pos % cache->block_size);
  }
  // 8-bit caches: the factor that turns what avx512::LoadScaled16 (or avx2::LoadScaled8, the
  // same values) reads from key (or value) row `pos` into values: its scale (kv_scales.h) times
  // the load's factor. The per-query path applies the same factors the same way: to a key's dot
  // products and to a value's weight.
  float Scale(int32_t pos, bool value) const {
    return ElementScale(*cache, value, table[pos / cache->block_size], kv_head,
                        pos % cache->block_size) *
           avx512::LoadScale<T>();
  }
};

// The task's keys and I/O for block b.
template <typename T>
KeyRange<T> KeysOf(const PagedAttentionArgs<T>& a, const QueryBlock& b) {
  const int32_t base = FirstPosition(a, b);
  return {&a.cache, a.block_tables.data() + b.request * a.max_blocks_per_request, b.kv_head,
          a.window.WindowStart(base), base + b.count - 1};
}
template <typename T>
QueryIo IoOf(const PagedAttentionArgs<T>& a) {
  return {a.query, a.output, a.num_heads, a.scale};
}

// The AVX2 backend's tasks (attention_blocks_avx2.cc): AttendQueryBlocks for Backend::kAvx2.
template <typename T>
void AttendQueryBlocksAvx2(const PagedAttentionArgs<T>& a, const Plan& plan, int64_t begin,
                           int64_t end);

}  // namespace pagoda::kernels::cpu::blocks

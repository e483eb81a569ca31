#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/attention_window.h"
#include "kernels/cpu/kv_scales.h"
#include "kernels/cpu/paged_attention.h"

// What the per-query attention kernels share: paged_attention.cc (the scalar kernel, the AVX-512
// one and the dispatch) and paged_attention_avx2.cc (the AVX2 ones). Internal to those files.
namespace pagoda::kernels::cpu::decode {

// The positions query `last` attends, in order: [0, SinkEnd) then [WindowStart, last], as two
// ranges. Plain loops over them (no lambdas: a lambda would not inherit the ISA of the
// target_clones and AVX-512 functions that use it).
struct AttendedRanges {
  int32_t begin[2];
  int32_t end[2];
  int32_t count;
};

inline AttendedRanges Attended(const common::AttentionWindow& w, int32_t last) {
  const int32_t start = w.WindowStart(last);
  return {{0, start}, {w.SinkEnd(last), last + 1}, w.NumAttended(last)};
}

// The query of head `head` of `token`, or its sink rotation for a sink key.
template <typename T>
inline const float* QueryRow(const PagedAttentionArgs<T>& a, int64_t token, int64_t head,
                             bool sink) {
  const float* q = sink && a.sink_query != nullptr ? a.sink_query : a.query;
  return q + (token * a.num_heads + head) * a.cache.head_dim;
}

// What a kernel for one (query token, KV head) starts from: its group's size, the request's
// block table and the positions query `last` attends, with `scores` sized for the group.
struct TaskSetup {
  int group;
  const int32_t* table;
  AttendedRanges ranges;
};

template <typename T>
inline TaskSetup SetUpTask(const PagedAttentionArgs<T>& a, int64_t request, int32_t last,
                           std::vector<float>& scores) {
  const int group = a.num_heads / a.cache.num_kv_heads;
  const AttendedRanges ranges = Attended(a.window, last);
  scores.resize(static_cast<size_t>(group) * ranges.count);
  return {group, a.block_tables.data() + request * a.max_blocks_per_request, ranges};
}

// A kernel for one (query token, KV head): its group's query heads against the attended
// positions, `scores` its scratch.
template <typename T>
using AttendFn = void (*)(const PagedAttentionArgs<T>&, int64_t, int64_t, int, int32_t,
                          std::vector<float>&);

// make.template operator()<kDim>() for the head dims the vector kernels take (64, 80, 96, 128,
// 256), or null for another.
template <typename T, typename Fn = AttendFn<T>, typename Make>
Fn ForHeadDim(int head_dim, Make make) {
  switch (head_dim) {
    case 64:
      return make.template operator()<64>();
    case 80:
      return make.template operator()<80>();
    case 96:
      return make.template operator()<96>();
    case 128:
      return make.template operator()<128>();
    case 256:
      return make.template operator()<256>();
    default:
      return nullptr;
  }
}

// Query heads a KV head may have for the batched score pass (its scratch is [group][16] vectors).
constexpr int kMaxBatchedGroup = 8;

// Decode streams its K and V from memory one block tile at a time, each tile a separate
// 2-4 KiB run (its block's other heads lie between): the hardware prefetcher starts cold on
// every one. So each pass asks for the tile kPrefetchBlocks blocks ahead of the one it reads.
constexpr int32_t kPrefetchBlocks = 2;
// At most the first 2 KiB of a tile: past that, within its page, the hardware streamer has
// caught on (an f32 tile of 64 dims fills a page, and asking for all of it was slower).
constexpr int64_t kPrefetchBytes = 2048;

// A kernel for one query token over every KV head: the whole-block decode.
template <typename T>
using AttendAllFn = void (*)(const PagedAttentionArgs<T>&, int64_t, int64_t, int32_t);

#if defined(__x86_64__)
// Asks for the `bytes` from p into L1, a line at a time.
inline void PrefetchLines(const void* p, int64_t bytes) {
  const char* at = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) _mm_prefetch(at + i, _MM_HINT_T0);
}

// Asks for the per-token scales of KV heads [kv_head, kv_head + heads) of physical block `block`
// in the K (or, with `value`, the V) pool, where the cache has them: a separate array, whose first
// read per block otherwise waited on memory (a tenth of an int8 decode's score pass).
template <typename T>
inline void PrefetchScales(const PagedKvCacheView<T>& c, bool value, int64_t block, int kv_head,
                           int heads) {
  const uint16_t* scales = TokenScalesOf(c, value);
  if (scales != nullptr) {
    PrefetchLines(scales + c.ScaleIndex(block, kv_head, 0),
                  static_cast<int64_t>(heads) * c.block_size * sizeof(uint16_t));
  }
}

// Prefetches the tile of `kv_head` in the K (or, with `value`, the V) pool of the block holding
// position `pos`, and its rows' scales (PrefetchScales), when that position is before `end` and
// its block is past `*done` (the last block asked for, updated).
// (No target: plain SSE prefetches, inlined into the AVX-512 and the AVX2 kernels alike.)
template <typename T>
inline void PrefetchTile(const PagedKvCacheView<T>& c, bool value, const int32_t* table,
                         int kv_head, int32_t pos, int32_t end, int32_t* done) {
  if (pos >= end) return;
  const int32_t block = pos / c.block_size;
  if (block <= *done) return;
  *done = block;
  const int64_t physical = table[block];
  PrefetchLines(
      PoolOf(c, value) + c.Offset(physical, kv_head, 0),
      std::min<int64_t>(kPrefetchBytes, c.tile_elements() * static_cast<int64_t>(sizeof(T))));
  PrefetchScales(c, value, physical, kv_head, 1);
}

// The AVX2 kernel for head dim `head_dim` (64, 80, 96, 128 or 256), or null for another.
// Run only where avx2::Supported().
template <typename T>
AttendFn<T> Avx2Kernel(int head_dim);

// The AVX2 whole-block kernel for this cache type and head dim (int8 only), or null: each task
// takes one query token and reads, block by block, the tiles of every KV head in order (one
// contiguous run per block) rather than one head's tile per block.
template <typename T>
AttendAllFn<T> Avx2WholeBlockKernel(int head_dim);
#endif

}  // namespace pagoda::kernels::cpu::decode

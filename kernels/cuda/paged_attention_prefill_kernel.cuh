#pragma once

// The prefill kernels (internal to kernels/cuda; paged_attention_prefill.cu launches them, and
// the CPU emulation test runs the same source).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention_tile.cuh"
#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/paged_attention_prefill.h"

namespace pagoda::kernels::cuda::internal {

inline constexpr int kPrefillWarps = 4;
inline constexpr int kPrefillThreads = kPrefillWarps * kWarpSize;
inline constexpr int kBlockRows = kPrefillWarps * 16;  // (query token, head) rows per block
inline constexpr int kPrefillStages = 2;
inline constexpr int kScanThreads = 256;

// kCacheElemBytes: 2 for a bf16/fp16 cache, 1 for an 8-bit one.
template <int kHeadDim, int kCacheElemBytes = 2>
struct PrefillConfig {
  static constexpr int kBlockTokens = kHeadDim <= 128 ? 64 : 32;  // K/V tile
  static constexpr int kRowStride = kHeadDim + kVecElems;  // +16 bytes: conflict-free ldmatrix
  static constexpr int kTileElems = kBlockTokens * kRowStride;
  static constexpr int kVecsPerRow = kHeadDim / kVecElems;
  static constexpr int kVecsPerThread = kBlockTokens * kVecsPerRow / kPrefillThreads;
  // An 8-bit cache: the stages hold raw [kBlockTokens][kHeadDim]-byte K and V tiles; the block
  // dequantizes the current one into one K and one V tile of T (layout above) and keeps the
  // tile's per-token K and V scales as floats.
  static constexpr int kRawTileBytes = kBlockTokens * kHeadDim;
  static constexpr int kDequantOffsetBytes = kPrefillStages * 2 * kRawTileBytes;
  static constexpr int kScalesOffsetBytes = kDequantOffsetBytes + 2 * kTileElems * 2;
  static constexpr int kSmemBytes = kCacheElemBytes == 1 ? kScalesOffsetBytes + 2 * kBlockTokens * 4
                                                         : kPrefillStages * 2 * kTileElems * 2;
  static_assert(kSmemBytes % 16 == 0, "DynamicShared() hands out whole uint4 elements");
  static_assert(kHeadDim % 16 == 0 && kBlockTokens % 16 == 0);
  static_assert((kBlockTokens * kVecsPerRow) % kPrefillThreads == 0);
};

__device__ __forceinline__ int32_t NumRowTiles(int32_t num_queries, int group) {
  return num_queries > 0 ? CeilDiv(num_queries * group, kBlockRows) : 0;
}

// tile_offsets[r] = the first work item (row tile) of request r; tile_offsets[num_requests] =
// the total. One block: each thread sums a contiguous run of requests, thread 0 scans the runs.
__global__ void __launch_bounds__(kScanThreads)
    PrefillTileScanKernel(const int32_t* query_start, int32_t num_requests, int group,
                          int32_t* tile_offsets) {
  __shared__ int32_t run_sums[kScanThreads];
  const int32_t per_thread = CeilDiv(num_requests, kScanThreads);
  const int32_t first = min(num_requests, static_cast<int32_t>(threadIdx.x) * per_thread);
  const int32_t last = min(num_requests, first + per_thread);
  int32_t sum = 0;
  for (int32_t r = first; r < last; ++r) {
    sum += NumRowTiles(query_start[r + 1] - query_start[r], group);
  }
  run_sums[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t total = 0;
    for (int i = 0; i < kScanThreads; ++i) {
      const int32_t s = run_sums[i];
      run_sums[i] = total;
      total += s;
    }
    tile_offsets[num_requests] = total;
  }
  __syncthreads();
  int32_t offset = run_sums[threadIdx.x];
  for (int32_t r = first; r < last; ++r) {
    tile_offsets[r] = offset;
    offset += NumRowTiles(query_start[r + 1] - query_start[r], group);
  }
}

// An 8-bit cache's K/V tile: copies the raw rows of positions [kv_begin, kv_end) of the tile
// starting at tile_begin into `raw` (K, then V), zeroing the others.
template <typename Cfg, typename T, typename C>
__device__ __forceinline__ void LoadRawPrefillTile(const PagedPrefillParams<T, C>& p,
                                                   const int32_t* table, int kv_head,
                                                   int32_t tile_begin, int32_t kv_begin,
                                                   int32_t kv_end, uint8_t* raw) {
  constexpr int kHeadDim = Cfg::kRawTileBytes / Cfg::kBlockTokens;
  constexpr int kVecsPerRow = kHeadDim / 16;
  for (int v = threadIdx.x; v < Cfg::kRawTileBytes / 16; v += kPrefillThreads) {
    const int row = v / kVecsPerRow;
    const int col = (v % kVecsPerRow) * 16;
    const int32_t pos = tile_begin + row;
    uint8_t* k_dst = raw + v * 16;
    uint8_t* v_dst = k_dst + Cfg::kRawTileBytes;
    if (pos >= kv_begin && pos < kv_end) {
      const int32_t bs = p.cache.block_size;
      const int64_t block = table[pos / bs];
      const int64_t offset =
          ((block * p.cache.num_kv_heads + kv_head) * bs + pos % bs) * kHeadDim + col;
      CpAsync16(k_dst, reinterpret_cast<const uint8_t*>(p.cache.key) + offset);
      CpAsync16(v_dst, reinterpret_cast<const uint8_t*>(p.cache.value) + offset);
    } else {
      StoreZero16(k_dst);
      StoreZero16(v_dst);
    }
  }
}

// Turns the raw stage `raw` into the block's T tiles at smem + kDequantOffsetBytes (exactly)
// and the tile's K and V scales into floats at smem + kScalesOffsetBytes (0 outside
// [kv_begin, kv_end)). Every thread of the block takes part; the caller syncs after.
template <typename T, typename C, typename Cfg>
__device__ __forceinline__ void DequantizePrefillTile(const PagedPrefillParams<T, C>& p,
                                                      const int32_t* table, int kv_head,
                                                      int32_t tile_begin, int32_t kv_begin,
                                                      int32_t kv_end, const uint8_t* raw,
                                                      uint8_t* smem) {
  constexpr int kHeadDim = Cfg::kRawTileBytes / Cfg::kBlockTokens;
  DequantizeTiles<C, T, kHeadDim, Cfg::kRowStride>(
      raw, Cfg::kRawTileBytes, reinterpret_cast<T*>(smem + Cfg::kDequantOffsetBytes),
      Cfg::kTileElems, 2 * threadIdx.x, 2 * kPrefillThreads);
  float* scales = reinterpret_cast<float*>(smem + Cfg::kScalesOffsetBytes);
  for (int t = threadIdx.x; t < Cfg::kBlockTokens; t += kPrefillThreads) {
    const int32_t pos = tile_begin + t;
    float ks = 0.0f;
    float vs = 0.0f;
    if (pos >= kv_begin && pos < kv_end) {
      if (p.cache.key_scale != nullptr) {
        const int32_t bs = p.cache.block_size;
        const int64_t index =
            (static_cast<int64_t>(table[pos / bs]) * p.cache.num_kv_heads + kv_head) * bs +
            pos % bs;
        ks = Bf16BitsToFloat(p.cache.key_scale[index]);
        vs = Bf16BitsToFloat(p.cache.value_scale[index]);
      } else {
        ks = p.cache.head_key_scale[kv_head];
        vs = p.cache.head_value_scale[kv_head];
      }
    }
    scales[t] = ks;
    scales[Cfg::kBlockTokens + t] = vs;
  }
}

template <typename T, int kHeadDim, typename C = T>
__global__ void __launch_bounds__(kPrefillThreads)
    PagedPrefillKernel(const PagedPrefillParams<T, C> p, const int32_t* tile_offsets) {
  using Cfg = PrefillConfig<kHeadDim, sizeof(C)>;
  const int32_t work = blockIdx.x;
  if (work >= tile_offsets[p.num_requests]) return;
  // The request that owns work item `work`: the last r with tile_offsets[r] <= work (requests
  // without queries have no items, and the search skips over them).
  int32_t lo = 0;
  int32_t hi = p.num_requests - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (tile_offsets[mid] <= work) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int32_t request = lo;
  const int32_t q_begin = p.query_start[request];
  const int32_t num_queries = p.query_start[request + 1] - q_begin;
  const int32_t context_len = p.context_lens[request];
  const int group = p.num_heads / p.cache.num_kv_heads;
  const int kv_head = blockIdx.y;
  const int32_t num_rows = num_queries * group;
  // Items of a request run from its last row tile (the most keys to read) to its first, so the
  // longest blocks start first.
  const int32_t row_tile = NumRowTiles(num_queries, group) - 1 - (work - tile_offsets[request]);
  const int32_t tile_row0 = row_tile * kBlockRows;
  const int32_t first_query_pos = context_len - num_queries;
  const int32_t kv_end = first_query_pos + (min(tile_row0 + kBlockRows, num_rows) - 1) / group + 1;
  // With a sliding window the block's first row attends from kv_begin on, and later rows from
  // later: tiles before kv_begin's are skipped, and positions before it never read (their
  // blocks may have been freed: null table entries).
  const int32_t kv_begin = p.window.WindowStart(first_query_pos + tile_row0 / group);
  const int first_kv_tile = kv_begin / Cfg::kBlockTokens;
  const int num_kv_tiles = kv_end > 0 ? CeilDiv(kv_end, Cfg::kBlockTokens) : 0;

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int gid = lane / 4;
  const int tid = lane % 4;

  // This lane's rows gid and gid + 8 of the warp's 16: query token, head, visible positions.
  bool row_valid[2];
  int32_t row_last_pos[2];   // attends positions [row_first_pos, row_last_pos]
  int32_t row_first_pos[2];  // 0 without a window
  int64_t row_offset[2];     // element offset of the row's query and output, minus the token part
  int32_t row_token[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int32_t row = tile_row0 + warp * 16 + gid + r * 8;
    row_valid[r] = row < num_rows;
    const int32_t i = row_valid[r] ? row / group : 0;
    const int g = row_valid[r] ? row % group : 0;
    row_last_pos[r] = row_valid[r] ? first_query_pos + i : -1;
    row_first_pos[r] = p.window.WindowStart(row_last_pos[r]);
    row_token[r] = q_begin + i;
    row_offset[r] = static_cast<int64_t>(kv_head * group + g) * kHeadDim + 2 * tid;
  }
  uint32_t q_frag[kHeadDim / 16][4];
  {
    const T* q_lo =
        p.query + static_cast<int64_t>(row_token[0]) * p.query_token_stride + row_offset[0];
    const T* q_hi =
        p.query + static_cast<int64_t>(row_token[1]) * p.query_token_stride + row_offset[1];
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      q_frag[ks][0] = row_valid[0] ? LoadPair(q_lo + ks * 16) : 0u;
      q_frag[ks][1] = row_valid[1] ? LoadPair(q_hi + ks * 16) : 0u;
      q_frag[ks][2] = row_valid[0] ? LoadPair(q_lo + ks * 16 + 8) : 0u;
      q_frag[ks][3] = row_valid[1] ? LoadPair(q_hi + ks * 16 + 8) : 0u;
    }
  }
  // The warp skips K/V tiles that start after all of its rows' visible positions.
  const int32_t warp_last_pos = __reduce_max_sync(kFullMask, max(row_last_pos[0], row_last_pos[1]));

  T* tiles = DynamicShared<T>();
  const int32_t* table = p.block_tables + static_cast<int64_t>(request) * p.max_blocks_per_request;
  const int32_t block_size = p.cache.block_size;

  // Copies K/V tile `tile` into pipeline stage `stage`; positions outside [kv_begin, kv_end) are
  // zeroed (never read from the cache: their table entries and slots may hold anything).
  auto load_tile = [&](int tile, int stage) {
    if constexpr (kQuantizedKv<C>) {
      LoadRawPrefillTile<Cfg>(p, table, kv_head, tile * Cfg::kBlockTokens, kv_begin, kv_end,
                              reinterpret_cast<uint8_t*>(tiles) + stage * 2 * Cfg::kRawTileBytes);
    } else {
      T* k_dst = tiles + stage * 2 * Cfg::kTileElems;
      T* v_dst = k_dst + Cfg::kTileElems;
      const int32_t tile_begin = tile * Cfg::kBlockTokens;
#pragma unroll
      for (int i = 0; i < Cfg::kVecsPerThread; ++i) {
        const int v = threadIdx.x + i * kPrefillThreads;
        const int row = v / Cfg::kVecsPerRow;
        const int col = (v % Cfg::kVecsPerRow) * kVecElems;
        const int s = row * Cfg::kRowStride + col;
        const int32_t pos = tile_begin + row;
        if (pos >= kv_begin && pos < kv_end) {
          const int64_t block = table[pos / block_size];
          const int64_t offset =
              ((block * p.cache.num_kv_heads + kv_head) * block_size + pos % block_size) *
                  kHeadDim +
              col;
          CpAsync16(k_dst + s, p.cache.key + offset);
          CpAsync16(v_dst + s, p.cache.value + offset);
        } else {
          StoreZero16(k_dst + s);
          StoreZero16(v_dst + s);
        }
      }
    }
  };

  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  }
  const float scale_log2 = p.scale * kLog2e;

  if (num_kv_tiles > first_kv_tile) load_tile(first_kv_tile, 0);
  CpAsyncCommit();
  for (int tile = first_kv_tile; tile < num_kv_tiles; ++tile) {
    const int stage = (tile - first_kv_tile) % kPrefillStages;
    if (tile + 1 < num_kv_tiles) load_tile(tile + 1, stage ^ 1);
    CpAsyncCommit();  // possibly empty, so that "all but 1" below means "this tile"
    CpAsyncWait<1>();
    __syncthreads();
    const int32_t tile_begin = tile * Cfg::kBlockTokens;
    const T* k_s = tiles + stage * 2 * Cfg::kTileElems;
    const float* k_scales = nullptr;  // 8-bit caches: the tile's per-token scales
    if constexpr (kQuantizedKv<C>) {
      uint8_t* smem = reinterpret_cast<uint8_t*>(tiles);
      DequantizePrefillTile<T, C, Cfg>(p, table, kv_head, tile_begin, kv_begin, kv_end,
                                       smem + stage * 2 * Cfg::kRawTileBytes, smem);
      __syncthreads();
      k_s = reinterpret_cast<const T*>(smem + Cfg::kDequantOffsetBytes);
      k_scales = reinterpret_cast<const float*>(smem + Cfg::kScalesOffsetBytes);
    }
    if (tile_begin <= warp_last_pos) {
      const T* v_s = k_s + Cfg::kTileElems;
      constexpr int kNTiles = Cfg::kBlockTokens / 8;
      float s[kNTiles][4];
      ComputeScores<T, kNTiles, kHeadDim, Cfg::kRowStride>(q_frag, k_s, lane, s);
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int token = j * 8 + 2 * tid + (e & 1);
          const int32_t pos = tile_begin + token;
          const float k_scale = kQuantizedKv<C> ? k_scales[token] : 1.0f;
          s[j][e] = pos <= row_last_pos[e / 2] && pos >= row_first_pos[e / 2]
                        ? s[j][e] * k_scale * scale_log2
                        : -INFINITY;
        }
      }
      OnlineSoftmax(s, m, l, o);
      if constexpr (kQuantizedKv<C>) {
        const float* v_scales = k_scales + Cfg::kBlockTokens;
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) s[j][e] *= v_scales[j * 8 + 2 * tid + (e & 1)];
        }
      }
      AccumulateValues<T, kNTiles, kHeadDim, Cfg::kRowStride>(s, v_s, lane, o);
    }
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }
  CpAsyncWait<0>();
  ReduceRowSums(l);

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (!row_valid[r]) continue;
    // A row that saw no key (only when n > context_len, outside the contract) writes zeros.
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    T* out = p.output + static_cast<int64_t>(row_token[r]) * p.output_token_stride + row_offset[r];
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      *reinterpret_cast<uint32_t*>(out + dt * 8) =
          PackPair<T>(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
  }
}

// Launch shape, shared by the launcher and the emulation test: PrefillTileScanKernel runs one
// block of kScanThreads; PagedPrefillKernel runs a grid of (PrefillMaxWorkItems, num_kv_heads)
// blocks of kPrefillThreads with PrefillConfig<head_dim>::kSmemBytes of dynamic shared memory.
// sum_r ceil(n_r * group / 64) <= ceil(sum_r n_r * group / 64) + num_requests.
template <typename T, typename C>
int64_t PrefillMaxWorkItems(const PagedPrefillParams<T, C>& p) {
  const int group = p.num_heads / p.cache.num_kv_heads;
  return CeilDiv64(static_cast<int64_t>(p.num_query_tokens) * group, kBlockRows) + p.num_requests;
}

}  // namespace pagoda::kernels::cuda::internal

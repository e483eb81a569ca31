#pragma once

// The decode kernels (internal to kernels/cuda; paged_attention_decode.cu launches them, and the
// CPU emulation test runs the same source).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention_tile.cuh"
#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/mma_primitives.cuh"
#include "kernels/cuda/paged_attention_decode.h"

namespace pagoda::kernels::cuda::internal {

// Each warp walks its own tiles of 16 tokens (tile w, w + kWarps, ... of the partition) with a
// private two-stage cp.async pipeline, so the main loop needs no block-wide barrier; the warps'
// softmax states are merged once at the end.
inline constexpr int kTileTokens = 16;
inline constexpr int kHeadsPerBlock = 16;  // the MMA's M: query heads of one KV head
inline constexpr int kDecodeStages = 2;
static_assert(kDecodePartitionAlignment == kTileTokens);

// kCacheElemBytes: 2 for a bf16/fp16 cache, 1 for an 8-bit one.
template <int kHeadDim, int kCacheElemBytes = 2>
struct DecodeConfig {
  static constexpr int kWarps = kHeadDim <= 128 ? 4 : 2;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kRowStride = kHeadDim + kVecElems;  // +16 bytes: conflict-free ldmatrix
  static constexpr int kTileElems = kTileTokens * kRowStride;
  // A stage holds a K and a V tile: of T in the layout above, or for an 8-bit cache raw
  // [kTileTokens][kHeadDim] bytes (read back element-wise, so unpadded), which the warp
  // dequantizes into one K and one V tile of T after the stages (DecodeTiles).
  static constexpr int kRawTileBytes = kTileTokens * kHeadDim;
  static constexpr int kDequantOffsetBytes = kDecodeStages * 2 * kRawTileBytes;
  static constexpr int kWarpSmemBytes = kCacheElemBytes == 1
                                            ? kDequantOffsetBytes + 2 * kTileElems * 2
                                            : kDecodeStages * 2 * kTileElems * 2;
  static constexpr int kPipelineBytes = kWarps * kWarpSmemBytes;
  // Per warp: m[16], l[16], o[16][kHeadDim] in fp32.
  static constexpr int kMergeFloatsPerWarp = kHeadsPerBlock * (kHeadDim + 2);
  static constexpr int kMergeBytes = kWarps * kMergeFloatsPerWarp * 4;
  static constexpr int kSmemBytes = kPipelineBytes > kMergeBytes ? kPipelineBytes : kMergeBytes;
  static_assert(kSmemBytes % 16 == 0, "DynamicShared() hands out whole uint4 elements");
  static_assert(kHeadDim % 16 == 0);
};

__host__ __device__ inline int32_t EffectivePartitionSize(const PagedDecodePlan& plan,
                                                          int32_t context_len) {
  const int32_t fit =
      CeilDiv(CeilDiv(context_len, plan.max_num_partitions), kTileTokens) * kTileTokens;
  return fit > plan.partition_size ? fit : plan.partition_size;
}

struct DecodeWorkspace {
  float* partial_out;  // [num_requests, num_heads, max_num_partitions, head_dim]
  float* partial_lse;  // [num_requests, num_heads, max_num_partitions], log2 units
};

template <typename T, typename C>
__host__ __device__ inline DecodeWorkspace SplitWorkspace(const PagedDecodeParams<T, C>& p) {
  float* base = static_cast<float*>(p.workspace);
  const int64_t slots =
      static_cast<int64_t>(p.num_requests) * p.num_heads * p.plan.max_num_partitions;
  return {base, base + slots * p.cache.head_dim};
}

// Element offset in the pools of row `lane` (lanes < 16) of tile `tile` of the partition
// [begin, end), or -1 for a row past `end`, whose table entry and slot may hold anything and are
// never read. (For an 8-bit cache it is also the row's scale index times the head dim.)
template <typename C>
__device__ __forceinline__ int64_t TileRowOffset(const PagedKvCacheView<C>& cache,
                                                 const int32_t* table, int kv_head, int32_t begin,
                                                 int32_t end, int num_tiles, int tile, int lane) {
  const int32_t pos = begin + tile * kTileTokens + lane;
  if (lane >= kTileTokens || tile >= num_tiles || pos >= end) return -1;
  const int64_t block = table[pos / cache.block_size];
  return ((block * cache.num_kv_heads + kv_head) * cache.block_size + pos % cache.block_size) *
         cache.head_dim;
}

// A warp's tiles of the partition [begin, end) (tile w, w + kWarps, ...): a two-stage cp.async
// pipeline of K/V tiles, scores, online softmax and P V into (m, l, o). A 16-bit cache's stage is
// the MMA tile itself. An 8-bit cache's stage holds the raw tile (half the bytes), which the warp
// dequantizes, exactly, into its one 16-bit tile; the scales are applied outside the tensor-core
// products, a key's to its score and a value's to its probability.
template <typename T, typename C, int kHeadDim>
__device__ __forceinline__ void DecodeTiles(const PagedDecodeParams<T, C>& p,
                                            const uint32_t (&q_frag)[kHeadDim / 16][4], int kv_head,
                                            int32_t begin, int32_t end, float (&m)[2],
                                            float (&l)[2], float (&o)[kHeadDim / 8][4]) {
  constexpr bool kQuantized = kQuantizedKv<C>;
  using Cfg = DecodeConfig<kHeadDim, sizeof(C)>;
  // A stage's K tile, then its V tile: raw [16][kHeadDim] bytes, or [16][kRowStride] T.
  constexpr int kStageTileBytes = kQuantized ? Cfg::kRawTileBytes : Cfg::kTileElems * 2;
  constexpr int kSmemRowBytes = kQuantized ? kHeadDim : Cfg::kRowStride * 2;
  constexpr int kVecsPerRow = kHeadDim * static_cast<int>(sizeof(C)) / 16;
  constexpr int kVecsPerTile = kTileTokens * kVecsPerRow;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int tid = lane % 4;
  const int num_tiles = CeilDiv(end - begin, kTileTokens);
  uint8_t* smem = DynamicShared<uint8_t>() + warp * Cfg::kWarpSmemBytes;
  const int32_t* table =
      p.block_tables + static_cast<int64_t>(blockIdx.x) * p.max_blocks_per_request;

  // The table entry is read one tile ahead of its copy, so its latency overlaps the current
  // tile's math (TileRowOffset: -1 for rows past `end`).
  auto row_offset_of = [&](int tile) {
    return TileRowOffset(p.cache, table, kv_head, begin, end, num_tiles, tile, lane);
  };
  // Copies a tile into stage `stage`, given its rows' offsets (lane r holds row r's); rows past
  // `end` are zeroed.
  auto load_tile = [&](int64_t row_offset, int stage) {
    uint8_t* k_dst = smem + stage * 2 * kStageTileBytes;
    uint8_t* v_dst = k_dst + kStageTileBytes;
#pragma unroll
    for (int i = 0; i < CeilDiv(kVecsPerTile, kWarpSize); ++i) {
      const int v = lane + i * kWarpSize;
      const int row = min(v / kVecsPerRow, kTileTokens - 1);
      const int64_t offset = __shfl_sync(kFullMask, row_offset, row);  // every lane shuffles
      if (v >= kVecsPerTile) continue;
      const int col = (v % kVecsPerRow) * 16;  // bytes
      const int s = row * kSmemRowBytes + col;
      if (offset >= 0) {
        CpAsync16(k_dst + s, reinterpret_cast<const uint8_t*>(p.cache.key + offset) + col);
        CpAsync16(v_dst + s, reinterpret_cast<const uint8_t*>(p.cache.value + offset) + col);
      } else {
        StoreZero16(k_dst + s);
        StoreZero16(v_dst + s);
      }
    }
  };

  // 8-bit caches: scales per token (read per tile below) or static per KV head.
  const bool per_token = p.cache.key_scale != nullptr;
  float head_k_scale = 1.0f;
  float head_v_scale = 1.0f;
  if (kQuantized && !per_token) {
    head_k_scale = p.cache.head_key_scale[kv_head];
    head_v_scale = p.cache.head_value_scale[kv_head];
  }

  const float scale_log2 = p.scale * kLog2e;
  int stage = 0;
  int64_t row_offset = row_offset_of(warp);
  if (warp < num_tiles) load_tile(row_offset, 0);
  CpAsyncCommit();
  int64_t next_row_offset = row_offset_of(warp + Cfg::kWarps);
  for (int tile = warp; tile < num_tiles; tile += Cfg::kWarps) {
    if (tile + Cfg::kWarps < num_tiles) load_tile(next_row_offset, stage ^ 1);
    CpAsyncCommit();  // possibly empty, so that "all but 1" below means "this tile"
    const int64_t following = next_row_offset;
    next_row_offset = row_offset_of(tile + 2 * Cfg::kWarps);
    // 8-bit: lane r < 16 holds row r's scales (0 past `end`).
    float k_scale = 1.0f;
    float v_scale = 1.0f;
    if constexpr (kQuantized) {
      if (row_offset >= 0) {
        k_scale =
            per_token ? Bf16BitsToFloat(p.cache.key_scale[row_offset / kHeadDim]) : head_k_scale;
        v_scale =
            per_token ? Bf16BitsToFloat(p.cache.value_scale[row_offset / kHeadDim]) : head_v_scale;
      } else {
        k_scale = v_scale = 0.0f;
      }
    }
    CpAsyncWait<1>();
    __syncwarp();
    const uint8_t* staged = smem + stage * 2 * kStageTileBytes;
    const T* k_s = reinterpret_cast<const T*>(staged);
    if constexpr (kQuantized) {
      T* dequantized = reinterpret_cast<T*>(smem + Cfg::kDequantOffsetBytes);
      DequantizeTiles<C, T, kHeadDim, Cfg::kRowStride>(staged, kStageTileBytes, dequantized,
                                                       Cfg::kTileElems, 2 * lane, 2 * kWarpSize);
      __syncwarp();
      k_s = dequantized;
    }
    const T* v_s = k_s + Cfg::kTileElems;
    float s[2][4];
    ComputeScores<T, 2, kHeadDim, Cfg::kRowStride>(q_frag, k_s, lane, s);
    const int32_t tile_begin = begin + tile * kTileTokens;
    float v_scales[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = j * 8 + 2 * tid + (e & 1);
        float ks = 1.0f;
        if constexpr (kQuantized) {
          ks = __shfl_sync(kFullMask, k_scale, row);
          v_scales[j][e] = __shfl_sync(kFullMask, v_scale, row);
        }
        s[j][e] = tile_begin + row < end ? s[j][e] * ks * scale_log2 : -INFINITY;
      }
    }
    OnlineSoftmax(s, m, l, o);
    if constexpr (kQuantized) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] *= v_scales[j][e];
      }
    }
    AccumulateValues<T, 2, kHeadDim, Cfg::kRowStride>(s, v_s, lane, o);
    __syncwarp();  // the next iteration overwrites this stage (and the dequantized tile)
    stage ^= 1;
    row_offset = following;
  }
  CpAsyncWait<0>();
}

template <typename T, int kHeadDim, typename C = T>
__global__ void __launch_bounds__(DecodeConfig<kHeadDim>::kThreads)
    PagedDecodeKernel(const PagedDecodeParams<T, C> p, int num_head_chunks) {
  using Cfg = DecodeConfig<kHeadDim, sizeof(C)>;
  const int request = blockIdx.x;
  const int kv_head = blockIdx.y / num_head_chunks;
  const int chunk = blockIdx.y % num_head_chunks;
  const int partition = blockIdx.z;
  const int32_t context_len = p.context_lens[request];
  // The attended span [span_begin, context_len): all of it, or the window's part.
  const int32_t span_begin = context_len > 0 ? p.window.WindowStart(context_len - 1) : 0;
  const int32_t span_len = context_len - span_begin;
  const int32_t partition_size = EffectivePartitionSize(p.plan, span_len);
  const int32_t num_partitions = CeilDiv(span_len, partition_size);
  const int group = p.num_heads / p.cache.num_kv_heads;
  const int head0 = kv_head * group + chunk * kHeadsPerBlock;
  const int rows = min(kHeadsPerBlock, group - chunk * kHeadsPerBlock);
  const int64_t token = p.query_start[request];
  T* out = p.output + token * p.output_token_stride + static_cast<int64_t>(head0) * kHeadDim;
  if (context_len <= 0) {  // outside the contract; defined output rather than garbage
    if (partition == 0) {
      for (int i = threadIdx.x; i < rows * kHeadDim; i += Cfg::kThreads) {
        out[i] = FromFloat<T>(0.0f);
      }
    }
    return;
  }
  if (partition >= num_partitions) return;
  const int32_t begin = span_begin + partition * partition_size;
  const int32_t end = min(context_len, begin + partition_size);

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int gid = lane / 4;
  const int tid = lane % 4;

  // A fragments of the queries: row = query head head0 + row, zero past `rows`.
  uint32_t q_frag[kHeadDim / 16][4];
  {
    const T* q = p.query + token * p.query_token_stride + static_cast<int64_t>(head0) * kHeadDim;
    const T* q_lo = q + gid * kHeadDim + 2 * tid;
    const T* q_hi = q + (gid + 8) * kHeadDim + 2 * tid;
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      q_frag[ks][0] = gid < rows ? LoadPair(q_lo + ks * 16) : 0u;
      q_frag[ks][1] = gid + 8 < rows ? LoadPair(q_hi + ks * 16) : 0u;
      q_frag[ks][2] = gid < rows ? LoadPair(q_lo + ks * 16 + 8) : 0u;
      q_frag[ks][3] = gid + 8 < rows ? LoadPair(q_hi + ks * 16 + 8) : 0u;
    }
  }

  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};
  float o[kHeadDim / 8][4];
#pragma unroll
  for (int dt = 0; dt < kHeadDim / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[dt][e] = 0.0f;
  }
  DecodeTiles<T, C, kHeadDim>(p, q_frag, kv_head, begin, end, m, l, o);
  ReduceRowSums(l);

  // Merge the warps' states: M = max m_w, L = sum l_w 2^(m_w - M), O = sum o_w 2^(m_w - M).
  // A warp without tiles has m = -inf, l = 0, o = 0 and drops out; warp 0 always has tile 0.
  __syncthreads();  // every warp is done with the pipeline's shared memory
  float* merge = DynamicShared<float>();
  {
    float* wm = merge + warp * Cfg::kMergeFloatsPerWarp;
    float* wl = wm + kHeadsPerBlock;
    float* wo = wl + kHeadsPerBlock;
    if (tid == 0) {
      wm[gid] = m[0];
      wm[gid + 8] = m[1];
      wl[gid] = l[0];
      wl[gid + 8] = l[1];
    }
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      const int c = dt * 8 + 2 * tid;
      wo[gid * kHeadDim + c] = o[dt][0];
      wo[gid * kHeadDim + c + 1] = o[dt][1];
      wo[(gid + 8) * kHeadDim + c] = o[dt][2];
      wo[(gid + 8) * kHeadDim + c + 1] = o[dt][3];
    }
  }
  __syncthreads();
  const DecodeWorkspace ws = SplitWorkspace(p);
  for (int i = threadIdx.x; i < rows * kHeadDim; i += Cfg::kThreads) {
    const int row = i / kHeadDim;
    const int d = i % kHeadDim;
    float m_max = -INFINITY;
#pragma unroll
    for (int w = 0; w < Cfg::kWarps; ++w)
      m_max = fmaxf(m_max, merge[w * Cfg::kMergeFloatsPerWarp + row]);
    float l_sum = 0.0f;
    float acc = 0.0f;
#pragma unroll
    for (int w = 0; w < Cfg::kWarps; ++w) {
      const float* wm = merge + w * Cfg::kMergeFloatsPerWarp;
      const float f = exp2f(wm[row] - m_max);
      l_sum += wm[kHeadsPerBlock + row] * f;
      acc += wm[2 * kHeadsPerBlock + row * kHeadDim + d] * f;
    }
    const float value = acc / l_sum;
    if (num_partitions == 1) {
      out[row * kHeadDim + d] = FromFloat<T>(value);
    } else {
      const int64_t slot =
          (static_cast<int64_t>(request) * p.num_heads + head0 + row) * p.plan.max_num_partitions +
          partition;
      ws.partial_out[slot * kHeadDim + d] = value;
      if (d == 0) ws.partial_lse[slot] = m_max + log2f(l_sum);
    }
  }
}

// Combines a request's partitions for one query head: weights 2^(lse_p - max lse), normalized.
// Requests with a single partition were written by the decode kernel and are skipped.
template <typename T, typename C = T>
__global__ void MergePartitionsKernel(const PagedDecodeParams<T, C> p) {
  float* weights = DynamicShared<float>();  // [max_num_partitions]
  const int request = blockIdx.x;
  const int head = blockIdx.y;
  const int32_t context_len = p.context_lens[request];
  if (context_len <= 0) return;
  const int32_t span_len = context_len - p.window.WindowStart(context_len - 1);
  const int32_t num_partitions = CeilDiv(span_len, EffectivePartitionSize(p.plan, span_len));
  if (num_partitions <= 1) return;
  const DecodeWorkspace ws = SplitWorkspace(p);
  const int head_dim = p.cache.head_dim;
  const int64_t slot0 =
      (static_cast<int64_t>(request) * p.num_heads + head) * p.plan.max_num_partitions;
  float lse_max = -INFINITY;
  for (int i = 0; i < num_partitions; ++i) lse_max = fmaxf(lse_max, ws.partial_lse[slot0 + i]);
  for (int i = threadIdx.x; i < num_partitions; i += blockDim.x) {
    weights[i] = exp2f(ws.partial_lse[slot0 + i] - lse_max);
  }
  __syncthreads();
  float weight_sum = 0.0f;
  for (int i = 0; i < num_partitions; ++i) weight_sum += weights[i];
  const float inv_sum = 1.0f / weight_sum;
  T* out = p.output + static_cast<int64_t>(p.query_start[request]) * p.output_token_stride +
           static_cast<int64_t>(head) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < num_partitions; ++i) {
      acc += weights[i] * ws.partial_out[(slot0 + i) * head_dim + d];
    }
    out[d] = FromFloat<T>(acc * inv_sum);
  }
}

__host__ __device__ inline int NumHeadChunks(int32_t num_heads, int32_t num_kv_heads) {
  return CeilDiv(num_heads / num_kv_heads, kHeadsPerBlock);
}

// Launch shapes, shared by the launcher and the emulation test. The decode kernel runs
// DecodeConfig<head_dim>::kThreads threads with kSmemBytes of dynamic shared memory and takes
// (params, NumHeadChunks(...)); the merge kernel runs head_dim threads.
template <typename T, typename C>
dim3 DecodeGrid(const PagedDecodeParams<T, C>& p) {
  return dim3(p.num_requests,
              p.cache.num_kv_heads * NumHeadChunks(p.num_heads, p.cache.num_kv_heads),
              p.plan.max_num_partitions);
}

template <typename T, typename C>
dim3 MergeGrid(const PagedDecodeParams<T, C>& p) {
  return dim3(p.num_requests, p.num_heads);
}

// Whole 16-byte elements: DynamicShared() is uint4[], and nvcc reads the weights loop's floats
// in vectors up to the element's end (compute-sanitizer on an H200 caught a 12-byte read past 24
// bytes when this was 4 * max_num_partitions).
inline size_t MergeSharedBytes(const PagedDecodePlan& plan) {
  return (sizeof(float) * plan.max_num_partitions + 15) / 16 * 16;
}

}  // namespace pagoda::kernels::cuda::internal

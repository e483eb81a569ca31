#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/decode_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/decode_avx2_rows.h"
#include "kernels/cpu/thread_scratch.h"

namespace pagoda::kernels::cpu::decode {
namespace {

// The whole-block decode: one task per query token, every KV head. The per-head kernels read one
// head's tile per block, a 2 KiB run of bf16 at llama-110m's shape with the other heads' tiles
// between, a pattern that reads at about half the contiguous rate on Zen 1 (roofline_benchmark's
// BM_ReadTiles); here each block's tiles are read in order, all heads, one contiguous run per
// block. Each run's weighted V rows are summed in registers and added into the query head's
// accumulators in memory. (An int8 version of it, on the int8 kernel's integer products, came
// out level with that kernel per head: 0.96-1.08x at batch 16; it was left out.)
struct WholeScoresTag {};
struct WholeNormTag {};
struct WholeAccTag {};

// Prefetches the tiles of every KV head of the block at table index `index` in the K (or, with
// `value`, the V) pool (one contiguous run), and their scales where the cache has them per token,
// when index <= last.
template <typename T>
inline void PrefetchBlock(const PagedKvCacheView<T>& c, bool value, const int32_t* table,
                          int32_t index, int32_t last) {
  if (index > last) return;
  const int64_t physical = table[index];
  PrefetchLines(
      PoolOf(c, value) + c.Offset(physical, 0, 0),
      static_cast<int64_t>(c.num_kv_heads) * c.tile_elements() * static_cast<int64_t>(sizeof(T)));
  PrefetchScales(c, value, physical, 0, c.num_kv_heads);
}

// acc[0, 8 * kCount) += the run's weighted rows (dims from 8 * v0), summed in registers.
template <typename T, int kCount>
PAGODA_AVX2_TARGET inline void AddRunPassFloat(const Rows<T>& rows, int32_t d, int v0, float fixed,
                                               const float* p, float* acc) {
  __m256 sum[kCount];
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) sum[i] = _mm256_setzero_ps();
  AddWeightedRows<T, kCount>(rows, d, v0, fixed, p, sum);
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) {
    _mm256_storeu_ps(acc + 8 * i, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * i), sum[i]));
  }
}

// acc[0, head_dim) += one query head's weighted V rows of a run, 64 dims (8 registers) per pass.
template <typename T, int kChunks>
PAGODA_AVX2_TARGET inline void AddRun(const Rows<T>& rows, float fixed, const float* p,
                                      float* acc) {
  constexpr int kDim = 8 * kChunks, kPass = 8, kFull = kChunks / kPass, kRest = kChunks % kPass;
  for (int pass = 0; pass < kFull; ++pass) {
    AddRunPassFloat<T, kPass>(rows, kDim, kPass * pass, fixed, p, acc + 8 * kPass * pass);
  }
  if constexpr (kRest > 0) {
    AddRunPassFloat<T, kRest>(rows, kDim, kPass * kFull, fixed, p, acc + 8 * kPass * kFull);
  }
}

template <typename T, int kChunks>
PAGODA_AVX2_TARGET void FloatWholeBlockScores(const PagedAttentionArgs<T>& a, int64_t token,
                                              const int32_t* table, const AttendedRanges& ranges,
                                              float* scores) {
  constexpr int kDim = 8 * kChunks;
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  const __m256 factor = _mm256_set1_ps(a.scale * avx512::LoadScale<T>());
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t index = pos / c.block_size, n = RunLength(c, pos, end);
      PrefetchBlock(c, /*value=*/false, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const Rows<T> rows = RowsAt(c, /*value=*/false, table, h, pos, end);
        const __m256 fixed = _mm256_set1_ps(FixedScale(c, /*value=*/false, h));
        const float* q = QueryRow(a, token, h * group, part == 0);
        for (int g0 = 0; g0 < group; g0 += kMaxBatchedGroup) {
          FloatScoreRows<T, kChunks>(rows, q + g0 * kDim, std::min(kMaxBatchedGroup, group - g0),
                                     fixed, factor, scores + (h * group + g0) * len, len, at);
        }
      }
      at += n;
      pos += n;
    }
  }
}

template <typename T, int kChunks>
PAGODA_AVX2_TARGET void FloatWholeBlockValues(const PagedAttentionArgs<T>& a, const int32_t* table,
                                              const AttendedRanges& ranges, const float* p,
                                              float* acc) {
  constexpr int kDim = 8 * kChunks;
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  std::fill(acc, acc + static_cast<size_t>(a.num_heads) * kDim, 0.0f);
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t index = pos / c.block_size, n = RunLength(c, pos, end);
      PrefetchBlock(c, /*value=*/true, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const Rows<T> rows = RowsAt(c, /*value=*/true, table, h, pos, end);
        const float fixed = FixedScale(c, /*value=*/true, h) * avx512::LoadScale<T>();
        for (int q = h * group; q < (h + 1) * group; ++q) {
          AddRun<T, kChunks>(rows, fixed, p + q * len + at, acc + q * kDim);
        }
      }
      at += n;
      pos += n;
    }
  }
}

template <typename T, int kChunks>
PAGODA_AVX2_TARGET void AttendFloatWholeBlocks(const PagedAttentionArgs<T>& a, int64_t token,
                                               int64_t request, int32_t last) {
  constexpr int kDim = 8 * kChunks;
  const int heads = a.num_heads;
  const int32_t* table = a.block_tables.data() + request * a.max_blocks_per_request;
  const AttendedRanges ranges = Attended(a.window, last);
  const int32_t len = ranges.count;
  float* scores = ThreadScratch<WholeScoresTag, float>(static_cast<int64_t>(heads) * len);
  float* norm = ThreadScratch<WholeNormTag, float>(heads);
  float* acc = ThreadScratch<WholeAccTag, float>(static_cast<int64_t>(heads) * kDim);
  FloatWholeBlockScores<T, kChunks>(a, token, table, ranges, scores);
  for (int h = 0; h < heads; ++h) {
    norm[h] = 1.0f / ExpShiftedAvx2(scores + static_cast<size_t>(h) * len, len);
  }
  FloatWholeBlockValues<T, kChunks>(a, table, ranges, scores, acc);
  for (int h = 0; h < heads; ++h) {
    float* out = a.output + (token * heads + h) * kDim;
    for (int i = 0; i < kDim; ++i) out[i] = acc[h * kDim + i] * norm[h];
  }
}

}  // namespace

// The whole-block kernel for head dim kDim (none for int8: see above).
template <typename T, int kDim>
AttendAllFn<T> WholeBlockKernelFor() {
  if constexpr (std::is_same_v<T, int8_t>) {
    return nullptr;
  } else {
    return &AttendFloatWholeBlocks<T, kDim / 8>;
  }
}

template <typename T>
AttendAllFn<T> Avx2WholeBlockKernel(int head_dim) {
  return ForHeadDim<T, AttendAllFn<T>>(head_dim,
                                       []<int kDim>() { return WholeBlockKernelFor<T, kDim>(); });
}
template AttendAllFn<float> Avx2WholeBlockKernel<float>(int);
template AttendAllFn<Bf16> Avx2WholeBlockKernel<Bf16>(int);
template AttendAllFn<int8_t> Avx2WholeBlockKernel<int8_t>(int);
template AttendAllFn<Fp8E4M3> Avx2WholeBlockKernel<Fp8E4M3>(int);
template AttendAllFn<Fp8E5M2> Avx2WholeBlockKernel<Fp8E5M2>(int);

}  // namespace pagoda::kernels::cpu::decode

#endif  // __x86_64__

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

// The whole-block int8 decode: one task per query token, every KV head. The per-head kernel
// reads one head's tile per block, a 1 KiB run of int8 at llama-110m's shape with the other
// heads' tiles between, a pattern that reads at about 0.34 of the contiguous rate on Zen 1
// (roofline_benchmark's BM_ReadTiles); here each block's tiles are read in order, all heads,
// one contiguous run per block. The V weights are rounded to int16 per run of at most 16 rows
// of a block (each run its own scale), and each run's int32 sums are added into float
// accumulators in memory, one set per query head.
struct WholeScoresTag {};
struct WholeQueryTag {};
struct WholeQueryScaleTag {};
struct WholeNormTag {};
struct WholeAccTag {};

// Prefetches the tiles of every KV head of the block at table index `index` (one contiguous
// run), when index <= last.
template <typename T>
inline void PrefetchBlock(const PagedKvCacheView<T>& c, const T* pool, const int32_t* table,
                          int32_t index, int32_t last) {
  if (index > last) return;
  const char* p = reinterpret_cast<const char*>(pool + c.Offset(table[index], 0, 0));
  const int64_t bytes =
      static_cast<int64_t>(c.num_kv_heads) * c.tile_elements() * static_cast<int64_t>(sizeof(T));
  for (int64_t at = 0; at < bytes; at += 64) _mm_prefetch(p + at, _MM_HINT_T0);
}

// The weights e[j] * (the row's scale) of n <= 16 rows, rounded to int16 in pairs (pairs[i] =
// w[2i] | w[2i + 1] << 16, a missing partner 0); returns the factor back to float.
PAGODA_AVX2_TARGET inline float RunWeights(const float* e, const uint16_t* scales, int n,
                                           int32_t* pairs) {
  const int n0 = std::min(n, 8), n1 = n - n0;
  const __m256 w0 = _mm256_mul_ps(_mm256_maskload_ps(e, FirstLanes(n0)), LoadScales(scales, n0));
  const __m256 w1 =
      n1 > 0 ? _mm256_mul_ps(_mm256_maskload_ps(e + 8, FirstLanes(n1)), LoadScales(scales + 8, n1))
             : _mm256_setzero_ps();
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(w0, w1));  // weights are >= 0
  const float amax = *std::max_element(lanes, lanes + 8);
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? kInt16Max / amax : 0.0f);
  const __m256i low16 = _mm256_set1_epi64x(0xFFFF), high16 = _mm256_set1_epi64x(0xFFFF0000);
  const __m256i even_dwords = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int half = 0; half < 2; ++half) {
    const __m256i x = _mm256_cvtps_epi32(_mm256_mul_ps(half == 0 ? w0 : w1, inv));
    const __m256i pair = _mm256_or_si256(_mm256_and_si256(x, low16),
                                         _mm256_and_si256(_mm256_srli_epi64(x, 16), high16));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(pairs + 4 * half),
                     _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(pair, even_dwords)));
  }
  return amax / kInt16Max;
}

// acc[0, 16 * kCount) += scale * the sum over rows [0, n) (n <= 16, `d` apart; dims from where
// `row` points) weighted by `pairs`, the last row paired with `zero` when n is odd.
template <int kCount>
PAGODA_AVX2_TARGET inline void AddRunPass(const int8_t* row, int32_t d, int n, const int8_t* zero,
                                          const int32_t* pairs, float scale, float* acc) {
  __m256i sum[2 * kCount];
#pragma GCC unroll 8
  for (int i = 0; i < 2 * kCount; ++i) sum[i] = _mm256_setzero_si256();
  for (int j = 0; j < n; j += 2) {
    const int8_t* r0 = row + j * d;
    const int8_t* r1 = j + 1 < n ? r0 + d : zero;
    const __m256i w = _mm256_set1_epi32(pairs[j / 2]);
#pragma GCC unroll 4
    for (int i = 0; i < kCount; ++i) {
      const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 16 * i));
      const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 16 * i));
      const __m256i lo = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1));
      const __m256i hi = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1));
      sum[2 * i] = _mm256_add_epi32(sum[2 * i], _mm256_madd_epi16(lo, w));
      sum[2 * i + 1] = _mm256_add_epi32(sum[2 * i + 1], _mm256_madd_epi16(hi, w));
    }
  }
  const __m256 s = _mm256_set1_ps(scale);
#pragma GCC unroll 8
  for (int i = 0; i < 2 * kCount; ++i) {
    _mm256_storeu_ps(acc + 8 * i,
                     _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), s, _mm256_loadu_ps(acc + 8 * i)));
  }
}

// Every query head's scores (scores[h * len + at]), block by block, every KV head's rows of a
// block in turn.
template <int kPieces>
PAGODA_AVX2_TARGET void WholeBlockScores(const PagedAttentionArgs<int8_t>& a, int64_t token,
                                         const int32_t* table, const AttendedRanges& ranges,
                                         float* scores) {
  constexpr int kDim = 16 * kPieces;
  const PagedKvCacheView<int8_t>& c = a.cache;
  const int heads = a.num_heads, group = heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  auto* q16 = reinterpret_cast<int16_t(*)[kDim]>(
      ThreadScratch<WholeQueryTag, int16_t>(static_cast<int64_t>(heads) * kDim));
  float* q_scale = ThreadScratch<WholeQueryScaleTag, float>(heads);
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    if (ranges.begin[part] >= end) continue;
    for (int h = 0; h < heads; ++h) {
      q_scale[h] = QuantizeQuery<kDim>(QueryRow(a, token, h, part == 0), q16[h]) * a.scale;
    }
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t index = pos / c.block_size, offset = pos % c.block_size;
      const int32_t n = std::min(c.block_size - offset, end - pos);
      PrefetchBlock(c, c.key, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const Rows<int8_t> rows{c.key + c.Offset(table[index], h, offset),
                                c.key_scale + c.ScaleIndex(table[index], h, offset), n};
        for (int g0 = 0; g0 < group; g0 += kMaxBatchedGroup) {
          const int q = h * group + g0;
          ScoreRows<kPieces>(rows, q16 + q, q_scale + q, std::min(kMaxBatchedGroup, group - g0),
                             scores + q * len, len, at);
        }
      }
      at += n;
      pos += n;
    }
  }
}

// acc[h * head_dim, ...) = every query head's sum of weight * V (e: the softmax numerators,
// scores[h * len + at]), block by block, every KV head's rows of a block in turn.
template <int kPieces>
PAGODA_AVX2_TARGET void WholeBlockValues(const PagedAttentionArgs<int8_t>& a, const int32_t* table,
                                         const AttendedRanges& ranges, const float* e, float* acc) {
  constexpr int kDim = 16 * kPieces, kPass = 4, kFull = kPieces / kPass, kRest = kPieces % kPass;
  const PagedKvCacheView<int8_t>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  std::fill(acc, acc + static_cast<size_t>(a.num_heads) * kDim, 0.0f);
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t index = pos / c.block_size, offset = pos % c.block_size;
      const int32_t n = std::min(c.block_size - offset, end - pos);
      PrefetchBlock(c, c.value, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const int8_t* rows = c.value + c.Offset(table[index], h, offset);
        const uint16_t* scales = c.value_scale + c.ScaleIndex(table[index], h, offset);
        for (int32_t j0 = 0; j0 < n; j0 += 16) {
          const int m = std::min<int32_t>(16, n - j0);
          for (int g = 0; g < group; ++g) {
            const int q = h * group + g;
            int32_t pairs[8];
            const float scale = RunWeights(e + q * len + at + j0, scales + j0, m, pairs);
            const int8_t* row = rows + j0 * kDim;
            float* out = acc + q * kDim;
            for (int pass = 0; pass < kFull; ++pass) {
              AddRunPass<kPass>(row + 64 * pass, kDim, m, kZeroRow + 64 * pass, pairs, scale,
                                out + 64 * pass);
            }
            if constexpr (kRest > 0) {
              AddRunPass<kRest>(row + 64 * kFull, kDim, m, kZeroRow + 64 * kFull, pairs, scale,
                                out + 64 * kFull);
            }
          }
        }
      }
      at += n;
      pos += n;
    }
  }
}

template <int kPieces>
PAGODA_AVX2_TARGET void AttendInt8WholeBlocks(const PagedAttentionArgs<int8_t>& a, int64_t token,
                                              int64_t request, int32_t last) {
  constexpr int kDim = 16 * kPieces;
  const int heads = a.num_heads;
  const int32_t* table = a.block_tables.data() + request * a.max_blocks_per_request;
  const AttendedRanges ranges = Attended(a.window, last);
  const int32_t len = ranges.count;
  float* scores = ThreadScratch<WholeScoresTag, float>(static_cast<int64_t>(heads) * len);
  float* norm = ThreadScratch<WholeNormTag, float>(heads);
  float* acc = ThreadScratch<WholeAccTag, float>(static_cast<int64_t>(heads) * kDim);
  WholeBlockScores<kPieces>(a, token, table, ranges, scores);
  for (int h = 0; h < heads; ++h) {
    norm[h] = 1.0f / ExpShiftedAvx2(scores + static_cast<size_t>(h) * len, len);
  }
  WholeBlockValues<kPieces>(a, table, ranges, scores, acc);
  for (int h = 0; h < heads; ++h) {
    float* out = a.output + (token * heads + h) * kDim;
    for (int i = 0; i < kDim; ++i) out[i] = acc[h * kDim + i] * norm[h];
  }
}

// The whole-block decode for float, bf16 and FP8 caches: WholeBlockScores' and
// WholeBlockValues' plan with float dot products (FloatScoreRows), each run's weighted V rows
// summed in registers and added into the query head's accumulators in memory.

// acc[0, 8 * kCount) += the sum over rows [0, n) (`d` apart; dims from where `row` points) of
// p[j] times the row's factor (its scale times `load_scale`, or `fixed` where there are none).
template <typename T, int kCount>
PAGODA_AVX2_TARGET inline void AddRunPassFloat(const T* row, int32_t d, int n,
                                               const uint16_t* scales, float fixed, const float* p,
                                               float* acc) {
  __m256 sum[kCount];
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) sum[i] = _mm256_setzero_ps();
  for (int j = 0; j < n; ++j) {
    const float f = scales != nullptr ? Bf16ToFloat(scales[j]) * avx512::LoadScale<T>() : fixed;
    const __m256 w = _mm256_set1_ps(p[j] * f);
#pragma GCC unroll 8
    for (int i = 0; i < kCount; ++i) {
      sum[i] = _mm256_fmadd_ps(w, avx2::LoadScaled8(row + j * d + 8 * i), sum[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) {
    _mm256_storeu_ps(acc + 8 * i, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * i), sum[i]));
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
      const int32_t index = pos / c.block_size;
      const Rows<T> first = RowsAt(c, /*value=*/false, table, 0, pos, end);
      PrefetchBlock(c, c.key, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const Rows<T> rows = RowsAt(c, /*value=*/false, table, h, pos, end);
        const __m256 fixed = _mm256_set1_ps(FixedScale(c, /*value=*/false, h));
        const float* q = QueryRow(a, token, h * group, part == 0);
        for (int g0 = 0; g0 < group; g0 += kMaxBatchedGroup) {
          FloatScoreRows<T, kChunks>(rows, q + g0 * kDim, std::min(kMaxBatchedGroup, group - g0),
                                     fixed, factor, scores + (h * group + g0) * len, len, at);
        }
      }
      at += first.count;
      pos += first.count;
    }
  }
}

template <typename T, int kChunks>
PAGODA_AVX2_TARGET void FloatWholeBlockValues(const PagedAttentionArgs<T>& a, const int32_t* table,
                                              const AttendedRanges& ranges, const float* p,
                                              float* acc) {
  constexpr int kDim = 8 * kChunks, kPass = 8, kFull = kChunks / kPass, kRest = kChunks % kPass;
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  std::fill(acc, acc + static_cast<size_t>(a.num_heads) * kDim, 0.0f);
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t index = pos / c.block_size;
      int32_t n = 0;
      PrefetchBlock(c, c.value, table, index + kPrefetchBlocks, (end - 1) / c.block_size);
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const Rows<T> rows = RowsAt(c, /*value=*/true, table, h, pos, end);
        const float fixed = FixedScale(c, /*value=*/true, h) * avx512::LoadScale<T>();
        n = rows.count;
        for (int g = 0; g < group; ++g) {
          const int q = h * group + g;
          for (int pass = 0; pass < kFull; ++pass) {
            AddRunPassFloat<T, kPass>(rows.row + 8 * kPass * pass, kDim, n, rows.scale, fixed,
                                      p + q * len + at, acc + q * kDim + 8 * kPass * pass);
          }
          if constexpr (kRest > 0) {
            AddRunPassFloat<T, kRest>(rows.row + 8 * kPass * kFull, kDim, n, rows.scale, fixed,
                                      p + q * len + at, acc + q * kDim + 8 * kPass * kFull);
          }
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

// The whole-block kernel for head dim kDim.
template <typename T, int kDim>
AttendAllFn<T> WholeBlockKernelFor() {
  if constexpr (std::is_same_v<T, int8_t>) {
    return &AttendInt8WholeBlocks<kDim / 16>;
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

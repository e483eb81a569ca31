#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/decode_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/decode_avx2_rows.h"
#include "kernels/cpu/thread_scratch.h"

// The per-query attention kernels for CPUs with AVX2 but not AVX-512 (or where AVX-512 is not
// allowed), head dims 64, 80, 96, 128 and 256. Each call attends one query token's group of
// query heads (one KV head) to its attended positions: scores, softmax, then V.
namespace pagoda::kernels::cpu::decode {
namespace {

// The scores of query heads [g0, g0 + heads) of the group (heads <= kMaxBatchedGroup).
template <typename T, int kChunks>
PAGODA_AVX2_TARGET void ScoresAvx2(const PagedAttentionArgs<T>& a, int64_t token, int kv_head,
                                   const int32_t* table, const AttendedRanges& ranges, int g0,
                                   int heads, std::vector<float>& scores) {
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  const __m256 fixed = _mm256_set1_ps(FixedScale(c, /*value=*/false, kv_head));
  const __m256 factor = _mm256_set1_ps(a.scale * avx512::LoadScale<T>());
  const int32_t ahead = kPrefetchBlocks * c.block_size;
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    const float* q = QueryRow(a, token, kv_head * group + g0, part == 0);
    int32_t prefetched = -1;
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      PrefetchTile(c, /*value=*/false, table, kv_head, pos + ahead, end, &prefetched);
      const Rows<T> rows = RowsAt(c, /*value=*/false, table, kv_head, pos, end);
      FloatScoreRows<T, kChunks>(rows, q, heads, fixed, factor, scores.data() + g0 * len, len, at);
      at += rows.count;
      pos += rows.count;
    }
  }
}

// In place: s[0, len) = softmax(s).
PAGODA_AVX2_TARGET inline void SoftmaxAvx2(float* s, int32_t len) {
  const float inv = 1.0f / ExpShiftedAvx2(s, len);
  const __m256 inv_v = _mm256_set1_ps(inv);
  int32_t i = 0;
  for (; i + 8 <= len; i += 8)
    _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), inv_v));
  for (; i < len; ++i) s[i] *= inv;
}

// out[8 * v0, 8 * (v0 + kCount)) = sum over the attended positions of p * V (dequantized), the
// kCount vectors' sums in registers (a compile-time count: a runtime one left them in memory).
template <typename T, int kCount>
PAGODA_AVX2_TARGET inline void AccumulateValuesAvx2(const PagedAttentionArgs<T>& a,
                                                    const int32_t* table, int kv_head,
                                                    const AttendedRanges& ranges, const float* p,
                                                    int v0, bool prefetch, float* out) {
  const PagedKvCacheView<T>& c = a.cache;
  const float fixed = FixedScale(c, /*value=*/true, kv_head) * avx512::LoadScale<T>();
  __m256 acc[kCount];
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) acc[i] = _mm256_setzero_ps();
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    int32_t prefetched = -1;
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      if (prefetch) {
        PrefetchTile(c, /*value=*/true, table, kv_head, pos + kPrefetchBlocks * c.block_size, end,
                     &prefetched);
      }
      const Rows<T> rows = RowsAt(c, /*value=*/true, table, kv_head, pos, end);
      AddWeightedRows<T, kCount>(rows, c.head_dim, v0, fixed, p + at, acc);
      at += rows.count;
      pos += rows.count;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kCount; ++i) _mm256_storeu_ps(out + 8 * (v0 + i), acc[i]);
}

template <typename T, int kChunks>
PAGODA_AVX2_TARGET void AttendAvx2(const PagedAttentionArgs<T>& a, int64_t token, int64_t request,
                                   int kv_head, int32_t last, std::vector<float>& scores) {
  constexpr int kPass = 8;  // V vectors accumulated per pass over the positions
  const auto [group, table, ranges] = SetUpTask(a, request, last, scores);
  const int32_t len = ranges.count;
  for (int g0 = 0; g0 < group; g0 += kMaxBatchedGroup) {
    ScoresAvx2<T, kChunks>(a, token, kv_head, table, ranges, g0,
                           std::min(kMaxBatchedGroup, group - g0), scores);
  }
  for (int g = 0; g < group; ++g) SoftmaxAvx2(scores.data() + static_cast<size_t>(g) * len, len);
  constexpr int kFull = kChunks / kPass, kRest = kChunks % kPass;
  for (int g = 0; g < group; ++g) {
    const float* p = scores.data() + static_cast<size_t>(g) * len;
    float* out = a.output + (token * a.num_heads + kv_head * group + g) * (8 * kChunks);
    for (int pass = 0; pass < kFull; ++pass) {
      AccumulateValuesAvx2<T, kPass>(a, table, kv_head, ranges, p, pass * kPass,
                                     /*prefetch=*/g == 0 && pass == 0, out);
    }
    if constexpr (kRest > 0) {
      AccumulateValuesAvx2<T, kRest>(a, table, kv_head, ranges, p, kFull * kPass,
                                     /*prefetch=*/g == 0 && kFull == 0, out);
    }
  }
}

// The int8 path: integer dot products instead of a conversion to float per element, which Zen 1
// runs on one pipe at half the FMA rate. Sixteen int8 elements widen to int16 in one
// instruction, and vpmaddwd multiplies them in pairs into int32 sums, exact:
// - K: each query head is rounded to int16 with one scale (max|q| / 32767), so a score is its
//   integer dot product times that scale, the row's scale and the attention scale;
// - V: the softmax numerators times the rows' scales are rounded to int16 per run of
//   kSegmentPairs position pairs, with the run's own scale (its largest weight / 32767); two
//   positions' rows interleaved byte by byte meet a pair of weights in one vpmaddwd, and each
//   run's int32 sums are scaled into float accumulators (the softmax's 1 / sum with them).
// Both roundings are relative 2^-16 of the largest value sharing their scale: about 1/250 of
// what the cache's own int8 grid (a step of max / 127) already costs. Rows are read block by
// block (Rows), with one division per block rather than per position.
// Position pairs per run of int32 V sums: |sum| <= 32 * 2 * 32767 * 128 < 2^31.
constexpr int32_t kSegmentPairs = 32;

// The largest int16 a value is rounded to: the int8 kernels' query and weight scales.
constexpr float kInt16Max = 32767.0f;

// q (kDim elements) rounded to int16 with one scale; returns the scale (0 for a zero query, NaN
// for one with a NaN or an infinity, so that its scores are NaN as on the float path).
template <int kDim>
PAGODA_AVX2_TARGET inline float QuantizeQuery(const float* q, int16_t* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 amax_v = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int i = 0; i < kDim; i += 8) {
    const __m256 x = _mm256_andnot_ps(sign, _mm256_loadu_ps(q + i));
    amax_v = _mm256_max_ps(amax_v, x);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(x, inf, _CMP_NLT_UQ));  // inf or NaN
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax_v);
  const float amax = *std::max_element(lanes, lanes + 8);
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? kInt16Max / amax : 0.0f);
  for (int i = 0; i < kDim; i += 16) {
    const __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(q + i), inv));
    const __m256i hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(q + i + 8), inv));
    // packs works within 128-bit halves: [lo0-3, hi0-3, lo4-7, hi4-7] back into order.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8));
  }
  if (_mm256_movemask_ps(bad) != 0) return std::numeric_limits<float>::quiet_NaN();
  return amax / kInt16Max;
}

// The int32 partial dot products of a row (kPieces of 16 elements) with the heads' queries.
template <int kPieces>
PAGODA_AVX2_TARGET inline void DotRow(const int8_t* k, const int16_t (*q16)[16 * kPieces],
                                      int heads, int j, __m256i (*partial)[8]) {
  __m256i kv[kPieces];
#pragma GCC unroll 16
  for (int i = 0; i < kPieces; ++i) {
    kv[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + 16 * i)));
  }
  for (int g = 0; g < heads; ++g) {
    const __m256i* qg = reinterpret_cast<const __m256i*>(q16[g]);
    __m256i acc = _mm256_madd_epi16(_mm256_loadu_si256(qg), kv[0]);
#pragma GCC unroll 16
    for (int i = 1; i < kPieces; ++i) {
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_loadu_si256(qg + i), kv[i]));
    }
    partial[g][j] = acc;
  }
}

// The scores of `heads` query heads (<= kMaxBatchedGroup; q16 and q_scale theirs) against the
// rows of one block run, into scores[g * len + at + j]: each K row widened to int16 once for
// the heads, up to 8 rows reduced together (SumInt8x8), converted and scaled once.
template <int kPieces>
PAGODA_AVX2_TARGET void ScoreRows(const Rows<int8_t>& rows, const int16_t (*q16)[16 * kPieces],
                                  const float* q_scale, int heads, float* scores, size_t len,
                                  int32_t at) {
  constexpr int kDim = 16 * kPieces;
  __m256i partial[kMaxBatchedGroup][8];
  for (int32_t j0 = 0; j0 < rows.count; j0 += 8) {
    const int n = std::min<int32_t>(8, rows.count - j0);
    const int8_t* k = rows.row + j0 * kDim;
    if (n == 8) {
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) DotRow<kPieces>(k + j * kDim, q16, heads, j, partial);
    } else {
      for (int j = 0; j < 8; ++j) {
        if (j < n) {
          DotRow<kPieces>(k + j * kDim, q16, heads, j, partial);
        } else {
          for (int g = 0; g < heads; ++g) partial[g][j] = _mm256_setzero_si256();
        }
      }
    }
    const __m256 row_scale = LoadScales(rows.scale + j0, n);
    const __m256i mask = FirstLanes(n);
    for (int g = 0; g < heads; ++g) {
      const __m256 dots = _mm256_cvtepi32_ps(avx2::SumInt8x8(partial[g]));
      _mm256_maskstore_ps(
          scores + g * len + at + j0, mask,
          _mm256_mul_ps(_mm256_mul_ps(dots, row_scale), _mm256_set1_ps(q_scale[g])));
    }
  }
}

// The zero row an odd part's last position is paired with (its weight is zero too).
alignas(32) constexpr int8_t kZeroRow[256] = {};

struct ValueScalesTag {};
struct WeightsTag {};
struct PairWeightsTag {};
struct SegmentScalesTag {};

// The scores of query heads [g0, g0 + heads) of the group (heads <= kMaxBatchedGroup), kPieces
// = head_dim / 16, block run by block run (ScoreRows).
template <int kPieces>
PAGODA_AVX2_TARGET void ScoresInt8(const PagedAttentionArgs<int8_t>& a, int64_t token, int kv_head,
                                   const int32_t* table, const AttendedRanges& ranges, int g0,
                                   int heads, std::vector<float>& scores) {
  constexpr int kDim = 16 * kPieces;
  const PagedKvCacheView<int8_t>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const size_t len = static_cast<size_t>(ranges.count);
  alignas(32) int16_t q16[kMaxBatchedGroup][kDim];
  float q_scale[kMaxBatchedGroup];
  const int32_t ahead = kPrefetchBlocks * c.block_size;
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t end = ranges.end[part];
    if (ranges.begin[part] >= end) continue;
    for (int g = 0; g < heads; ++g) {
      const float* q = QueryRow(a, token, kv_head * group + g0 + g, part == 0);
      q_scale[g] = QuantizeQuery<kDim>(q, q16[g]) * a.scale;
    }
    int32_t prefetched = -1;
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      const int32_t before = prefetched;
      PrefetchTile(c, /*value=*/false, table, kv_head, pos + ahead, end, &prefetched);
      if (prefetched != before) {  // and the V scales, which ValueScales reads before the V pass
        PrefetchScales(c, /*value=*/true, table[prefetched], kv_head, 1);
      }
      const Rows<int8_t> rows = RowsAt(c, /*value=*/false, table, kv_head, pos, end);
      ScoreRows<kPieces>(rows, q16, q_scale, heads, scores.data() + g0 * len, len, at);
      at += rows.count;
      pos += rows.count;
    }
  }
}

// The value scale of every attended position, in attended order.
inline void ValueScales(const PagedKvCacheView<int8_t>& c, const int32_t* table, int kv_head,
                        const AttendedRanges& ranges, float* out) {
  for (int32_t part = 0; part < 2; ++part) {
    for (int32_t pos = ranges.begin[part]; pos < ranges.end[part];) {
      const Rows<int8_t> rows = RowsAt(c, /*value=*/true, table, kv_head, pos, ranges.end[part]);
      for (int32_t j = 0; j < rows.count; ++j) *out++ = Bf16ToFloat(rows.scale[j]);
      pos += rows.count;
    }
  }
}

// The weights of one head, e (its softmax numerators) times the value scales, in position
// pairs within each part of the range (an odd part's last position paired with a zero weight),
// rounded to int16 per run of kSegmentPairs pairs: pairs[i] = w[2i] | w[2i + 1] << 16, and
// segment_scale[s] = the factor back to float, times `norm` (the softmax's 1 / sum). `w` is
// scratch for 2 * pairs rounded up to 8, plus 8.
PAGODA_AVX2_TARGET inline void QuantizeWeights(const float* e, const float* value_scale,
                                               const AttendedRanges& ranges, float norm, float* w,
                                               int32_t* pairs, float* segment_scale) {
  int32_t n = 0;
  for (int32_t part = 0, at = 0; part < 2; ++part) {
    const int32_t count = ranges.end[part] - ranges.begin[part];
    int32_t i = 0;
    for (; i + 8 <= count; i += 8) {
      _mm256_storeu_ps(w + n + i, _mm256_mul_ps(_mm256_loadu_ps(e + at + i),
                                                _mm256_loadu_ps(value_scale + at + i)));
    }
    for (; i < count; ++i) w[n + i] = e[at + i] * value_scale[at + i];
    at += count;
    n += count;
    if (count % 2 != 0) w[n++] = 0.0f;
  }
  std::fill(w + n, w + (n + 7) / 8 * 8, 0.0f);
  const int32_t num_pairs = n / 2;
  const __m256i low16 = _mm256_set1_epi64x(0xFFFF), high16 = _mm256_set1_epi64x(0xFFFF0000);
  const __m256i even_dwords = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int32_t first = 0, seg = 0; first < num_pairs; first += kSegmentPairs, ++seg) {
    const int32_t end = std::min(2 * num_pairs, 2 * (first + kSegmentPairs));
    __m256 amax_v = _mm256_setzero_ps();
    for (int32_t i = 2 * first; i < end; i += 8)
      amax_v = _mm256_max_ps(amax_v, _mm256_loadu_ps(w + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, amax_v);
    const float amax = *std::max_element(lanes, lanes + 8);
    const __m256 inv = _mm256_set1_ps(amax > 0.0f ? kInt16Max / amax : 0.0f);
    segment_scale[seg] = amax / kInt16Max * norm;
    for (int32_t i = 2 * first; i < end; i += 8) {
      // 8 weights as int32, then each qword's two (w even, w odd) as one dword, then those 4.
      const __m256i x = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + i), inv));
      const __m256i pair = _mm256_or_si256(_mm256_and_si256(x, low16),
                                           _mm256_and_si256(_mm256_srli_epi64(x, 16), high16));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(pairs + i / 2),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(pair, even_dwords)));
    }
  }
}

// The int32 sums and float accumulators of one pass of the V accumulation.
template <int kPieces>
struct ValueSums {
  __m256 acc[2 * kPieces];
  __m256i sum[2 * kPieces];
  int32_t pair = 0;
};

// Adds rows r0 and r1 (dims [0, 16 * kPieces) from where they point), weighted by pairs[s.pair],
// into s; at the end of a run of kSegmentPairs pairs, moves the run's sums into float.
template <int kPieces>
PAGODA_AVX2_TARGET __attribute__((always_inline)) inline void AddPair(const int8_t* r0,
                                                                      const int8_t* r1,
                                                                      const int32_t* pairs,
                                                                      const float* segment_scale,
                                                                      ValueSums<kPieces>& s) {
  const __m256i w = _mm256_set1_epi32(pairs[s.pair]);
#pragma GCC unroll 4
  for (int i = 0; i < kPieces; ++i) {
    const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 16 * i));
    const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 16 * i));
    const __m256i lo = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1));
    const __m256i hi = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1));
    s.sum[2 * i] = _mm256_add_epi32(s.sum[2 * i], _mm256_madd_epi16(lo, w));
    s.sum[2 * i + 1] = _mm256_add_epi32(s.sum[2 * i + 1], _mm256_madd_epi16(hi, w));
  }
  if (++s.pair % kSegmentPairs == 0) FlushRun(segment_scale[s.pair / kSegmentPairs - 1], s);
}

// acc += sum * scale, and sum = 0: a run of int32 V sums moved into float.
template <int kPieces>
PAGODA_AVX2_TARGET inline void FlushRun(float scale, ValueSums<kPieces>& s) {
  const __m256 f = _mm256_set1_ps(scale);
#pragma GCC unroll 8
  for (int i = 0; i < 2 * kPieces; ++i) {
    s.acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s.sum[i]), f, s.acc[i]);
    s.sum[i] = _mm256_setzero_si256();
  }
}

// out[v0, v0 + 16 * kPieces) = sum of weight * V over the attended positions, from the pairs of
// QuantizeWeights (consecutive positions of a part, whether or not in one block).
template <int kPieces>
PAGODA_AVX2_TARGET void AccumulateValuesInt8(const PagedAttentionArgs<int8_t>& a,
                                             const int32_t* table, int kv_head,
                                             const AttendedRanges& ranges, const int32_t* pairs,
                                             const float* segment_scale, int v0, bool prefetch,
                                             float* out) {
  const PagedKvCacheView<int8_t>& c = a.cache;
  const int32_t d = c.head_dim;
  ValueSums<kPieces> s;
#pragma GCC unroll 8
  for (int i = 0; i < 2 * kPieces; ++i) {
    s.acc[i] = _mm256_setzero_ps();
    s.sum[i] = _mm256_setzero_si256();
  }
  for (int32_t part = 0; part < 2; ++part) {
    int32_t prefetched = -1;
    const int32_t end = ranges.end[part];
    const int8_t* pending = nullptr;  // a block's odd last row, for the next block's first
    for (int32_t pos = ranges.begin[part]; pos < end;) {
      if (prefetch) {
        PrefetchTile(c, /*value=*/true, table, kv_head, pos + kPrefetchBlocks * c.block_size, end,
                     &prefetched);
      }
      const Rows<int8_t> rows = RowsAt(c, /*value=*/true, table, kv_head, pos, end);
      const int8_t* row = rows.row + v0;
      int32_t j = 0;
      if (pending != nullptr) {
        AddPair(pending, row, pairs, segment_scale, s);
        pending = nullptr;
        j = 1;
      }
      for (; j + 1 < rows.count; j += 2)
        AddPair(row + j * d, row + (j + 1) * d, pairs, segment_scale, s);
      if (j < rows.count) pending = row + j * d;
      pos += rows.count;
    }
    if (pending != nullptr) AddPair(pending, kZeroRow, pairs, segment_scale, s);
  }
  if (s.pair % kSegmentPairs != 0) FlushRun(segment_scale[s.pair / kSegmentPairs], s);
#pragma GCC unroll 8
  for (int i = 0; i < 2 * kPieces; ++i) _mm256_storeu_ps(out + v0 + 8 * i, s.acc[i]);
}

// kPieces = head_dim / 16.
template <int kPieces>
PAGODA_AVX2_TARGET void AttendInt8(const PagedAttentionArgs<int8_t>& a, int64_t token,
                                   int64_t request, int kv_head, int32_t last,
                                   std::vector<float>& scores) {
  constexpr int kPass = 4;  // 16-dim pieces per pass over the positions (8 int32 sums)
  const PagedKvCacheView<int8_t>& c = a.cache;
  const auto [group, table, ranges] = SetUpTask(a, request, last, scores);
  const int32_t len = ranges.count;
  for (int g0 = 0; g0 < group; g0 += kMaxBatchedGroup) {
    ScoresInt8<kPieces>(a, token, kv_head, table, ranges, g0,
                        std::min(kMaxBatchedGroup, group - g0), scores);
  }
  const int32_t max_pairs = len / 2 + 2;
  float* value_scale = ThreadScratch<ValueScalesTag, float>(len);
  float* w = ThreadScratch<WeightsTag, float>(2 * max_pairs + 8);
  int32_t* pairs = ThreadScratch<PairWeightsTag, int32_t>(max_pairs + 4);
  float* segment_scale = ThreadScratch<SegmentScalesTag, float>(max_pairs / kSegmentPairs + 1);
  ValueScales(c, table, kv_head, ranges, value_scale);
  constexpr int kFull = kPieces / kPass, kRest = kPieces % kPass;
  for (int g = 0; g < group; ++g) {
    float* e = scores.data() + static_cast<size_t>(g) * len;
    const float norm = 1.0f / ExpShiftedAvx2(e, len);
    QuantizeWeights(e, value_scale, ranges, norm, w, pairs, segment_scale);
    float* out = a.output + (token * a.num_heads + kv_head * group + g) * (16 * kPieces);
    for (int pass = 0; pass < kFull; ++pass) {
      AccumulateValuesInt8<kPass>(a, table, kv_head, ranges, pairs, segment_scale,
                                  16 * kPass * pass,
                                  /*prefetch=*/g == 0 && pass == 0, out);
    }
    if constexpr (kRest > 0) {
      AccumulateValuesInt8<kRest>(a, table, kv_head, ranges, pairs, segment_scale,
                                  16 * kPass * kFull,
                                  /*prefetch=*/g == 0 && kFull == 0, out);
    }
  }
}

// The kernel for head dim kDim.
template <typename T, int kDim>
AttendFn<T> KernelFor() {
  if constexpr (std::is_same_v<T, int8_t>) {
    return &AttendInt8<kDim / 16>;
  } else {
    return &AttendAvx2<T, kDim / 8>;
  }
}

}  // namespace

template <typename T>
AttendFn<T> Avx2Kernel(int head_dim) {
  return ForHeadDim<T>(head_dim, []<int kDim>() { return KernelFor<T, kDim>(); });
}

template AttendFn<float> Avx2Kernel<float>(int);
template AttendFn<Bf16> Avx2Kernel<Bf16>(int);
template AttendFn<int8_t> Avx2Kernel<int8_t>(int);
template AttendFn<Fp8E4M3> Avx2Kernel<Fp8E4M3>(int);
template AttendFn<Fp8E5M2> Avx2Kernel<Fp8E5M2>(int);

}  // namespace pagoda::kernels::cpu::decode

#endif  // __x86_64__
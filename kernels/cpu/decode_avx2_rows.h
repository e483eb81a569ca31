#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/decode_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/kv_scales.h"

// What the AVX2 decode kernels share (paged_attention_avx2.cc: a task per token and KV head;
// decode_whole_blocks_avx2.cc: a task per token, every KV head): the scales and weights of a
// block run's rows (kv_scales.h's Rows), their float dot products with the queries, and the
// softmax's numerators. Internal to those files.
namespace pagoda::kernels::cpu::decode {

// 8 bf16 scales as floats (n < 8 of them: the rest 0).
PAGODA_AVX2_TARGET inline __m256 LoadScales(const uint16_t* s, int n) {
  alignas(16) uint16_t bits[8] = {};
  const uint16_t* from = s;
  if (n < 8) {
    std::copy(s, s + n, bits);
    from = bits;
  }
  return avx2::Load8(reinterpret_cast<const Bf16*>(from));
}

// Lanes [0, n) set: the mask of a group of n < 8 scores.
PAGODA_AVX2_TARGET inline __m256i FirstLanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The weights of rows [j0, j0 + n) of a run (n = up to 8 of them, returned) into w8: p[j] times
// the row's scale times avx512::LoadScale<T>(), or times `fixed` where the rows have no scales;
// computed 8 at a time, where a scalar chain per row (load, widen, multiply, broadcast) held
// up the V accumulation.
template <typename T>
PAGODA_AVX2_TARGET inline int RowWeights(const Rows<T>& rows, int32_t j0, const float* p,
                                         float fixed, float* w8) {
  const int n = std::min<int32_t>(8, rows.count - j0);
  const __m256 f = rows.scale != nullptr ? _mm256_mul_ps(LoadScales(rows.scale + j0, n),
                                                         _mm256_set1_ps(avx512::LoadScale<T>()))
                                         : _mm256_set1_ps(fixed);
  _mm256_store_ps(w8, _mm256_mul_ps(_mm256_maskload_ps(p, FirstLanes(n)), f));
  return n;
}

// acc[0, kCount) += the sum over a run's rows (their dims from 8 * v0, rows d apart) of p[j]
// times the row's factor (RowWeights). Inlined always, so that acc stays in registers.
template <typename T, int kCount>
PAGODA_AVX2_TARGET __attribute__((always_inline)) inline void AddWeightedRows(
    const Rows<T>& rows, int32_t d, int v0, float fixed, const float* p, __m256 (&acc)[kCount]) {
  for (int32_t j0 = 0; j0 < rows.count; j0 += 8) {
    alignas(32) float w8[8];
    const int n = RowWeights<T>(rows, j0, p + j0, fixed, w8);
    const T* v = rows.row + j0 * d + 8 * v0;
    for (int j = 0; j < n; ++j, v += d) {
      const __m256 w = _mm256_broadcast_ss(w8 + j);
#pragma GCC unroll 8
      for (int i = 0; i < kCount; ++i) {
        acc[i] = _mm256_fmadd_ps(w, avx2::LoadScaled8(v + 8 * i), acc[i]);
      }
    }
  }
}

// The AVX2 path for float, bf16 and FP8 caches: the AVX-512 kernel's plan on 8 lanes. A K row is
// loaded (and decoded) once for the group's queries as kChunks vectors of 8, the scores of up to
// 8 rows of a block summed together (Sum8x8) and scaled by their rows' scales; the softmax on a
// vectorized exp; V accumulated 64 dims (8 registers) at a time.

// The partial dot products of a row (kChunks vectors of 8) with the heads' queries.
template <typename T, int kChunks>
PAGODA_AVX2_TARGET inline void FloatDotRow(const T* k, const float* q, int heads, int j,
                                           __m256 (*partial)[8]) {
  __m256 kv[kChunks];
#pragma GCC unroll 32
  for (int i = 0; i < kChunks; ++i) kv[i] = avx2::LoadScaled8(k + 8 * i);
  for (int g = 0; g < heads; ++g) {
    const float* qg = q + g * 8 * kChunks;
    __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(qg), kv[0]);
#pragma GCC unroll 32
    for (int i = 1; i < kChunks; ++i)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 8 * i), kv[i], acc);
    partial[g][j] = acc;
  }
}

// The scores of `heads` query heads (<= kMaxBatchedGroup, q theirs, kDim apart) against the
// rows of one block run, into scores[g * len + at + j], times `factor` and the rows' scales (or
// `fixed` where they have none).
template <typename T, int kChunks>
PAGODA_AVX2_TARGET void FloatScoreRows(const Rows<T>& rows, const float* q, int heads, __m256 fixed,
                                       __m256 factor, float* scores, size_t len, int32_t at) {
  constexpr int kDim = 8 * kChunks;
  __m256 partial[kMaxBatchedGroup][8];
  for (int32_t j0 = 0; j0 < rows.count; j0 += 8) {
    const int n = std::min<int32_t>(8, rows.count - j0);
    const T* k = rows.row + j0 * kDim;
    for (int j = 0; j < 8; ++j) {
      if (j < n) {
        FloatDotRow<T, kChunks>(k + j * kDim, q, heads, j, partial);
      } else {
        for (int g = 0; g < heads; ++g) partial[g][j] = _mm256_setzero_ps();
      }
    }
    const __m256 row_scale =
        _mm256_mul_ps(factor, rows.scale != nullptr ? LoadScales(rows.scale + j0, n) : fixed);
    const __m256i mask = FirstLanes(n);
    for (int g = 0; g < heads; ++g) {
      _mm256_maskstore_ps(scores + g * len + at + j0, mask,
                          _mm256_mul_ps(avx2::Sum8x8(partial[g]), row_scale));
    }
  }
}

// In place: s[0, len) = exp(s - max(s)); returns their sum.
PAGODA_AVX2_TARGET inline float ExpShiftedAvx2(float* s, int32_t len) {
  float max_score = -std::numeric_limits<float>::infinity();
  __m256 max_v = _mm256_set1_ps(max_score);
  int32_t i = 0;
  for (; i + 8 <= len; i += 8) max_v = _mm256_max_ps(max_v, _mm256_loadu_ps(s + i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, max_v);
  for (const float l : lanes) max_score = std::max(max_score, l);
  for (int32_t t = i; t < len; ++t) max_score = std::max(max_score, s[t]);
  const __m256 max_b = _mm256_set1_ps(max_score);
  __m256 sum_v = _mm256_setzero_ps();
  for (i = 0; i + 8 <= len; i += 8) {
    const __m256 e = avx2::Exp(_mm256_sub_ps(_mm256_loadu_ps(s + i), max_b));
    _mm256_storeu_ps(s + i, e);
    sum_v = _mm256_add_ps(sum_v, e);
  }
  float sum = avx2::Sum8(sum_v);
  for (int32_t t = i; t < len; ++t) sum += (s[t] = std::exp(s[t] - max_score));
  return sum;
}

}  // namespace pagoda::kernels::cpu::decode

#endif  // __x86_64__

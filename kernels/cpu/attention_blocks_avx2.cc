// The query blocks' AVX2 backend (attention_blocks.h), for CPUs without AVX-512: the AVX-512
// backend's plan on 8-lane vectors. A task takes up to 16 queries of one request and one KV
// head, with every query head of its group, and walks their keys once, 128 at a time: the
// chunk's K and V widened to f32 once for the group; per head, the scores of each key against
// the 16 queries as two 8-lane vectors (S^T, so the online softmax runs down the lanes; 4 keys x
// 2 vectors of sums per pass: 6 loads per 8 FMAs), then O += P V with 4 queries x 16 head dims
// of O in registers. 8-bit caches apply a key row's scale to its scores and a value row's scale
// to its weights, as the per-query path does.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/attention_blocks_internal.h"
#include "kernels/cpu/avx2_math.h"

namespace pagoda::kernels::cpu::blocks {
namespace {

constexpr int kLanes = 8;                      // f32 lanes of a vector
constexpr int kHalves = kQueryBlock / kLanes;  // vectors per score row: 2
constexpr int kScoreKeys = 4;                  // keys per step of the score pass
constexpr int kRowAlign = 8;                   // the chunk's rows: a multiple of this

// 64 bytes: a score row of the 16 queries.
struct alignas(64) Line {
  float f[kQueryBlock];
};
// 32 bytes: one vector.
struct alignas(32) Vec {
  float f[kLanes];
};

// One thread's scratch for the tasks of one call, for `group` query heads of `head_dim`: per
// query head g, Q^T (row x holds head dim x of the 16 queries), the running max and sum of each
// query lane and the output accumulator O [16 queries, head_dim]; per chunk, the scores, then P,
// of one head (row = key, lane = query), the chunk's K and V in f32 (shared by the group) and,
// for 8-bit caches, its key and value row scales.
class Scratch {
 public:
  Scratch(int group, int head_dim)
      : d_vectors_(head_dim / kLanes),
        q_(static_cast<size_t>(group) * head_dim),
        max_(group),
        sum_(group),
        scores_(kChunk),
        o_(static_cast<size_t>(group) * kQueryBlock * d_vectors_),
        k_(static_cast<size_t>(kChunk) * d_vectors_),
        v_(static_cast<size_t>(kChunk) * d_vectors_),
        k_scale_(kChunk),
        v_scale_(kChunk) {}

  int head_dim() const { return d_vectors_ * kLanes; }
  int d_vectors() const { return d_vectors_; }  // 8-float vectors in a head row
  float* q_rows(int g) { return q_[static_cast<size_t>(g) * head_dim()].f; }
  float* max(int g) { return max_[g].f; }
  float* sum(int g) { return sum_[g].f; }
  float* scores(int row) { return scores_[row].f; }
  float* o(int g) { return o_[static_cast<size_t>(g) * kQueryBlock * d_vectors_].f; }
  float* k_row(int row) { return k_[static_cast<size_t>(row) * d_vectors_].f; }
  float* v_row(int row) { return v_[static_cast<size_t>(row) * d_vectors_].f; }
  float* k_scale() { return k_scale_.data(); }
  float* v_scale() { return v_scale_.data(); }

 private:
  const int d_vectors_;
  std::vector<Line> q_, max_, sum_, scores_;
  std::vector<Vec> o_, k_, v_;
  std::vector<float> k_scale_, v_scale_;
};

// The lanes of `bits` (bit i: lane i is live) as an all-ones/all-zeros mask.
PAGODA_AVX2_TARGET inline __m256 MaskOf(uint32_t bits) {
  const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i set = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), lane);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane));
}

// Head `head`'s queries t0 .. t0 + m - 1, times the attention scale, transposed (zeros past m).
void PackQueryRows(const QueryIo& io, int64_t t0, int m, int head, int g, Scratch& s) {
  const int d = s.head_dim();
  float* qt = s.q_rows(g);
  for (int i = 0; i < kQueryBlock; ++i) {
    const float* q = i < m ? io.query + ((t0 + i) * io.num_heads + head) * d : nullptr;
    for (int x = 0; x < d; ++x) qt[x * kQueryBlock + i] = q != nullptr ? q[x] * io.scale : 0.0f;
  }
}

// The chunk's K and V rows in f32, as avx2::LoadScaled8 reads them, and for 8-bit caches the
// rows' scales. Rows outside the task's keys are zeros (their slots may hold anything, NaN
// included, and their blocks may be gone).
template <typename T>
PAGODA_AVX2_TARGET void WidenChunk(const KeyRange<T>& keys, int32_t c0, int rows, Scratch& s) {
  RowWalk<T> k_rows(*keys.cache, /*value=*/false, keys.table, keys.kv_head, c0);
  RowWalk<T> v_rows(*keys.cache, /*value=*/true, keys.table, keys.kv_head, c0);
  const int d = s.head_dim();
  for (int row = 0; row < rows; ++row, k_rows.Next(), v_rows.Next()) {
    // Locals, not s's members: the stores may alias those, which the compiler would reload.
    float* k_out = s.k_row(row);
    float* v_out = s.v_row(row);
    if (!keys.Live(c0 + row)) {
      std::fill(k_out, k_out + d, 0.0f);
      std::fill(v_out, v_out + d, 0.0f);
      if constexpr (kScaled<T>) s.k_scale()[row] = s.v_scale()[row] = 0.0f;
      continue;
    }
    const T* k = k_rows.row();
    const T* v = v_rows.row();
    for (int x = 0; x < d; x += kLanes) {
      _mm256_store_ps(k_out + x, avx2::LoadScaled8(k + x));
      _mm256_store_ps(v_out + x, avx2::LoadScaled8(v + x));
    }
    if constexpr (kScaled<T>) {  // KeyRange::Scale's factors
      s.k_scale()[row] = k_rows.scale() * avx512::LoadScale<T>();
      s.v_scale()[row] = v_rows.scale() * avx512::LoadScale<T>();
    }
  }
}

// Head g's score rows for the chunk, 4 keys at a time: row j = sum over dims x of k_j[x] times
// Q^T row x (two vectors), each Q^T row loaded once for the 4 keys. 8-bit caches: times the key
// row's scale. Groups of keys no query sees are skipped (Softmax zeroes their rows).
template <typename T>
PAGODA_AVX2_TARGET void Scores(const uint32_t* masks, int rows, int g, Scratch& s) {
  const int d = s.head_dim();
  const float* qt = s.q_rows(g);
  for (int row = 0; row < rows; row += kScoreKeys) {
    if ((masks[row] | masks[row + 1] | masks[row + 2] | masks[row + 3]) == 0) continue;
    const float* k = s.k_row(row);
    __m256 acc[kScoreKeys][kHalves];
    for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
    for (int x = 0; x < d; ++x) {
      const __m256 q0 = _mm256_load_ps(qt + x * kQueryBlock);
      const __m256 q1 = _mm256_load_ps(qt + x * kQueryBlock + kLanes);
      for (int j = 0; j < kScoreKeys; ++j) {
        const __m256 kx = _mm256_broadcast_ss(k + j * d + x);
        acc[j][0] = _mm256_fmadd_ps(kx, q0, acc[j][0]);
        acc[j][1] = _mm256_fmadd_ps(kx, q1, acc[j][1]);
      }
    }
    for (int j = 0; j < kScoreKeys; ++j) {
      const __m256 f = _mm256_set1_ps(kScaled<T> ? s.k_scale()[row + j] : 1.0f);
      for (int h = 0; h < kHalves; ++h) {
        _mm256_store_ps(s.scores(row + j) + kLanes * h,
                        kScaled<T> ? _mm256_mul_ps(acc[j][h], f) : acc[j][h]);
      }
    }
  }
}

// The online softmax of head g over the chunk's scores, in place, for the 8 query lanes of half
// h: raises each lane's running max, turns the scores into P = exp(score - max) (zero where
// masked), adds them to the running sum, and writes exp(old max - new max), the factor the sum
// (done here) and O (by the caller) take, to factor[8 h ..]. 8-bit caches: P's rows then take
// their value row's scale.
template <typename T>
PAGODA_AVX2_TARGET void SoftmaxHalf(const uint32_t* masks, int rows, int g, int h, Scratch& s,
                                    float* factor) {
  const int shift = kLanes * h;
  float* max_at = s.max(g) + shift;
  float* sum_at = s.sum(g) + shift;
  const __m256 old_max = _mm256_load_ps(max_at);
  __m256 max = old_max;
  for (int row = 0; row < rows; ++row) {
    const uint32_t bits = (masks[row] >> shift) & 0xFF;
    if (bits == 0) continue;
    max = _mm256_max_ps(max,
                        _mm256_blendv_ps(max, _mm256_load_ps(s.scores(row) + shift), MaskOf(bits)));
  }
  _mm256_store_ps(max_at, max);
  const __m256 alpha = avx2::Exp(_mm256_sub_ps(old_max, max));
  __m256 total = _mm256_setzero_ps();
  for (int row = 0; row < rows; ++row) {
    float* p = s.scores(row) + shift;
    const uint32_t bits = (masks[row] >> shift) & 0xFF;
    if (bits == 0) {  // skipped by Scores, or no lane of this half sees the key: weights zero
      _mm256_store_ps(p, _mm256_setzero_ps());
      continue;
    }
    const __m256 e = _mm256_and_ps(MaskOf(bits), avx2::Exp(_mm256_sub_ps(_mm256_load_ps(p), max)));
    total = _mm256_add_ps(total, e);
    _mm256_store_ps(p, kScaled<T> ? _mm256_mul_ps(e, _mm256_set1_ps(s.v_scale()[row])) : e);
  }
  _mm256_store_ps(sum_at, _mm256_fmadd_ps(_mm256_load_ps(sum_at), alpha, total));
  _mm256_store_ps(factor + shift, alpha);
}

// O rows i0 .. i0 + 3 of head g, head dims [8 c0, 8 (c0 + kVectors)): O * alpha + P V over the
// chunk's rows [first, last) (those one of the 4 queries sees: a run, with P zero in the lanes
// that do not see a row). The 4 x kVectors sums stay in registers: no branch in the loop, and at
// most 2 vectors (3 would take all 16 registers; the compiler spilled the sums on every row).
template <int kVectors>
PAGODA_AVX2_TARGET void AccumulateQuad(int first, int last, const float* factor, int i0, int c0,
                                       int g, Scratch& s) {
  const int d = s.head_dim();
  float* o = s.o(g) + i0 * d + kLanes * c0;
  __m256 acc[4][kVectors];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m256 f = _mm256_set1_ps(factor[i0 + i]);
#pragma GCC unroll 2
    for (int c = 0; c < kVectors; ++c) {
      acc[i][c] = _mm256_mul_ps(_mm256_load_ps(o + i * d + kLanes * c), f);
    }
  }
  for (int row = first; row < last; ++row) {
    const float* p = s.scores(row) + i0;
    const float* v = s.v_row(row) + kLanes * c0;
    __m256 vv[kVectors];
#pragma GCC unroll 2
    for (int c = 0; c < kVectors; ++c) vv[c] = _mm256_load_ps(v + kLanes * c);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m256 w = _mm256_broadcast_ss(p + i);
#pragma GCC unroll 2
      for (int c = 0; c < kVectors; ++c) acc[i][c] = _mm256_fmadd_ps(w, vv[c], acc[i][c]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 2
    for (int c = 0; c < kVectors; ++c) _mm256_store_ps(o + i * d + kLanes * c, acc[i][c]);
  }
}

void Accumulate(const uint32_t* masks, const float* factor, int m, int rows, int g, Scratch& s) {
  for (int i0 = 0; i0 < m; i0 += 4) {  // O has 16 rows: a quad past m is harmless
    int first = 0, last = rows;        // the run of rows the quad sees
    while (first < last && ((masks[first] >> i0) & 0xF) == 0) ++first;
    while (last > first && ((masks[last - 1] >> i0) & 0xF) == 0) --last;
    for (int c0 = 0; c0 < s.d_vectors(); c0 += 2) {
      if (c0 + 2 <= s.d_vectors()) {
        AccumulateQuad<2>(first, last, factor, i0, c0, g, s);
      } else {
        AccumulateQuad<1>(first, last, factor, i0, c0, g, s);
      }
    }
  }
}

// The outputs of head g's m queries: O / sum.
PAGODA_AVX2_TARGET void WriteOutputs(const QueryIo& io, int64_t t0, int m, int head, int g,
                                     Scratch& s) {
  const int d = s.head_dim();
  for (int i = 0; i < m; ++i) {
    const __m256 inv = _mm256_set1_ps(1.0f / s.sum(g)[i]);
    const float* o = s.o(g) + i * d;
    float* out = io.output + ((t0 + i) * io.num_heads + head) * d;
    for (int x = 0; x < d; x += kLanes) {
      _mm256_storeu_ps(out + x, _mm256_mul_ps(_mm256_load_ps(o + x), inv));
    }
  }
}

template <typename T>
PAGODA_AVX2_TARGET void AttendBlock(const PagedAttentionArgs<T>& a, const QueryBlock& b,
                                    Scratch& s) {
  const int group = a.num_heads / a.cache.num_kv_heads;
  const int32_t base = FirstPosition(a, b);
  const int64_t t0 = a.query_start[b.request] + b.first;
  const KeyRange<T> keys = KeysOf(a, b);
  const QueryIo io = IoOf(a);
  for (int g = 0; g < group; ++g) {
    PackQueryRows(io, t0, b.count, b.kv_head * group + g, g, s);
    std::fill(s.max(g), s.max(g) + kQueryBlock, kNoMax);
    std::fill(s.sum(g), s.sum(g) + kQueryBlock, 0.0f);
    std::fill(s.o(g), s.o(g) + kQueryBlock * s.head_dim(), 0.0f);
  }
  uint32_t masks[kChunk];
  alignas(32) float factor[kQueryBlock];
  for (int32_t c0 = keys.lo / kRowAlign * kRowAlign; c0 <= keys.hi; c0 += kChunk) {
    const int rows =
        std::min<int32_t>(kChunk, (keys.hi + 1 - c0 + kRowAlign - 1) / kRowAlign * kRowAlign);
    for (int row = 0; row < rows; ++row) masks[row] = LaneBits(a.window, base, b.count, c0 + row);
    WidenChunk(keys, c0, rows, s);
    for (int g = 0; g < group; ++g) {
      Scores<T>(masks, rows, g, s);
      for (int h = 0; h < kHalves; ++h) SoftmaxHalf<T>(masks, rows, g, h, s, factor);
      Accumulate(masks, factor, b.count, rows, g, s);
    }
  }
  for (int g = 0; g < group; ++g) WriteOutputs(io, t0, b.count, b.kv_head * group + g, g, s);
}

}  // namespace

template <typename T>
void AttendQueryBlocksAvx2(const PagedAttentionArgs<T>& a, const Plan& plan, int64_t begin,
                           int64_t end) {
  Scratch scratch(a.num_heads / a.cache.num_kv_heads, a.cache.head_dim);
  for (int64_t i = begin; i < end; ++i) AttendBlock(a, plan.blocks[i], scratch);
}

#define PAGODA_INSTANTIATE_AVX2_BLOCKS(T)                                                    \
  template void AttendQueryBlocksAvx2<T>(const PagedAttentionArgs<T>&, const Plan&, int64_t, \
                                         int64_t);
PAGODA_INSTANTIATE_AVX2_BLOCKS(Bf16)
PAGODA_INSTANTIATE_AVX2_BLOCKS(int8_t)
PAGODA_INSTANTIATE_AVX2_BLOCKS(Fp8E4M3)
PAGODA_INSTANTIATE_AVX2_BLOCKS(Fp8E5M2)
#undef PAGODA_INSTANTIATE_AVX2_BLOCKS

}  // namespace pagoda::kernels::cpu::blocks

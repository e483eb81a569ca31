#include "kernels/cpu/attention_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/attention_blocks_internal.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/matmul_amx.h"

namespace pagoda::kernels::cpu::blocks {
namespace {

using amx::kTile;   // 16: rows of a tile, lanes of a vector
using amx::kTileK;  // 32: bf16 values in a tile row

constexpr int kStep = kTileK;  // keys per AMX P V product: one row of a P tile

// One thread's scratch for the tasks of one call, for `group` query heads of `head_dim`.
// Per query head g: Q^T, the running max and sum of each query lane, and the output accumulator
// O [16 queries, head_dim]. Per chunk of keys: the scores, then P, of one head (row = key, lane =
// query), and for AVX-512 the chunk's K and V in f32, shared by the group (AMX reads V from
// PackedValues). For 8-bit caches (`scaled`), the chunk's key and value row scales and, on AMX,
// its K rows in bf16 (exact: 8-bit values have at most 7 significant bits).
class Scratch {
 public:
  Scratch(Backend backend, int group, int head_dim, bool scaled)
      : d_vectors_(head_dim / kTile),
        d_steps_(head_dim / kTileK),
        scores_(kChunk),
        o_(static_cast<size_t>(group) * kQueryBlock * d_vectors_),
        max_(group),
        sum_(group) {
    if (backend == Backend::kAmx) {
      q_.resize(static_cast<size_t>(group) * d_steps_ * 2 * kTile);
      p_.resize(kChunk / kStep * 2 * kTile);
      o_chunk_.resize(static_cast<size_t>(kQueryBlock) * d_vectors_);
      if (scaled) k16_.resize(static_cast<size_t>(kChunk) * d_steps_);
    } else {
      q_.resize(static_cast<size_t>(group) * head_dim);
      k_.resize(static_cast<size_t>(kChunk) * d_vectors_);
      v_.resize(static_cast<size_t>(kChunk) * d_vectors_);
    }
    if (scaled) {
      k_scale_.resize(kChunk / kTile);
      v_scale_.resize(kChunk / kTile);
    }
  }

  int head_dim() const { return d_vectors_ * kTile; }
  int d_vectors() const { return d_vectors_; }  // 16-float vectors in a head row
  int d_steps() const { return d_steps_; }      // 32-value tile rows in a head row (AMX)
  float* scores(int row) { return scores_[row].f; }
  float* o(int g) { return o_[static_cast<size_t>(g) * kQueryBlock * d_vectors_].f; }
  float* max(int g) { return max_[g].f; }
  float* sum(int g) { return sum_[g].f; }

  // AMX. Head g's Q^T for head dims [32 step, 32 step + 32), part 0 (hi) or 1 (lo).
  float* q_tile(int g, int step, int part) {
    return q_[((g * d_steps_ + step) * 2 + part) * kTile].f;
  }
  // P for keys [32 step, 32 step + 32) of the chunk, part 0 or 1: a left operand.
  float* p_tile(int step, int part) { return p_[(step * 2 + part) * kTile].f; }
  float* o_chunk() { return o_chunk_[0].f; }
  // The chunk's key `row` in bf16 (8-bit caches): a tile row per 32 head dims.
  Bf16* k16_row(int row) { return reinterpret_cast<Bf16*>(k16_[row * d_steps_].f); }

  // 8-bit caches. Per row of the chunk: what its key's scores and its value's weights take.
  float* k_scale() { return k_scale_[0].f; }
  float* v_scale() { return v_scale_[0].f; }

  // AVX-512. Head g's Q^T: row x holds head dim x of the 16 queries.
  float* q_rows(int g) { return q_[static_cast<size_t>(g) * head_dim()].f; }
  // The chunk's K and V rows, widened to f32.
  float* k_row(int row) { return k_[static_cast<size_t>(row) * d_vectors_].f; }
  float* v_row(int row) { return v_[static_cast<size_t>(row) * d_vectors_].f; }

 private:
  const int d_vectors_;
  const int d_steps_;
  std::vector<Line> scores_, o_, max_, sum_, q_, p_, v_, o_chunk_, k_, k16_, k_scale_, v_scale_;
};

// LaneBits as a 16-lane mask.
inline __mmask16 LaneMask(const common::AttentionWindow& w, int32_t base, int m, int32_t pos) {
  return static_cast<__mmask16>(LaneBits(w, base, m, pos));
}

// 8-bit caches: the chunk's row scales (zero outside the task's keys).
template <typename T>
void FillScales(const KeyRange<T>& keys, int32_t c0, int rows, Scratch& s) {
  for (int row = 0; row < rows; ++row) {
    const bool live = keys.Live(c0 + row);
    s.k_scale()[row] = live ? keys.Scale(c0 + row, /*value=*/false) : 0.0f;
    s.v_scale()[row] = live ? keys.Scale(c0 + row, /*value=*/true) : 0.0f;
  }
}

// Score (or P) row r *= factor[r]; rows masked out for every lane are left alone.
PAGODA_AVX512_TARGET void ScaleRows(const __mmask16* masks, const float* factor, int rows,
                                    Scratch& s) {
  for (int row = 0; row < rows; ++row) {
    if (masks[row] == 0) continue;
    _mm512_store_ps(s.scores(row),
                    _mm512_mul_ps(_mm512_load_ps(s.scores(row)), _mm512_set1_ps(factor[row])));
  }
}

// ---- The online softmax and the output, shared by the backends.

// The online softmax of head g over the chunk's scores, in place: raises the running max of each
// query lane, turns the scores into P = exp(score - max) (zero where masked), adds them to the
// running sum, and returns the factor exp(old max - new max) that the sum (done here) and the
// output accumulator (by the caller) take.
PAGODA_AVX512_TARGET __m512 Softmax(const __mmask16* masks, int rows, int g, Scratch& s) {
  const __m512 old_max = _mm512_load_ps(s.max(g));
  __m512 max = old_max;
  for (int row = 0; row < rows; ++row) {
    max = _mm512_mask_max_ps(max, masks[row], max, _mm512_load_ps(s.scores(row)));
  }
  _mm512_store_ps(s.max(g), max);
  const __m512 alpha = avx512::Exp(_mm512_sub_ps(old_max, max));
  __m512 total = _mm512_setzero_ps();
  for (int row = 0; row < rows; ++row) {
    const __mmask16 m = masks[row];
    const __m512 e = _mm512_maskz_mov_ps(
        m, avx512::Exp(_mm512_maskz_sub_ps(m, _mm512_load_ps(s.scores(row)), max)));
    _mm512_store_ps(s.scores(row), e);
    total = _mm512_add_ps(total, e);
  }
  _mm512_store_ps(s.sum(g), _mm512_fmadd_ps(_mm512_load_ps(s.sum(g)), alpha, total));
  return alpha;
}

// The outputs of head g's m queries: O / sum.
PAGODA_AVX512_TARGET void WriteOutputs(const QueryIo& io, int64_t t0, int m, int head, int g,
                                       Scratch& s) {
  const int d = s.head_dim();
  alignas(64) float sum[kTile];
  _mm512_store_ps(sum, _mm512_load_ps(s.sum(g)));
  for (int i = 0; i < m; ++i) {
    const __m512 inv = _mm512_set1_ps(1.0f / sum[i]);
    const float* o = s.o(g) + i * d;
    float* out = io.output + ((t0 + i) * io.num_heads + head) * d;
    for (int x = 0; x < d; x += kTile) {
      _mm512_storeu_ps(out + x, _mm512_mul_ps(_mm512_load_ps(o + x), inv));
    }
  }
}

// ---- AVX-512 in f32.

// Head `head`'s queries t0 .. t0 + m - 1, times the attention scale, transposed: row x holds
// head dim x of the 16 queries (zeros past m).
PAGODA_AVX512_TARGET void PackQueryRows(const QueryIo& io, int64_t t0, int m, int head, int g,
                                        Scratch& s) {
  const int d = s.head_dim();
  const __m512 scale = _mm512_set1_ps(io.scale);
  for (int c = 0; c < s.d_vectors(); ++c) {
    __m512 rows[kTile];  // row i: query i's dims 16 c .. 16 c + 15
    for (int i = 0; i < kTile; ++i) {
      rows[i] = i < m
                    ? _mm512_mul_ps(
                          _mm512_loadu_ps(io.query + ((t0 + i) * io.num_heads + head) * d + 16 * c),
                          scale)
                    : _mm512_setzero_ps();
    }
    avx512::Transpose16x16(rows);
    for (int x = 0; x < kTile; ++x) _mm512_store_ps(s.q_rows(g) + (16 * c + x) * kTile, rows[x]);
  }
}

// The chunk's K and V rows in f32 (8-bit rows as LoadScaled16 reads them, their scales applied
// to the scores and the weights), for the group: a 128-row working tile, not a copy of the
// context. Rows outside the task's keys are zeros (their slots may hold anything, NaN
// included, and their blocks may be gone).
template <typename T>
PAGODA_AVX512_TARGET void WidenChunk(const KeyRange<T>& keys, int32_t c0, int rows, Scratch& s) {
  for (int row = 0; row < rows; ++row) {
    const bool live = keys.Live(c0 + row);
    const T* k = live ? keys.Key(c0 + row) : nullptr;
    const T* v = live ? keys.Value(c0 + row) : nullptr;
    for (int c = 0; c < s.d_vectors(); ++c) {
      _mm512_store_ps(s.k_row(row) + 16 * c,
                      live ? avx512::LoadScaled16(k + 16 * c) : _mm512_setzero_ps());
      _mm512_store_ps(s.v_row(row) + 16 * c,
                      live ? avx512::LoadScaled16(v + 16 * c) : _mm512_setzero_ps());
    }
  }
}

// Head g's score rows for the chunk, 8 keys at a time: row j = sum over dims x of k_j[x] times
// Q^T row x (16 lanes), each Q^T row loaded once for the 8 keys.
PAGODA_AVX512_TARGET void VectorScores(const __mmask16* masks, int rows, int g, Scratch& s) {
  constexpr int kKeys = 8;
  const int d = s.head_dim();
  const float* qt = s.q_rows(g);
  for (int row = 0; row < rows; row += kKeys) {
    __mmask16 any = 0;
    for (int j = 0; j < kKeys; ++j) any |= masks[row + j];
    if (any == 0) continue;  // masked out: never read
    __m512 acc[kKeys];
    for (int j = 0; j < kKeys; ++j) acc[j] = _mm512_setzero_ps();
    for (int x = 0; x < d; ++x) {
      const __m512 q = _mm512_load_ps(qt + x * kTile);
      for (int j = 0; j < kKeys; ++j) {
        acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(s.k_row(row + j)[x]), q, acc[j]);
      }
    }
    for (int j = 0; j < kKeys; ++j) _mm512_store_ps(s.scores(row + j), acc[j]);
  }
}

// O rows i0 .. i0 + 3 of head g, head dims [16 c0, 16 (c0 + kVectors)): O * alpha + P V over the
// chunk, the 4 x kVectors sums in registers.
template <int kVectors>
PAGODA_AVX512_TARGET void AccumulateQuad(const __mmask16* masks, const float* factor, int rows,
                                         int i0, int c0, int g, Scratch& s) {
  const int d = s.head_dim();
  float* o = s.o(g) + i0 * d + 16 * c0;
  __m512 acc[4][kVectors];
  for (int i = 0; i < 4; ++i) {
    const __m512 f = _mm512_set1_ps(factor[i0 + i]);
    for (int c = 0; c < kVectors; ++c) {
      acc[i][c] = _mm512_mul_ps(_mm512_load_ps(o + i * d + 16 * c), f);
    }
  }
  for (int row = 0; row < rows; ++row) {
    if (((masks[row] >> i0) & 0xF) == 0) continue;  // none of the 4 queries sees this key
    const float* p = s.scores(row) + i0;
    __m512 v[kVectors];
    for (int c = 0; c < kVectors; ++c) v[c] = _mm512_load_ps(s.v_row(row) + 16 * (c0 + c));
    for (int i = 0; i < 4; ++i) {
      const __m512 w = _mm512_set1_ps(p[i]);
      for (int c = 0; c < kVectors; ++c) acc[i][c] = _mm512_fmadd_ps(w, v[c], acc[i][c]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    for (int c = 0; c < kVectors; ++c) _mm512_store_ps(o + i * d + 16 * c, acc[i][c]);
  }
}

PAGODA_AVX512_TARGET void VectorAccumulate(const __mmask16* masks, __m512 alpha, int m, int rows,
                                           int g, Scratch& s) {
  alignas(64) float factor[kTile];
  _mm512_store_ps(factor, alpha);
  for (int i0 = 0; i0 < m; i0 += 4) {  // O has 16 rows: a quad past m is harmless
    for (int c0 = 0; c0 < s.d_vectors(); c0 += 4) {
      switch (std::min(4, s.d_vectors() - c0)) {
        case 4:
          AccumulateQuad<4>(masks, factor, rows, i0, c0, g, s);
          break;
        case 3:
          AccumulateQuad<3>(masks, factor, rows, i0, c0, g, s);
          break;
        case 2:
          AccumulateQuad<2>(masks, factor, rows, i0, c0, g, s);
          break;
        default:
          AccumulateQuad<1>(masks, factor, rows, i0, c0, g, s);
          break;
      }
    }
  }
}

// ---- AMX tiles.

// 16 values of a row as bf16: 8-bit ones as LoadScaled16 reads them, exactly (at most 7
// significant bits, exponents in range).
template <typename T>
PAGODA_AMX_TARGET inline __m256i Bf16x16(const T* p) {
  if constexpr (kScaled<T>) {
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(avx512::LoadScaled16(p)));
  } else {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
}

// 8-bit caches: the chunk's K rows in bf16 into the scratch, as the score tiles read them.
template <typename T>
PAGODA_AMX_TARGET void WidenKeyTiles(const KeyRange<T>& keys, int32_t c0, int rows, Scratch& s) {
  for (int row = 0; row < rows; ++row) {
    const bool live = keys.Live(c0 + row);
    const T* k = live ? keys.Key(c0 + row) : nullptr;
    auto* out = reinterpret_cast<__m256i*>(s.k16_row(row));
    for (int c = 0; c < s.d_vectors(); ++c) {
      _mm256_store_si256(out + c, live ? Bf16x16(k + 16 * c) : _mm256_setzero_si256());
    }
  }
}

// The pairs (e[j], o[j]) as 32-bit lanes of two bf16 parts: `hi` holds e and o truncated to
// bf16 (e in the low half, as a tile's pair order wants), `lo` what truncation left of them,
// truncated too. hi + lo is within 2^-15 of each value.
PAGODA_AMX_TARGET inline void SplitPairs(__m512 e, __m512 o, __m512* hi, __m512* lo) {
  const __m512i top = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m512i e_hi = _mm512_and_si512(_mm512_castps_si512(e), top);
  const __m512i o_hi = _mm512_and_si512(_mm512_castps_si512(o), top);
  const __m512i e_lo = _mm512_castps_si512(_mm512_sub_ps(e, _mm512_castsi512_ps(e_hi)));
  const __m512i o_lo = _mm512_castps_si512(_mm512_sub_ps(o, _mm512_castsi512_ps(o_hi)));
  *hi = _mm512_castsi512_ps(_mm512_or_si512(_mm512_srli_epi32(e_hi, 16), o_hi));
  *lo = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_srli_epi32(e_lo, 16), _mm512_and_si512(o_lo, top)));
}

// Head `head`'s queries t0 .. t0 + m - 1, times the attention scale, as Q^T tiles: for head dims
// [32 s, 32 s + 32), row r holds, for each query i, the pair (q_i[32 s + 2r], q_i[32 s + 2r + 1]).
PAGODA_AMX_TARGET void PackQueryTiles(const QueryIo& io, int64_t t0, int m, int head, int g,
                                      Scratch& s) {
  const int d = s.head_dim();
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 scale = _mm512_set1_ps(io.scale);
  for (int step = 0; step < s.d_steps(); ++step) {
    __m512 hi[kTile], lo[kTile];  // lane r of row i: query i's pair r
    for (int i = 0; i < kTile; ++i) {
      hi[i] = lo[i] = _mm512_setzero_ps();
      if (i >= m) continue;
      const float* q = io.query + ((t0 + i) * io.num_heads + head) * d + step * kTileK;
      const __m512 x0 = _mm512_mul_ps(_mm512_loadu_ps(q), scale);
      const __m512 x1 = _mm512_mul_ps(_mm512_loadu_ps(q + 16), scale);
      SplitPairs(_mm512_permutex2var_ps(x0, even, x1), _mm512_permutex2var_ps(x0, odd, x1), &hi[i],
                 &lo[i]);
    }
    avx512::Transpose16x16(hi);
    avx512::Transpose16x16(lo);
    for (int r = 0; r < kTile; ++r) {
      _mm512_store_ps(s.q_tile(g, step, 0) + r * kTile, hi[r]);
      _mm512_store_ps(s.q_tile(g, step, 1) + r * kTile, lo[r]);
    }
  }
}

// Scores of head g for the 16-key tile(s) at k0 (and k1): S^T = K Q^T, the K rows read in place
// (`stride` bytes apart), row k of the stored tile = key k against the 16 queries.
template <int kTiles>
PAGODA_AMX_TARGET void ScoreTiles(const Bf16* k0, const Bf16* k1, long stride, int g, Scratch& s,
                                  float* out0, float* out1) {
  _tile_zero(0);
  if constexpr (kTiles == 2) _tile_zero(1);
  for (int step = 0; step < s.d_steps(); ++step) {
    _tile_loadd(6, s.q_tile(g, step, 0), 64);
    _tile_loadd(7, s.q_tile(g, step, 1), 64);
    _tile_loadd(4, k0 + step * kTileK, stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(0, 4, 7);
    if constexpr (kTiles == 2) {
      _tile_loadd(5, k1 + step * kTileK, stride);
      _tile_dpbf16ps(1, 5, 6);
      _tile_dpbf16ps(1, 5, 7);
    }
  }
  _tile_stored(0, out0, 64);
  if constexpr (kTiles == 2) _tile_stored(1, out1, 64);
}

// Head g's scores for the chunk's keys c0 .. c0 + rows - 1 (tiles with no live key are skipped:
// their blocks may be gone; their rows are masked out). bf16 K rows are read in place, 8-bit
// ones from WidenKeyTiles' copy.
template <typename T>
PAGODA_AMX_TARGET void TileScores(const KeyRange<T>& keys, int32_t c0, int rows, int g,
                                  Scratch& s) {
  const long stride = keys.cache->head_dim * static_cast<long>(sizeof(Bf16));
  const auto key = [&](int32_t pos) -> const Bf16* {
    if constexpr (kScaled<T>) {
      return s.k16_row(pos - c0);
    } else {
      return keys.Key(pos);
    }
  };
  for (int t = 0; t < rows / kTile;) {
    const int32_t pos = c0 + t * kTile;
    if (!keys.TileLive(pos, kTile)) {
      ++t;
      continue;
    }
    if (t + 1 < rows / kTile && keys.TileLive(pos + kTile, kTile)) {
      ScoreTiles<2>(key(pos), key(pos + kTile), stride, g, s, s.scores(t * kTile),
                    s.scores((t + 1) * kTile));
      t += 2;
    } else {
      ScoreTiles<1>(key(pos), nullptr, stride, g, s, s.scores(t * kTile), nullptr);
      ++t;
    }
  }
}

// Keys c0 .. c0 + rows - 1's V as right-operand tiles into `out` (PackedValues::Tiles' layout):
// row r of tile (step, t) holds, for head dims 16 t .. 16 t + 15, the pairs of keys
// c0 + 32 step + 2r and + 1. Keys outside `keys` are zeros (P is zero there too, but their slots
// may hold anything, NaN included, and their blocks may be gone). 8-bit values become bf16
// exactly, their scales applied to the weights.
template <typename T>
PAGODA_AMX_TARGET void PackValueTiles(const KeyRange<T>& keys, int32_t c0, int rows, float* out) {
  const int d_vectors = keys.cache->head_dim / kTile;
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  for (int step = 0; step < rows / kStep; ++step) {
    for (int r = 0; r < kTile; ++r) {
      const int32_t p0 = c0 + step * kStep + 2 * r;
      const T* v0 = keys.Live(p0) ? keys.Value(p0) : nullptr;
      const T* v1 = keys.Live(p0 + 1) ? keys.Value(p0 + 1) : nullptr;
      for (int t = 0; t < d_vectors; ++t) {
        const __m256i x0 = v0 != nullptr ? Bf16x16(v0 + t * kTile) : _mm256_setzero_si256();
        const __m256i x1 = v1 != nullptr ? Bf16x16(v1 + t * kTile) : _mm256_setzero_si256();
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
        _mm512_store_si512(out + ((step * d_vectors + t) * kTile + r) * kTile,
                           _mm512_permutexvar_epi16(interleave, both));
      }
    }
  }
}

// P (the chunk's score rows after the softmax) as left-operand tiles in two parts: row i of
// tile (step, part) holds query i's weights of keys 32 step .. + 31, in key order.
PAGODA_AMX_TARGET void PackProbabilityTiles(int rows, Scratch& s) {
  for (int step = 0; step < rows / kStep; ++step) {
    __m512 hi[kTile], lo[kTile];  // lane i of row j: query i's weights of keys 2j and 2j + 1
    for (int j = 0; j < kTile; ++j) {
      const int row = step * kStep + 2 * j;
      SplitPairs(_mm512_load_ps(s.scores(row)), _mm512_load_ps(s.scores(row + 1)), &hi[j], &lo[j]);
    }
    avx512::Transpose16x16(hi);
    avx512::Transpose16x16(lo);
    for (int i = 0; i < kTile; ++i) {
      _mm512_store_ps(s.p_tile(step, 0) + i * kTile, hi[i]);
      _mm512_store_ps(s.p_tile(step, 1) + i * kTile, lo[i]);
    }
  }
}

// O's increment P V for head dims [16 t0, 16 (t0 + kTiles)), into o_chunk [16, head_dim].
template <int kTiles>  // 2 or 4 output tiles
PAGODA_AMX_TARGET void ValueTiles(int steps, int t0, const float* v, Scratch& s) {
  const auto v_tile = [&](int step, int t) {
    return v + (static_cast<int64_t>(step) * s.d_vectors() + t) * kTile * kTile;
  };
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (kTiles == 4) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int step = 0; step < steps; ++step) {
    _tile_loadd(4, s.p_tile(step, 0), 64);
    _tile_loadd(5, s.p_tile(step, 1), 64);
    _tile_loadd(6, v_tile(step, t0), 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(0, 5, 6);
    _tile_loadd(7, v_tile(step, t0 + 1), 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(1, 5, 7);
    if constexpr (kTiles == 4) {
      _tile_loadd(6, v_tile(step, t0 + 2), 64);
      _tile_dpbf16ps(2, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      _tile_loadd(7, v_tile(step, t0 + 3), 64);
      _tile_dpbf16ps(3, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  const long stride = s.head_dim() * static_cast<long>(sizeof(float));
  float* out = s.o_chunk() + t0 * kTile;
  _tile_stored(0, out, stride);
  _tile_stored(1, out + kTile, stride);
  if constexpr (kTiles == 4) {
    _tile_stored(2, out + 2 * kTile, stride);
    _tile_stored(3, out + 3 * kTile, stride);
  }
}

// O = O * alpha + P V for the m live query rows of head g, P V on the tiles.
PAGODA_AMX_TARGET void TileAccumulate(__m512 alpha, int m, int rows, const float* v, int g,
                                      Scratch& s) {
  PackProbabilityTiles(rows, s);
  int t = 0;
  for (; t + 4 <= s.d_vectors(); t += 4) ValueTiles<4>(rows / kStep, t, v, s);
  if (t < s.d_vectors()) ValueTiles<2>(rows / kStep, t, v, s);  // head dims: multiples of 32
  alignas(64) float factor[kTile];
  _mm512_store_ps(factor, alpha);
  const int d = s.head_dim();
  for (int i = 0; i < m; ++i) {
    const __m512 f = _mm512_set1_ps(factor[i]);
    float* o = s.o(g) + i * d;
    const float* inc = s.o_chunk() + i * d;
    for (int x = 0; x < d; x += kTile) {
      _mm512_store_ps(o + x, _mm512_fmadd_ps(_mm512_load_ps(o + x), f, _mm512_load_ps(inc + x)));
    }
  }
}

PAGODA_AMX_TARGET void StartTiles() { amx::ConfigureTiles(); }
PAGODA_AMX_TARGET void EndTiles() { _tile_release(); }

// ---- The task.

template <typename T>
PAGODA_AVX512_TARGET void AttendBlock(const PagedAttentionArgs<T>& a, const QueryBlock& b,
                                      Backend backend, const PackedValues& values, Scratch& s) {
  const PagedKvCacheView<T>& c = a.cache;
  const int group = a.num_heads / c.num_kv_heads;
  const int32_t base = FirstPosition(a, b);
  const int64_t t0 = a.query_start[b.request] + b.first;
  const KeyRange<T> keys = KeysOf(a, b);
  const QueryIo io = IoOf(a);
  const bool tiles = backend == Backend::kAmx;
  for (int g = 0; g < group; ++g) {
    const int head = b.kv_head * group + g;
    tiles ? PackQueryTiles(io, t0, b.count, head, g, s)
          : PackQueryRows(io, t0, b.count, head, g, s);
    _mm512_store_ps(s.max(g), _mm512_set1_ps(kNoMax));
    _mm512_store_ps(s.sum(g), _mm512_setzero_ps());
    std::fill(s.o(g), s.o(g) + kQueryBlock * s.head_dim(), 0.0f);
  }
  __mmask16 masks[kChunk];
  for (int32_t c0 = keys.lo / kStep * kStep; c0 <= keys.hi; c0 += kChunk) {
    const int rows = std::min<int32_t>(kChunk, (keys.hi + 1 - c0 + kStep - 1) / kStep * kStep);
    for (int row = 0; row < rows; ++row) masks[row] = LaneMask(a.window, base, b.count, c0 + row);
    if constexpr (kScaled<T>) {
      FillScales(keys, c0, rows, s);
      if (tiles) WidenKeyTiles(keys, c0, rows, s);
    }
    if (!tiles) WidenChunk(keys, c0, rows, s);
    const float* v = tiles ? values.Tiles(b.request, b.kv_head, c0) : nullptr;
    for (int g = 0; g < group; ++g) {
      tiles ? TileScores(keys, c0, rows, g, s) : VectorScores(masks, rows, g, s);
      if constexpr (kScaled<T>) ScaleRows(masks, s.k_scale(), rows, s);
      const __m512 alpha = Softmax(masks, rows, g, s);
      if constexpr (kScaled<T>) ScaleRows(masks, s.v_scale(), rows, s);
      tiles ? TileAccumulate(alpha, b.count, rows, v, g, s)
            : VectorAccumulate(masks, alpha, b.count, rows, g, s);
    }
  }
  for (int g = 0; g < group; ++g) WriteOutputs(io, t0, b.count, b.kv_head * group + g, g, s);
}

}  // namespace

template <typename T>
Backend BackendFor(const PagedAttentionArgs<T>& a) {
  const int d = a.cache.head_dim;
  if (!a.allow_query_blocks || a.window.sink_tokens != 0 || d <= 0 || d > kMaxHeadDim) {
    return Backend::kNone;
  }
  if constexpr (!std::is_same_v<T, float>) {
    if (a.allow_avx512 && a.allow_amx && amx::Available() && d % kTileK == 0 &&
        a.cache.block_size % kTile == 0) {
      return Backend::kAmx;
    }
    if (a.allow_avx512 && avx512::Supported() && d % kTile == 0) return Backend::kAvx512;
    if (avx2::Supported() && d % 8 == 0) return Backend::kAvx2;
  }
  return Backend::kNone;
}

int32_t MinQueries(Backend backend) {
  switch (backend) {
    case Backend::kAmx:
      return 4;
    case Backend::kAvx512:
      return kQueryBlock;
    case Backend::kAvx2:  // BM_PagedAttentionChunk: 1.3x the per-query path at 4, 0.68x at 2
      return 4;
    default:
      return std::numeric_limits<int32_t>::max();
  }
}

template <typename T>
PackedValues PackedValues::Build(const PagedAttentionArgs<T>& a,
                                 absl::Span<const QueryBlock> blocks, Backend backend,
                                 ThreadPool& pool) {
  PackedValues p;
  if (backend != Backend::kAmx || blocks.empty()) return p;
  const PagedKvCacheView<T>& c = a.cache;
  const int64_t num_requests = static_cast<int64_t>(a.context_lens.size());
  p.d_vectors_ = c.head_dim / kTile;
  p.num_kv_heads_ = c.num_kv_heads;
  p.offset_.assign(static_cast<size_t>(num_requests * c.num_kv_heads), -1);
  p.first_key_.assign(static_cast<size_t>(num_requests), 0);
  std::vector<KeyRange<T>> ranges;  // one per (request, KV head) packed
  struct Task {
    int32_t request;
    int32_t range;  // index in `ranges`
    int32_t key;    // the first of up to kChunk keys
  };
  std::vector<Task> tasks;
  int64_t rows = 0;
  for (const QueryBlock& b : blocks) {
    const int64_t at = static_cast<int64_t>(b.request) * c.num_kv_heads + b.kv_head;
    if (p.offset_[at] >= 0) continue;
    const int32_t context = a.context_lens[b.request];
    const int32_t lo = a.window.WindowStart(FirstPosition(a, b) - b.first);
    const int32_t first = lo / kStep * kStep;
    p.first_key_[b.request] = first;
    p.offset_[at] = rows;
    rows += static_cast<int64_t>((context - first + kStep - 1) / kStep) * p.d_vectors_ * kTile;
    for (int32_t key = first; key < context; key += kChunk) {
      tasks.push_back({b.request, static_cast<int32_t>(ranges.size()), key});
    }
    ranges.push_back({&c, a.block_tables.data() + b.request * a.max_blocks_per_request, b.kv_head,
                      lo, context - 1});
  }
  p.rows_.resize(static_cast<size_t>(rows));
  pool.ParallelFor(static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const KeyRange<T>& keys = ranges[tasks[i].range];
      const int32_t key = tasks[i].key;
      const int num = std::min<int32_t>(kChunk, (keys.hi + 1 - key + kStep - 1) / kStep * kStep);
      PackValueTiles(keys, key, num, p.rows_[p.Row(tasks[i].request, keys.kv_head, key)].f);
    }
  });
  return p;
}

int64_t PackedValues::Row(int32_t request, int32_t kv_head, int32_t key) const {
  const int64_t offset = offset_[static_cast<size_t>(request) * num_kv_heads_ + kv_head];
  const int32_t from = key - first_key_[request];
  PAGODA_CHECK(offset >= 0 && from >= 0 && from % kStep == 0);
  return offset + static_cast<int64_t>(from / kStep) * d_vectors_ * kTile;
}

const float* PackedValues::Tiles(int32_t request, int32_t kv_head, int32_t key) const {
  return rows_[Row(request, kv_head, key)].f;
}

template <typename T>
Plan MakePlan(const PagedAttentionArgs<T>& a, ThreadPool& pool) {
  Plan plan{.backend = BackendFor(a)};
  if (plan.backend == Backend::kNone) return plan;
  for (int64_t r = 0; r + 1 < static_cast<int64_t>(a.query_start.size()); ++r) {
    const int32_t n = a.query_start[r + 1] - a.query_start[r];
    if (!plan.Takes(n)) continue;
    for (int32_t first = 0; first < n; first += kQueryBlock) {
      for (int32_t h = 0; h < a.cache.num_kv_heads; ++h) {
        plan.blocks.push_back({.request = static_cast<int32_t>(r),
                               .first = first,
                               .count = std::min(kQueryBlock, n - first),
                               .kv_head = h});
      }
    }
  }
  // Keys walked: from the first query's window start to the last query's position.
  const auto keys = [&](const QueryBlock& b) {
    const int32_t base = FirstPosition(a, b);
    return base + b.count - a.window.WindowStart(base);
  };
  std::stable_sort(plan.blocks.begin(), plan.blocks.end(),
                   [&](const QueryBlock& x, const QueryBlock& y) { return keys(x) > keys(y); });
  plan.values = PackedValues::Build(a, plan.blocks, plan.backend, pool);
  return plan;
}

template <typename T>
void AttendQueryBlocks(const PagedAttentionArgs<T>& a, const Plan& plan, int64_t begin,
                       int64_t end) {
  PAGODA_CHECK(plan.backend != Backend::kNone && begin >= 0 &&
               end <= static_cast<int64_t>(plan.blocks.size()));
  if (begin >= end) return;
  if (plan.backend == Backend::kAvx2) return AttendQueryBlocksAvx2(a, plan, begin, end);
  const bool tiles = plan.backend == Backend::kAmx;
  if (tiles) StartTiles();
  Scratch scratch(plan.backend, a.num_heads / a.cache.num_kv_heads, a.cache.head_dim, kScaled<T>);
  for (int64_t i = begin; i < end; ++i) {
    AttendBlock(a, plan.blocks[i], plan.backend, plan.values, scratch);
  }
  if (tiles) EndTiles();
}

template Backend BackendFor<float>(const PagedAttentionArgs<float>&);
template Backend BackendFor<Bf16>(const PagedAttentionArgs<Bf16>&);
template Backend BackendFor<int8_t>(const PagedAttentionArgs<int8_t>&);
template Backend BackendFor<Fp8E4M3>(const PagedAttentionArgs<Fp8E4M3>&);
template Backend BackendFor<Fp8E5M2>(const PagedAttentionArgs<Fp8E5M2>&);

#define PAGODA_INSTANTIATE_BLOCKS(T)                                                     \
  template PackedValues PackedValues::Build<T>(                                          \
      const PagedAttentionArgs<T>&, absl::Span<const QueryBlock>, Backend, ThreadPool&); \
  template Plan MakePlan<T>(const PagedAttentionArgs<T>&, ThreadPool&);                  \
  template void AttendQueryBlocks<T>(const PagedAttentionArgs<T>&, const Plan&, int64_t, int64_t);
PAGODA_INSTANTIATE_BLOCKS(Bf16)
PAGODA_INSTANTIATE_BLOCKS(int8_t)
PAGODA_INSTANTIATE_BLOCKS(Fp8E4M3)
PAGODA_INSTANTIATE_BLOCKS(Fp8E5M2)
#undef PAGODA_INSTANTIATE_BLOCKS

}  // namespace pagoda::kernels::cpu::blocks

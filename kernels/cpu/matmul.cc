#include "kernels/cpu/matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul_amx.h"
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/thread_scratch.h"

namespace pagoda::kernels::cpu {
namespace {

// WeightLayout::kTiles is the AMX tiles' right operand: their shape.
constexpr int64_t kTileRows = amx::kTile;     // rows of a tile, columns of y per block
constexpr int64_t kTileValues = amx::kTileK;  // bf16 values of a tile row
constexpr int64_t kTileSize = kTileRows * kTileValues;

// Where element (row, col) of a kTiles matrix lies: its 16-row block's tile of the 32 columns
// holding col, in which row p has the 16 rows' pairs (2p, 2p + 1) of those columns.
inline int64_t TiledOffset(int64_t k, int64_t row, int64_t col) {
  return ((row / kTileRows) * (k / kTileValues) + col / kTileValues) * kTileSize +
         (col % kTileValues) / 2 * kTileValues + (row % kTileRows) * 2 + col % 2;
}

float WeightAt(const MatMulArgs& a, int64_t row, int64_t col) {
  if (a.w_type == WeightType::kF32) return static_cast<const float*>(a.w)[row * a.k + col];
  const int64_t offset =
      a.w_layout == WeightLayout::kTiles ? TiledOffset(a.k, row, col) : row * a.k + col;
  return Bf16ToFloat(static_cast<const uint16_t*>(a.w)[offset]);
}

void ReferenceRows(const MatMulArgs& a, int64_t n_begin, int64_t n_end) {
  for (int64_t j = n_begin; j < n_end; ++j) {
    for (int64_t i = 0; i < a.m; ++i) {
      float acc = 0.0f;
      for (int64_t c = 0; c < a.k; ++c) acc += a.x[i * a.k + c] * WeightAt(a, j, c);
      a.StoreSum(i, j, acc);
    }
  }
}

// Output columns are produced kColumnBlock at a time into a small buffer, then stored row by
// row. Storing y column by column would write m cache lines n * 4 bytes apart, which map to
// one L1 set when n is a multiple of 1024 and thrash it.
constexpr int kColumnBlock = 16;
constexpr int kMaxTileRows = 16;  // rows per column-block pass (two 8-row tiles)
constexpr int64_t kPrefetchRows = 4;

// Calls tile(j, i0, rows, dst) for every output column j of [n_begin, n_end) and every group
// of up to kMaxTileRows rows starting at i0; tile writes row r's value to dst[r * kColumnBlock].
// With a `pair_tile`, columns go two at a time through it (it writes dst[...] and dst[... + 1]).
struct NoPairTile {
  void operator()(int64_t, int64_t, int, float*) const {}
};

template <typename Tile, typename PairTile = NoPairTile>
inline void ForEachColumnBlock(const MatMulArgs& a, int64_t n_begin, int64_t n_end,
                               const Tile& tile, const PairTile& pair_tile = PairTile()) {
  constexpr bool kPairs = !std::is_same_v<PairTile, NoPairTile>;
  float out[kMaxTileRows * kColumnBlock];
  for (int64_t j0 = n_begin; j0 < n_end; j0 += kColumnBlock) {
    const int64_t columns = std::min<int64_t>(kColumnBlock, n_end - j0);
    for (int64_t i0 = 0; i0 < a.m; i0 += kMaxTileRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kMaxTileRows, a.m - i0));
      int64_t c = 0;
      if constexpr (kPairs) {
        for (; c + 2 <= columns; c += 2) pair_tile(j0 + c, i0, rows, out + c);
      }
      for (; c < columns; ++c) tile(j0 + c, i0, rows, out + c);
      for (int r = 0; r < rows; ++r) {
        for (int64_t col = 0; col < columns; ++col) {
          a.StoreSum(i0 + r, j0 + col, out[r * kColumnBlock + col]);
        }
      }
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline __m512 Load16(const MatMulArgs& a,
                                                                              int64_t row,
                                                                              int64_t col) {
  if (a.w_type == WeightType::kF32) {
    return _mm512_loadu_ps(static_cast<const float*>(a.w) + row * a.k + col);
  }
  const __m256i h = _mm256_loadu_si256(
      reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(a.w) + row * a.k + col));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// One weight row against M rows of x, M known at compile time so the accumulators live in
// registers; two accumulators per row break the FMA latency chain.
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline void Avx512Tile(const MatMulArgs& a,
                                                                                int64_t j,
                                                                                int64_t i0,
                                                                                float* dst) {
  const int64_t k32 = a.k / 32 * 32;
  __m512 acc0[M], acc1[M];
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  // As in the bf16 tiles: fetch a row a few ahead, one cache line per 32 bf16 or 16 floats.
  const int64_t element_bytes = a.w_type == WeightType::kF32 ? 4 : 2;
  const char* ahead =
      static_cast<const char*>(a.w) + std::min(j + kPrefetchRows, a.n - 1) * a.k * element_bytes;
  for (int64_t c = 0; c < k32; c += 32) {
    _mm_prefetch(ahead + c * element_bytes, _MM_HINT_T0);
    if (element_bytes == 4) _mm_prefetch(ahead + c * element_bytes + 64, _MM_HINT_T0);
    const __m512 w0 = Load16(a, j, c);
    const __m512 w1 = Load16(a, j, c + 16);
#pragma GCC unroll 8
    for (int r = 0; r < M; ++r) {
      const float* x = a.x + (i0 + r) * a.k + c;
      acc0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x), w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16), w1, acc1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r) {
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
    for (int64_t c = k32; c < a.k; ++c) sum += a.x[(i0 + r) * a.k + c] * WeightAt(a, j, c);
    dst[r * kColumnBlock] = sum;
  }
}

// f32 FMA over 16 lanes; bf16 weights are widened exactly (a shift), so this path is as
// accurate as the reference up to summation order.
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void Avx512Rows(const MatMulArgs& a,
                                                                         int64_t n_begin,
                                                                         int64_t n_end) {
  ForEachColumnBlock(a, n_begin, n_end, [&](int64_t j, int64_t i0, int rows, float* dst) {
    int r = 0;
    for (; r + 8 <= rows; r += 8) Avx512Tile<8>(a, j, i0 + r, dst + r * kColumnBlock);
    if (r + 4 <= rows) Avx512Tile<4>(a, j, i0 + r, dst + r * kColumnBlock), r += 4;
    if (r + 2 <= rows) Avx512Tile<2>(a, j, i0 + r, dst + r * kColumnBlock), r += 2;
    if (r < rows) Avx512Tile<1>(a, j, i0 + r, dst + r * kColumnBlock);
  });
}

// bf16 weights in WeightLayout::kTiles: one 16-row block (16 output columns from j0; `block`,
// its first tile) against M rows of x from i0, in f32 (the weights widened exactly, as in
// Avx512Tile). Each tile row holds the 16 columns' pairs of two k values, so a row's two
// halves (the even values, shifted; the odd ones, masked) multiply two broadcast x values
// into 16 columns' sums at once: no reduction across lanes. Four accumulators per x row and
// parity break the FMA chains. Read in order, a tile a few ahead fetched line by line.
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline void TiledBlock(
    const MatMulArgs& a, const uint16_t* block, int64_t j0, int64_t i0) {
  constexpr int kChains = 4;
  constexpr int64_t kTilesAhead = 4;
  const int64_t k_tiles = a.k / kTileValues;
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m512 even[M][kChains], odd[M][kChains];
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i) {
#pragma GCC unroll 4
    for (int c = 0; c < kChains; ++c) even[i][c] = odd[i][c] = _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < k_tiles; ++t) {
    const uint16_t* tile = block + t * kTileSize;
    const char* ahead = reinterpret_cast<const char*>(tile + kTilesAhead * kTileSize);
#pragma GCC unroll 16
    for (int p = 0; p < kTileRows; ++p) {
      _mm_prefetch(ahead + 64 * p, _MM_HINT_T0);
      const __m512i pairs = _mm512_loadu_si512(tile + p * kTileValues);
      const __m512 w_even = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
      const __m512 w_odd = _mm512_castsi512_ps(_mm512_and_si512(pairs, high));
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) {
        const float* x = a.x + (i0 + i) * a.k + t * kTileValues + 2 * p;
        even[i][p % kChains] = _mm512_fmadd_ps(w_even, _mm512_set1_ps(x[0]), even[i][p % kChains]);
        odd[i][p % kChains] = _mm512_fmadd_ps(w_odd, _mm512_set1_ps(x[1]), odd[i][p % kChains]);
      }
    }
  }
  const __m512 bias = a.bias != nullptr ? _mm512_loadu_ps(a.bias + j0) : _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i) {
    const __m512 sum = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(even[i][0], odd[i][0]), _mm512_add_ps(even[i][1], odd[i][1])),
        _mm512_add_ps(_mm512_add_ps(even[i][2], odd[i][2]), _mm512_add_ps(even[i][3], odd[i][3])));
    float* y = a.y + (i0 + i) * a.n + j0;
    const __m512 value = _mm512_add_ps(sum, bias);
    _mm512_storeu_ps(y, a.accumulate ? _mm512_add_ps(_mm512_loadu_ps(y), value) : value);
  }
}

// kTiles weights, 16-row blocks [block_begin, block_end): x rows two at a time, a last odd one
// alone.
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void Avx512TiledRows(const MatMulArgs& a,
                                                                              int64_t block_begin,
                                                                              int64_t block_end) {
  const auto* w = static_cast<const uint16_t*>(a.w);
  const int64_t k_tiles = a.k / kTileValues;
  for (int64_t b = block_begin; b < block_end; ++b) {
    const uint16_t* block = w + b * k_tiles * kTileSize;
    int64_t i = 0;
    for (; i + 2 <= a.m; i += 2) TiledBlock<2>(a, block, b * kTileRows, i);
    if (i < a.m) TiledBlock<1>(a, block, b * kTileRows, i);
  }
}

template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))) inline void
Bf16DotTile(const MatMulArgs& a, const uint16_t* x16, int64_t j, int64_t i0, float* dst) {
  const int64_t k32 = a.k / 32 * 32;
  const uint16_t* w16 = static_cast<const uint16_t*>(a.w);
  __m512 acc[M];
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
  // Weight rows stream from memory once per step; fetching a few rows ahead hides the latency
  // that the compute-bound tile would otherwise wait on.
  const uint16_t* ahead = w16 + std::min(j + kPrefetchRows, a.n - 1) * a.k;
  for (int64_t c = 0; c < k32; c += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(ahead + c), _MM_HINT_T0);
    const __m512bh w = (__m512bh)_mm512_loadu_si512(w16 + j * a.k + c);
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r) {
      const __m512bh x = (__m512bh)_mm512_loadu_si512(x16 + (i0 + r) * a.k + c);
      acc[r] = _mm512_dpbf16_ps(acc[r], x, w);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < M; ++r) {
    float sum = _mm512_reduce_add_ps(acc[r]);
    for (int64_t c = k32; c < a.k; ++c) {
      sum += Bf16ToFloat(x16[(i0 + r) * a.k + c]) * Bf16ToFloat(w16[j * a.k + c]);
    }
    dst[r * kColumnBlock] = sum;
  }
}

// Two weight rows (columns j and j+1) against M rows of x: each activation load feeds two dot
// products, halving the loads per multiply of the one-row tile.
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))) inline void
Bf16DotTile2(const MatMulArgs& a, const uint16_t* x16, int64_t j, int64_t i0, float* dst) {
  const int64_t k32 = a.k / 32 * 32;
  const uint16_t* w16 = static_cast<const uint16_t*>(a.w);
  const uint16_t* ahead = w16 + std::min(j + 1 + kPrefetchRows, a.n - 1) * a.k;
  __m512 acc0[M], acc1[M];
#pragma GCC unroll 8
  for (int r = 0; r < M; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t c = 0; c < k32; c += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(ahead + c), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ahead + a.k + c), _MM_HINT_T0);
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w16 + j * a.k + c);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(w16 + (j + 1) * a.k + c);
#pragma GCC unroll 8
    for (int r = 0; r < M; ++r) {
      const __m512bh x = (__m512bh)_mm512_loadu_si512(x16 + (i0 + r) * a.k + c);
      acc0[r] = _mm512_dpbf16_ps(acc0[r], x, w0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], x, w1);
    }
  }
  alignas(64) float sums[2 * M];  // row r's two columns at 2r, 2r + 1
  if constexpr (M == 8) {
    __m512 both[16];
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) both[2 * r] = acc0[r], both[2 * r + 1] = acc1[r];
    _mm512_store_ps(sums, avx512::Sum16(both));
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < M; ++r) {
      sums[2 * r] = _mm512_reduce_add_ps(acc0[r]);
      sums[2 * r + 1] = _mm512_reduce_add_ps(acc1[r]);
    }
  }
  for (int r = 0; r < M; ++r) {
    float sum0 = sums[2 * r], sum1 = sums[2 * r + 1];
    for (int64_t c = k32; c < a.k; ++c) {
      const float x = Bf16ToFloat(x16[(i0 + r) * a.k + c]);
      sum0 += x * Bf16ToFloat(w16[j * a.k + c]);
      sum1 += x * Bf16ToFloat(w16[(j + 1) * a.k + c]);
    }
    dst[r * kColumnBlock] = sum0;
    dst[r * kColumnBlock + 1] = sum1;
  }
}

// bf16 x bf16 dot products with f32 accumulation (vdpbf16ps): twice the multiply rate of the
// f32 path, at the price of rounding activations to bf16. Used only for bf16 weights and
// batches large enough to be compute-bound.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))) void Avx512Bf16Rows(
    const MatMulArgs& a, const uint16_t* x16, int64_t n_begin, int64_t n_end) {
  // Column pairs where possible (two weight rows per tile), single columns at the block's end.
  ForEachColumnBlock(
      a, n_begin, n_end,
      [&](int64_t j, int64_t i0, int rows, float* dst) {
        int r = 0;
        for (; r + 8 <= rows; r += 8) Bf16DotTile<8>(a, x16, j, i0 + r, dst + r * kColumnBlock);
        if (r + 4 <= rows) Bf16DotTile<4>(a, x16, j, i0 + r, dst + r * kColumnBlock), r += 4;
        if (r + 2 <= rows) Bf16DotTile<2>(a, x16, j, i0 + r, dst + r * kColumnBlock), r += 2;
        if (r < rows) Bf16DotTile<1>(a, x16, j, i0 + r, dst + r * kColumnBlock);
      },
      [&](int64_t j, int64_t i0, int rows, float* dst) {
        int r = 0;
        for (; r + 8 <= rows; r += 8) Bf16DotTile2<8>(a, x16, j, i0 + r, dst + r * kColumnBlock);
        if (r + 4 <= rows) Bf16DotTile2<4>(a, x16, j, i0 + r, dst + r * kColumnBlock), r += 4;
        if (r + 2 <= rows) Bf16DotTile2<2>(a, x16, j, i0 + r, dst + r * kColumnBlock), r += 2;
        if (r < rows) Bf16DotTile2<1>(a, x16, j, i0 + r, dst + r * kColumnBlock);
      });
}

// One 16-row block of a [n, k] bf16 matrix into its k / 32 tiles of WeightLayout::kTiles:
// tile row p takes pair p (values 2p, 2p + 1) of each of the 16 rows' 32 values.
void PackBlock(const uint16_t* rows, int64_t k, uint16_t* tiles) {
  for (int64_t t = 0; t < k / kTileValues; ++t) {
    uint16_t* tile = tiles + t * kTileSize;
    for (int64_t p = 0; p < kTileRows; ++p) {
      for (int64_t r = 0; r < kTileRows; ++r) {
        const uint16_t* pair = rows + r * k + t * kTileValues + 2 * p;
        tile[p * kTileValues + 2 * r] = pair[0];
        tile[p * kTileValues + 2 * r + 1] = pair[1];
      }
    }
  }
}

// The same as a transpose: the 16 rows' 64-byte segments, taken as 16 32-bit pairs each, are a
// 16 x 16 matrix whose transpose is the tile.
PAGODA_AVX512_TARGET void PackBlockAvx512(const uint16_t* rows, int64_t k, uint16_t* tiles) {
  for (int64_t t = 0; t < k / kTileValues; ++t) {
    __m512 r[kTileRows];
    for (int i = 0; i < kTileRows; ++i) {
      r[i] = _mm512_castsi512_ps(_mm512_loadu_si512(rows + i * k + t * kTileValues));
    }
    avx512::Transpose16x16(r);
    uint16_t* tile = tiles + t * kTileSize;
    for (int p = 0; p < kTileRows; ++p) {
      _mm512_storeu_si512(tile + p * kTileValues, _mm512_castps_si512(r[p]));
    }
  }
}

enum class Isa { kAvx512Bf16, kAvx512, kAvx2, kPortable };

Isa DetectIsa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512dq")
               ? Isa::kAvx512Bf16
               : Isa::kAvx512;
  }
  if (avx2::Supported()) return Isa::kAvx2;
  return Isa::kPortable;
}

Isa CpuIsa() {
  static const Isa isa = DetectIsa();
  return isa;
}

bool HasAvx512(Isa isa) { return isa == Isa::kAvx512Bf16 || isa == Isa::kAvx512; }

// Below this many rows a bf16 matmul is bound by reading the weights, and the exact f32 path
// costs nothing extra.
constexpr int64_t kMinRowsForBf16Dot = 4;

}  // namespace

void MatMulReference(const MatMulArgs& args) { ReferenceRows(args, 0, args.n); }

bool TilesLayoutFits(int64_t n, int64_t k) {
  return n > 0 && k > 0 && n % kTileRows == 0 && k % kTileValues == 0;
}

bool TilesLayoutPays() { return CpuIsa() == Isa::kAvx512Bf16 && amx::Available(); }

void PackWeightsToTiles(const uint16_t* rows, int64_t n, int64_t k, uint16_t* tiles,
                        ThreadPool& pool, bool allow_avx512) {
  PAGODA_CHECK(TilesLayoutFits(n, k));
  const bool avx512 = allow_avx512 && HasAvx512(CpuIsa());
  const int64_t block_values = kTileRows * k;  // a 16-row block is as long in both layouts
  pool.ParallelFor(n / kTileRows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      avx512 ? PackBlockAvx512(rows + b * block_values, k, tiles + b * block_values)
             : PackBlock(rows + b * block_values, k, tiles + b * block_values);
    }
  });
}

void UnpackTiledRow(const uint16_t* tiles, int64_t k, int64_t row, float* out) {
  const uint16_t* block = tiles + row / kTileRows * kTileRows * k;
  const int64_t r = row % kTileRows;
  for (int64_t c = 0; c < k; c += kTileValues) {
    const uint16_t* tile = block + c * kTileRows;  // the tile of columns c .. c + 32
    for (int64_t p = 0; p < kTileRows; ++p) {
      out[c + 2 * p] = Bf16ToFloat(tile[p * kTileValues + 2 * r]);
      out[c + 2 * p + 1] = Bf16ToFloat(tile[p * kTileValues + 2 * r + 1]);
    }
  }
}

const char* MatMulIsa() {
  switch (CpuIsa()) {
    case Isa::kAvx512Bf16:
      return amx::Available() ? "amx-bf16" : "avx512bf16";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPortable:
      break;
  }
  return "portable";
}

void GatedMatMul(const GatedMatMulArgs& g, ThreadPool& pool, bool allow_amx) {
  if (g.m == 0 || g.n == 0) return;
  PAGODA_CHECK(g.x != g.y && g.y != g.scratch);
  MatMulArgs gate{.x = g.x,
                  .w = g.w_gate,
                  .w_type = g.w_type,
                  .w_layout = g.w_layout,
                  .y = g.y,
                  .m = g.m,
                  .n = g.n,
                  .k = g.k};
  if (allow_amx && MatMulTakesAmx(gate)) {
    amx::GatedMatMul(gate, g.w_up, pool);
    return;
  }
  MatMul(gate, pool, allow_amx);
  MatMulArgs up = gate;
  up.w = g.w_up;
  up.y = g.scratch;
  MatMul(up, pool, allow_amx);
  pool.ParallelFor(g.m * g.n, 4096, [&](int64_t b, int64_t e) {
    SiluAndMul(g.y + b, g.scratch + b, e - b, g.y + b);
  });
}

bool MatMulTakesAmx(const MatMulArgs& a) {
  return CpuIsa() == Isa::kAvx512Bf16 && a.w_type == WeightType::kBF16 &&
         a.m >= kMinRowsForBf16Dot && amx::Available() && amx::Supports(a);
}

namespace {

// The bf16 dot-product path (x rounded to bf16 there): AVX-512 BF16, bf16 weights in Hugging
// Face's layout, enough rows.
bool TakesBf16Dot(const MatMulArgs& a, Isa isa) {
  return isa == Isa::kAvx512Bf16 && a.w_type == WeightType::kBF16 &&
         a.w_layout == WeightLayout::kRows && a.m >= kMinRowsForBf16Dot;
}

// Whether a product sees x rounded to bf16: a batched one with bf16 weights (MatMul).
bool RoundsX(const MatMulArgs& a) {
  return a.w_type == WeightType::kBF16 && a.m >= kMinRowsForBf16Dot;
}

// Whether the AVX2 path splits x in pairs (avx2::SplitPairs): bf16 weights in the rows layout.
// It rounds x as it splits it, so no separate pass rounds it.
bool SplitsX(const MatMulArgs& a, Isa isa) {
  return isa == Isa::kAvx2 && a.w_type == WeightType::kBF16 && a.w_layout == WeightLayout::kRows;
}

void RowsLayoutMatMul(const MatMulArgs& a, Isa isa, ThreadPool& pool) {
  // Enough output features per chunk that a chunk streams a few KiB of weights.
  const int64_t min_chunk = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, a.k));
  if (TakesBf16Dot(a, isa)) {
    struct X16 {};
    uint16_t* x16 = ThreadScratch<X16, uint16_t>(a.m * a.k);
    for (int64_t i = 0; i < a.m * a.k; ++i) x16[i] = FloatToBf16(a.x[i]);
    pool.ParallelFor(a.n, min_chunk, [&](int64_t b, int64_t e) { Avx512Bf16Rows(a, x16, b, e); });
    return;
  }
  float* x_pairs = nullptr;  // the AVX2 path's view of x against bf16 weights
  if (SplitsX(a, isa)) {
    struct XPairs {};
    x_pairs = ThreadScratch<XPairs, float>(a.m * a.k);
    avx2::SplitPairs(a.x, a.m, a.k, /*round_to_bf16=*/RoundsX(a), x_pairs);
  }
  pool.ParallelFor(a.n, min_chunk, [&](int64_t b, int64_t e) {
    switch (isa) {
      case Isa::kAvx512Bf16:
      case Isa::kAvx512:
        Avx512Rows(a, b, e);
        break;
      case Isa::kAvx2:
        avx2::Rows(a, x_pairs, b, e);
        break;
      case Isa::kPortable:
        ReferenceRows(a, b, e);
        break;
    }
  });
}

}  // namespace

void MatMul(const MatMulArgs& args, ThreadPool& pool, bool allow_amx) {
  if (args.m == 0 || args.n == 0) return;  // (empty x and y may both be null)
  PAGODA_CHECK(args.x != args.y);
  if (allow_amx && MatMulTakesAmx(args)) {
    amx::MatMul(args, pool);
    return;
  }
  const Isa isa = CpuIsa();
  // A batched bf16 product sees x rounded to bf16 on every path, as the bf16 dot products and
  // the AMX tiles see it: one numeric contract, whatever the CPU (results differ between CPUs
  // only in summation order, e.g. where an 8-bit KV cache quantizes the K/V they produce).
  MatMulArgs a = args;
  if (RoundsX(a) && !TakesBf16Dot(a, isa) && !SplitsX(a, isa)) {
    struct XRounded {};
    float* x_rounded = ThreadScratch<XRounded, float>(a.m * a.k);
    pool.ParallelFor(a.m, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b * a.k; i < e * a.k; ++i) x_rounded[i] = Bf16ToFloat(FloatToBf16(a.x[i]));
    });
    a.x = x_rounded;
  }
  if (a.w_layout == WeightLayout::kTiles) {
    PAGODA_CHECK(a.w_type == WeightType::kBF16 && TilesLayoutFits(a.n, a.k));
    if (HasAvx512(isa)) {
      pool.ParallelFor(a.n / kTileRows, 1, [&](int64_t b, int64_t e) { Avx512TiledRows(a, b, e); });
    } else {
      pool.ParallelFor(a.n, 1, [&](int64_t b, int64_t e) { ReferenceRows(a, b, e); });
    }
    return;
  }
  RowsLayoutMatMul(a, isa, pool);
}

}  // namespace pagoda::kernels::cpu

#include "kernels/cpu/matmul_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <memory>

#include "common/check.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/thread_scratch.h"

namespace pagoda::kernels::cpu::amx {
namespace {

constexpr int64_t kPackedTile = kTile * kTileK;  // bf16 values in one packed tile of x
// Blocks of 16 rows of x from which PackX runs on the pool rather than on the caller alone.
constexpr int64_t kParallelPackBlocks = 4;

bool Detect() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool amx_bf16 = (edx >> 22) & 1;
  const bool amx_tile = (edx >> 24) & 1;
  if (!amx_bf16 || !amx_tile || !__builtin_cpu_supports("avx512bf16") ||
      !__builtin_cpu_supports("avx512dq")) {
    return false;
  }
  // Linux hands out the 8 KiB of tile state only to processes that ask (kernel 5.16+).
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// x [m, k] f32 as bf16 tiles in AMX's pair-interleaved ("VNNI") layout for the right operand:
// tile (mb, kb) holds rows mb*16 .. +16 of x (zeros past m) and columns kb*32 .. +32; its row r
// has, for each of the 16 rows i of x, the pair x[i][kb*32 + 2r], x[i][kb*32 + 2r + 1].
PAGODA_AMX_TARGET void PackX(const MatMulArgs& a, int64_t mb_begin, int64_t mb_end,
                             uint16_t* packed) {
  const int64_t k_blocks = a.k / kTileK;
  for (int64_t mb = mb_begin; mb < mb_end; ++mb) {
    for (int64_t kb = 0; kb < k_blocks; ++kb) {
      __m512 rows[kTile];  // row i: x row mb*16 + i's 32 values as 16 bf16 pairs
      for (int i = 0; i < kTile; ++i) {
        const int64_t row = mb * kTile + i;
        if (row >= a.m) {
          rows[i] = _mm512_setzero_ps();
          continue;
        }
        const float* x = a.x + row * a.k + kb * kTileK;
        rows[i] = (__m512)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
      }
      avx512::Transpose16x16(rows);  // now row r: pair r of every row of x
      uint16_t* tile = packed + (mb * k_blocks + kb) * kPackedTile;
      for (int r = 0; r < kTile; ++r)
        _mm512_store_ps(reinterpret_cast<float*>(tile + r * kTileK), rows[r]);  // 64-byte rows
    }
  }
}

// y rows m0 .. m0+16 (those below m), columns n0 .. n0+16: rows[i] (plus the bias), or y plus
// that when accumulating.
PAGODA_AMX_TARGET inline void StoreBlock(const MatMulArgs& a, const __m512* rows, int64_t n0,
                                         int64_t m0) {
  const __m512 bias = a.bias != nullptr ? _mm512_loadu_ps(a.bias + n0) : _mm512_setzero_ps();
  const int rows_left = static_cast<int>(std::min<int64_t>(kTile, a.m - m0));
  for (int i = 0; i < rows_left; ++i) {
    float* y = a.y + (m0 + i) * a.n + n0;
    const __m512 value = _mm512_add_ps(rows[i], bias);
    _mm512_storeu_ps(y, a.accumulate ? _mm512_add_ps(_mm512_loadu_ps(y), value) : value);
  }
}

// y rows m0 .. m0+16 (those below m), columns n0 .. n0+16, from the transposed sums
// sums[n][i] (16 x 16 f32), plus the bias.
PAGODA_AMX_TARGET void StoreTransposed(const MatMulArgs& a, const float* sums, int64_t n0,
                                       int64_t m0) {
  __m512 rows[kTile];
  for (int i = 0; i < kTile; ++i) rows[i] = _mm512_load_ps(sums + i * kTile);
  avx512::Transpose16x16(rows);
  StoreBlock(a, rows, n0, m0);
}

// How the sums leave the tiles: stored (plus the bias, or added to y), or, for a gated product,
// the gate's sums (first weight block) through silu times the up's (second block) into one
// 16-column block of y.
enum class Epilogue { kStore, kSiluMul };

// NB blocks of 16 weight rows (from w0, and w1 for the second) against MB blocks of 16 rows of
// x from block mb0: up to 2 x 2 accumulator tiles, each weight tile feeding MB products and each
// x tile NB. The sums go to output columns from n0 (kStore: the two weight blocks' columns side
// by side; kSiluMul: both blocks make the 16 columns at n0).
template <int NB, int MB, Epilogue E = Epilogue::kStore>
PAGODA_AMX_TARGET void TileBlock(const MatMulArgs& a, const uint16_t* packed, const uint16_t* w0,
                                 const uint16_t* w1, int64_t n0, int64_t mb0) {
  static_assert(E == Epilogue::kStore || NB == 2);
  const int64_t k_blocks = a.k / kTileK;
  const long w_stride = static_cast<long>(a.k * sizeof(uint16_t));
  const uint16_t* x0 = packed + mb0 * k_blocks * kPackedTile;
  const uint16_t* x1 = x0 + k_blocks * kPackedTile;
  _tile_zero(0);
  if constexpr (MB > 1) _tile_zero(1);
  if constexpr (NB > 1) _tile_zero(2);
  if constexpr (NB > 1 && MB > 1) _tile_zero(3);
  for (int64_t kb = 0; kb < k_blocks; ++kb) {
    _tile_loadd(4, w0 + kb * kTileK, w_stride);
    _tile_loadd(6, x0 + kb * kPackedTile, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (MB > 1) {
      _tile_loadd(7, x1 + kb * kPackedTile, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (NB > 1) {
      _tile_loadd(5, w1 + kb * kTileK, w_stride);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (MB > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  alignas(64) float sums[4][kTile * kTile];
  _tile_stored(0, sums[0], 64);
  if constexpr (MB > 1) _tile_stored(1, sums[1], 64);
  if constexpr (NB > 1) _tile_stored(2, sums[2], 64);
  if constexpr (NB > 1 && MB > 1) _tile_stored(3, sums[3], 64);
  if constexpr (E == Epilogue::kSiluMul) {
    for (int mb = 0; mb < MB; ++mb) {
      for (int i = 0; i < kTile * kTile; i += kTile) {
        _mm512_store_ps(sums[mb] + i, avx512::SiluMul(_mm512_load_ps(sums[mb] + i),
                                                      _mm512_load_ps(sums[2 + mb] + i)));
      }
      StoreTransposed(a, sums[mb], n0, (mb0 + mb) * kTile);
    }
  } else {
    for (int nb = 0; nb < NB; ++nb) {
      for (int mb = 0; mb < MB; ++mb) {
        StoreTransposed(a, sums[2 * nb + mb], n0 + nb * kTile, (mb0 + mb) * kTile);
      }
    }
  }
}

// Output columns [32 * pair_begin, 32 * pair_end) (the last pair may be a single block).
PAGODA_AMX_TARGET void Pairs(const MatMulArgs& a, const uint16_t* packed, int64_t m_blocks,
                             int64_t pair_begin, int64_t pair_end) {
  ConfigureTiles();
  const auto* w = static_cast<const uint16_t*>(a.w);
  for (int64_t pair = pair_begin; pair < pair_end; ++pair) {
    const int64_t n0 = pair * 2 * kTile;
    const uint16_t* w0 = w + n0 * a.k;
    const uint16_t* w1 = w0 + kTile * a.k;
    const bool two = n0 + 2 * kTile <= a.n;
    int64_t mb = 0;
    for (; mb + 2 <= m_blocks; mb += 2) {
      two ? TileBlock<2, 2>(a, packed, w0, w1, n0, mb) : TileBlock<1, 2>(a, packed, w0, w1, n0, mb);
    }
    if (mb < m_blocks) {
      two ? TileBlock<2, 1>(a, packed, w0, w1, n0, mb) : TileBlock<1, 1>(a, packed, w0, w1, n0, mb);
    }
  }
  _tile_release();  // a thread without tile state switches contexts cheaper
}

// Gated output columns [16 * block_begin, 16 * block_end): the gate's and the up's weight rows
// of each 16-column block against every block of x.
PAGODA_AMX_TARGET void GatedBlocks(const MatMulArgs& a, const uint16_t* w_up,
                                   const uint16_t* packed, int64_t m_blocks, int64_t block_begin,
                                   int64_t block_end) {
  ConfigureTiles();
  const auto* w_gate = static_cast<const uint16_t*>(a.w);
  for (int64_t block = block_begin; block < block_end; ++block) {
    const int64_t n0 = block * kTile;
    const uint16_t* gate = w_gate + n0 * a.k;
    const uint16_t* up = w_up + n0 * a.k;
    int64_t mb = 0;
    for (; mb + 2 <= m_blocks; mb += 2) {
      TileBlock<2, 2, Epilogue::kSiluMul>(a, packed, gate, up, n0, mb);
    }
    if (mb < m_blocks) TileBlock<2, 1, Epilogue::kSiluMul>(a, packed, gate, up, n0, mb);
  }
  _tile_release();
}

// --- Weights packed at load (WeightLayout::kTiles): y = x * W^T on the tiles as it stands, x
// rows the left operand, the packed weights the right one, so the sums leave the tiles as rows
// of y (no transposing epilogue) and x needs only rounding to bf16, not packing.

// Rows m0 .. m0+16 (those below m) of the 16 columns at n0 of y, from the sums tile
// sums[i][j] (plus the bias, or added to y).
PAGODA_AMX_TARGET void StoreRows(const MatMulArgs& a, const float* sums, int64_t n0, int64_t m0) {
  __m512 rows[kTile];
  for (int i = 0; i < kTile; ++i) rows[i] = _mm512_load_ps(sums + i * kTile);
  StoreBlock(a, rows, n0, m0);
}

// PackedTileBlock's sums (sums[nb * MB + mb]) into y: kStore, each block's 16 columns from n0
// on; kSiluMul, silu(gate) * up of each (gate, up) pair of blocks.
template <int NB, int MB, Epilogue E>
PAGODA_AMX_TARGET void PackedEpilogue(const MatMulArgs& a, float (*sums)[kTile * kTile], int64_t n0,
                                      int64_t mb0) {
  for (int mb = 0; mb < MB; ++mb) {
    if constexpr (E == Epilogue::kSiluMul) {
      for (int q = 0; q < NB / 2; ++q) {
        float* gate = sums[2 * q * MB + mb];
        const float* up = sums[(2 * q + 1) * MB + mb];
        for (int i = 0; i < kTile * kTile; i += kTile) {
          _mm512_store_ps(gate + i,
                          avx512::SiluMul(_mm512_load_ps(gate + i), _mm512_load_ps(up + i)));
        }
        StoreRows(a, gate, n0 + q * kTile, (mb0 + mb) * kTile);
      }
    } else {
      for (int nb = 0; nb < NB; ++nb) {
        StoreRows(a, sums[nb * MB + mb], n0 + nb * kTile, (mb0 + mb) * kTile);
      }
    }
  }
}

// NB packed 16-column weight blocks (w[0..NB)) against MB 16-row blocks of the bf16 rows of x
// (x16, [m rounded up to 16, k]) from block mb0, into NB * MB <= 4 accumulator tiles: 2 x 2,
// or 4 x 1 when x has one block (a decode step), so that four independent chains of
// TDPBF16PS hide its latency either way (two, the most a 2-column-block pair gives one block
// of x, ran at half the rate). The weight tiles go through tmm6 and tmm7 (and tmm5, free when
// MB is 1). The epilogue: PackedEpilogue.
template <int NB, int MB, Epilogue E = Epilogue::kStore>
PAGODA_AMX_TARGET void PackedTileBlock(const MatMulArgs& a, const uint16_t* x16,
                                       const uint16_t* const* w, int64_t n0, int64_t mb0) {
  static_assert(NB * MB <= 4 && MB <= 2 && (E == Epilogue::kStore || NB % 2 == 0));
  const int64_t k_blocks = a.k / kTileK;
  const long x_stride = static_cast<long>(a.k * sizeof(uint16_t));
  const uint16_t* x0 = x16 + mb0 * kTile * a.k;
  const uint16_t* x1 = x0 + kTile * a.k;
  _tile_zero(0);
  if constexpr (NB * MB > 1) _tile_zero(1);
  if constexpr (NB * MB > 2) _tile_zero(2);
  if constexpr (NB * MB > 3) _tile_zero(3);
  for (int64_t kb = 0; kb < k_blocks; ++kb) {
    const int64_t at = kb * kPackedTile;
    _tile_loadd(4, x0 + kb * kTileK, x_stride);
    if constexpr (MB > 1) _tile_loadd(5, x1 + kb * kTileK, x_stride);
    _tile_loadd(6, w[0] + at, 64);
    _tile_dpbf16ps(0, 4, 6);  // accumulator nb * MB + mb
    if constexpr (MB > 1) _tile_dpbf16ps(1, 5, 6);
    if constexpr (NB > 1) {
      _tile_loadd(7, w[1] + at, 64);
      if constexpr (MB > 1) {
        _tile_dpbf16ps(2, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      } else {
        _tile_dpbf16ps(1, 4, 7);
      }
    }
    if constexpr (NB > 2) {  // (then MB is 1 and tmm5 free)
      _tile_loadd(5, w[2] + at, 64);
      _tile_dpbf16ps(2, 4, 5);
    }
    if constexpr (NB > 3) {
      _tile_loadd(6, w[3] + at, 64);
      _tile_dpbf16ps(3, 4, 6);
    }
  }
  alignas(64) float sums[4][kTile * kTile];
  _tile_stored(0, sums[0], 64);
  if constexpr (NB * MB > 1) _tile_stored(1, sums[1], 64);
  if constexpr (NB * MB > 2) _tile_stored(2, sums[2], 64);
  if constexpr (NB * MB > 3) _tile_stored(3, sums[3], 64);
  PackedEpilogue<NB, MB, E>(a, sums, n0, mb0);
}

// Weight blocks per group of output columns: 4 against a single block of x, 2 against more.
int64_t PackedGroupBlocks(int64_t m_blocks) { return m_blocks == 1 ? 4 : 2; }
// Weight blocks per 16 output columns: the gated product's gate and up.
template <Epilogue E>
constexpr int64_t kBlocksPerColumns = E == Epilogue::kSiluMul ? 2 : 1;

// The 16-row blocks of x one pass over the weights covers: [begin, end) of `total`.
struct RowBlocks {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t total = 0;
};

// PackedTileBlock where its shape is one the epilogue takes (a gated one pairs its blocks);
// the group walk below never asks for the others.
template <int NB, int MB, Epilogue E>
PAGODA_AMX_TARGET inline void PackedTileBlockIfPaired(const MatMulArgs& a, const uint16_t* x16,
                                                      const uint16_t* const* w, int64_t n0,
                                                      int64_t mb0) {
  if constexpr (E == Epilogue::kStore || NB % 2 == 0)
    PackedTileBlock<NB, MB, E>(a, x16, w, n0, mb0);
}

// Output column groups [group_begin, group_end) against `rows`: each group PackedGroupBlocks
// weight blocks (the last may have fewer), 16 output columns each for kStore, a (gate, up) pair
// per 16 columns for kSiluMul (the up's weights at w_up).
template <Epilogue E>
PAGODA_AMX_TARGET void PackedGroups(const MatMulArgs& a, const uint16_t* w_up, const uint16_t* x16,
                                    RowBlocks rows, int64_t group_begin, int64_t group_end) {
  ConfigureTiles();
  const auto* weights = static_cast<const uint16_t*>(a.w);
  const int64_t group_columns = PackedGroupBlocks(rows.total) / kBlocksPerColumns<E>;
  const int64_t n_columns = a.n / kTile;  // 16-column blocks of y
  for (int64_t group = group_begin; group < group_end; ++group) {
    const int64_t first = group * group_columns;
    const int64_t columns = std::min(group_columns, n_columns - first);
    const int64_t n0 = first * kTile;
    const uint16_t* w[4];  // a 16-column block is 16 * k values, as in rows
    for (int64_t b = 0; b < columns; ++b) {
      w[kBlocksPerColumns<E> * b] = weights + (n0 + b * kTile) * a.k;
      if constexpr (E == Epilogue::kSiluMul) w[2 * b + 1] = w_up + (n0 + b * kTile) * a.k;
    }
    const int64_t blocks = columns * kBlocksPerColumns<E>;
    if (rows.total == 1) {
      switch (blocks) {
        case 4:
          PackedTileBlockIfPaired<4, 1, E>(a, x16, w, n0, 0);
          break;
        case 3:
          PackedTileBlockIfPaired<3, 1, E>(a, x16, w, n0, 0);
          break;
        case 2:
          PackedTileBlockIfPaired<2, 1, E>(a, x16, w, n0, 0);
          break;
        default:
          PackedTileBlockIfPaired<1, 1, E>(a, x16, w, n0, 0);
          break;
      }
      continue;
    }
    int64_t mb = rows.begin;
    for (; mb + 2 <= rows.end; mb += 2) {
      blocks == 2 ? PackedTileBlockIfPaired<2, 2, E>(a, x16, w, n0, mb)
                  : PackedTileBlockIfPaired<1, 2, E>(a, x16, w, n0, mb);
    }
    if (mb < rows.end) {
      blocks == 2 ? PackedTileBlockIfPaired<2, 1, E>(a, x16, w, n0, mb)
                  : PackedTileBlockIfPaired<1, 1, E>(a, x16, w, n0, mb);
    }
  }
  _tile_release();
}

// x's rows [row_begin, row_end) of the [m rounded up to 16, k] bf16 copy: rounded to nearest
// even, as PackX rounds; the rows past m zero.
PAGODA_AMX_TARGET void RoundX(const MatMulArgs& a, int64_t row_begin, int64_t row_end,
                              uint16_t* x16) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    uint16_t* out = x16 + row * a.k;
    if (row >= a.m) {
      std::fill_n(out, a.k, uint16_t{0});
      continue;
    }
    const float* x = a.x + row * a.k;
    for (int64_t c = 0; c < a.k; c += kTileK) {
      const __m512bh pair =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
      _mm512_storeu_si512(out + c, (__m512i)pair);
    }
  }
}

}  // namespace

bool Available() {
  static const bool available = Detect();
  return available;
}

bool Supports(const MatMulArgs& a) {
  return a.w_type == WeightType::kBF16 && a.n % kTile == 0 && a.k % kTileK == 0 && a.k > 0;
}

PAGODA_AMX_TARGET float PeakLoop(int64_t iterations) {
  PAGODA_CHECK(Available());
  ConfigureTiles();
  alignas(64) uint16_t ones[kTile * kTileK];
  std::fill(std::begin(ones), std::end(ones), uint16_t{0x3F80});  // bf16 1.0
  // tileloadd's asm names no memory operand: the fill must not move past it.
  __asm__ volatile("" : : "r"(ones) : "memory");
  _tile_loadd(4, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t it = 0; it < iterations; ++it) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 6);
    _tile_dpbf16ps(2, 4, 6);
    _tile_dpbf16ps(3, 4, 6);
  }
  alignas(64) float sums[kTile * kTile];
  _tile_stored(3, sums, 64);
  _tile_release();
  return sums[kTile * kTile - 1];
}

namespace {

// In 64-byte lines, so that the packed tiles' rows are aligned (a tile is 16 lines).
struct alignas(64) Line {
  uint16_t values[kTileK];
};

// x made ready for the tiles, into a buffer of the calling thread's that lives on from call to
// call: PackX's tiles for weights in rows, or for packed weights (WeightLayout::kTiles) x's rows
// only rounded to bf16 (RoundX); the same size either way, m rounded up to 16 rows of k values.
// A prompt's is megabytes, and a fresh allocation of that size costs page faults and zeroing
// (2.4% of a prefill's profile) for what is overwritten anyway. Valid until the thread's next
// call.
uint16_t* PackedX(const MatMulArgs& a, ThreadPool& pool) {
  struct Tag {};
  const int64_t m_blocks = (a.m + kTile - 1) / kTile;
  uint16_t* packed = ThreadScratch<Tag, Line>(m_blocks * (a.k / kTileK) * kTile)->values;
  const bool round_only = a.w_layout == WeightLayout::kTiles;
  const auto pack = [&](int64_t begin, int64_t end) {
    round_only ? RoundX(a, begin * kTile, end * kTile, packed) : PackX(a, begin, end, packed);
  };
  // A prompt's rows are packed on the pool (the other threads would only wait for it); a few
  // decode rows on the caller.
  if (m_blocks >= kParallelPackBlocks) {
    pool.ParallelFor(m_blocks, 1, pack);
  } else {
    pack(0, m_blocks);
  }
  return packed;
}

// A prompt's rows of x go through the packed weights in passes of kRowPassBytes of bf16 rows (an
// even number of 16-row blocks, at least 2), each pass over every weight group: a pass's rows
// stay in L2 while the groups read them, where one pass of all the rows streamed them from L3
// once per group (m = 1,024 x n = 8,192 x k = 2,048: 586 -> 720-818 GFLOP/s on one thread;
// 256 KiB and 1 MiB passes measured the same).
constexpr int64_t kRowPassBytes = int64_t{512} << 10;

// y = x * W^T (E = kStore) or the gated product (kSiluMul, a.w the gate's weights) on packed
// weights: x's rows in passes (kRowPassBytes), each over every group of output columns on `pool`.
template <Epilogue E>
void PackedProduct(const MatMulArgs& a, const uint16_t* w_up, const uint16_t* x16,
                   ThreadPool& pool) {
  const int64_t m_blocks = (a.m + kTile - 1) / kTile;
  const int64_t per_pass = std::max<int64_t>(
      2, kRowPassBytes / (kTile * a.k * static_cast<int64_t>(sizeof(uint16_t))) / 2 * 2);
  const int64_t group_columns = PackedGroupBlocks(m_blocks) / kBlocksPerColumns<E>;
  const int64_t groups = (a.n / kTile + group_columns - 1) / group_columns;
  for (int64_t begin = 0; begin < m_blocks; begin += per_pass) {
    const RowBlocks rows{
        .begin = begin, .end = std::min(m_blocks, begin + per_pass), .total = m_blocks};
    pool.ParallelFor(groups, 1, [&](int64_t group_begin, int64_t group_end) {
      PackedGroups<E>(a, w_up, x16, rows, group_begin, group_end);
    });
  }
}

}  // namespace

void MatMul(const MatMulArgs& a, ThreadPool& pool) {
  PAGODA_CHECK(Available() && Supports(a));
  const int64_t m_blocks = (a.m + kTile - 1) / kTile;
  const uint16_t* packed = PackedX(a, pool);
  const int64_t pairs = (a.n / kTile + 1) / 2;
  if (a.w_layout == WeightLayout::kTiles) {
    PackedProduct<Epilogue::kStore>(a, nullptr, packed, pool);
    return;
  }
  pool.ParallelFor(pairs, 1,
                   [&](int64_t begin, int64_t end) { Pairs(a, packed, m_blocks, begin, end); });
}

void GatedMatMul(const MatMulArgs& gate, const void* w_up, ThreadPool& pool) {
  PAGODA_CHECK(Available() && Supports(gate) && gate.bias == nullptr && !gate.accumulate);
  const int64_t m_blocks = (gate.m + kTile - 1) / kTile;
  const uint16_t* packed = PackedX(gate, pool);
  const auto* up = static_cast<const uint16_t*>(w_up);
  if (gate.w_layout == WeightLayout::kTiles) {
    PackedProduct<Epilogue::kSiluMul>(gate, up, packed, pool);
    return;
  }
  pool.ParallelFor(gate.n / kTile, 1, [&](int64_t begin, int64_t end) {
    GatedBlocks(gate, up, packed, m_blocks, begin, end);
  });
}

}  // namespace pagoda::kernels::cpu::amx

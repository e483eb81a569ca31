#include "kernels/cpu/matmul_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/bf16.h"

namespace pagoda::kernels::cpu::avx2 {
namespace {

// Weight rows per tile against 4 rows of x (3 x 4 = 12 accumulators, 3 weight vectors and one
// x vector: the 16 ymm registers), and against a single row (6 independent chains).
constexpr int kWeightRows = 3;
constexpr int kXRows = 4;
constexpr int kDecodeWeightRows = 6;
// The weight rows of a block are read once from memory, then from L2 by every further 4-row
// group of x (half of the smallest L2 of the CPUs this path serves, 512 KiB on Zen 1-2).
constexpr int64_t kBlockBytes = 128 << 10;

// Values of k per step: f32 weights 8 (one vector); bf16 weights 16 as 8 pairs (one 32-byte
// load: the even values shifted into the high halves, the odd ones masked, against x's even and
// odd values: SplitPairs), half the widening work of 8 at a time.
template <typename W>
constexpr bool kPaired = std::is_same_v<W, uint16_t>;
template <typename W>
constexpr int64_t kStep = kPaired<W> ? 16 : 8;

// Half `half` (0: the even values, 1: the odd ones) of the 8 pairs at p as 8 f32 lanes.
PAGODA_AVX2_TARGET inline __m256 PairHalf(const uint16_t* p, int half) {
  const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm256_castsi256_ps(
      half == 0 ? _mm256_slli_epi32(pairs, 16)
                : _mm256_and_si256(pairs, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// acc[n][r] += x[r][c, c + 8) * wv[n], x's rows k apart from xr. (A function, not a lambda: a
// lambda would not inherit the target.)
template <int NW, int M>
PAGODA_AVX2_TARGET inline void Multiply(const float* xr, int64_t k, int64_t c, const __m256* wv,
                                        __m256 (&acc)[NW][M]) {
#pragma GCC unroll 4
  for (int r = 0; r < M; ++r) {
    const __m256 x = _mm256_loadu_ps(xr + r * k + c);
#pragma GCC unroll 8
    for (int n = 0; n < NW; ++n) acc[n][r] = _mm256_fmadd_ps(x, wv[n], acc[n][r]);
  }
}

// The mask of the high halves of 8 lanes: a bf16 pair's odd value as f32.
alignas(32) constexpr uint32_t kHighHalves[8] = {0xFFFF0000u, 0xFFFF0000u, 0xFFFF0000u,
                                                 0xFFFF0000u, 0xFFFF0000u, 0xFFFF0000u,
                                                 0xFFFF0000u, 0xFFFF0000u};

// How Half3x4 turns the 32 bytes it loads per weight row into 8 f32 weights.
enum class Widen {
  kNone,  // they are f32 (f32 weights)
  kEven,  // bf16 pairs: the even values, shifted into the high halves
  kOdd,   // bf16 pairs: the odd values, the low halves masked
};

// Half a step of the 3 x 4 tile (a whole step for f32 weights): acc[n][r] += x_r * w_n over 8
// lanes, the weight rows w_stride bytes apart from w, x's rows x_stride bytes apart from x (its
// fourth row at x3). Written in assembly so that the 16 ymm registers are exactly the 12
// accumulators, 3 weight vectors and one x vector: from the intrinsics GCC kept both halves'
// loaded bf16 pairs live and spilled two accumulators through the stack every step, or folded
// the x loads into every FMA (three loads each), by the whim of the code around the loop. The
// products and their order are the intrinsics' (vfmadd231ps), so the sums are the same.
// clang-format off
#define PAGODA_HALF_LOADS                                                          \
  "vmovdqu (%[w]), %%ymm12\n\t"                                                   \
  "vmovdqu (%[w],%[ws],1), %%ymm13\n\t"                                           \
  "vmovdqu (%[w],%[ws],2), %%ymm14\n\t"
#define PAGODA_HALF_ROW(x_addr, r)                                                 \
  "vmovups " x_addr ", %%ymm15\n\t"                                                \
  "vfmadd231ps %%ymm15, %%ymm12, %[a0" #r "]\n\t"                                   \
  "vfmadd231ps %%ymm15, %%ymm13, %[a1" #r "]\n\t"                                   \
  "vfmadd231ps %%ymm15, %%ymm14, %[a2" #r "]\n\t"
#define PAGODA_HALF_ROWS                                                           \
  PAGODA_HALF_ROW("(%[x])", 0)                                                      \
  PAGODA_HALF_ROW("(%[x],%[xs],1)", 1)                                              \
  PAGODA_HALF_ROW("(%[x],%[xs],2)", 2)                                              \
  PAGODA_HALF_ROW("(%[x3])", 3)                                                     \
  : [a00] "+x"(acc[0][0]), [a01] "+x"(acc[0][1]), [a02] "+x"(acc[0][2]),           \
    [a03] "+x"(acc[0][3]), [a10] "+x"(acc[1][0]), [a11] "+x"(acc[1][1]),           \
    [a12] "+x"(acc[1][2]), [a13] "+x"(acc[1][3]), [a20] "+x"(acc[2][0]),           \
    [a21] "+x"(acc[2][1]), [a22] "+x"(acc[2][2]), [a23] "+x"(acc[2][3])            \
  : [w] "r"(w), [ws] "r"(w_stride), [x] "r"(x), [xs] "r"(x_stride), [x3] "r"(x3),   \
    [high] "m"(*reinterpret_cast<const __m256i*>(kHighHalves))                      \
  : "xmm12", "xmm13", "xmm14", "xmm15", "memory"
// clang-format on
template <Widen kWiden>
PAGODA_AVX2_TARGET inline void Half3x4(const void* w, int64_t w_stride, const float* x,
                                       int64_t x_stride, const float* x3, __m256 (&acc)[3][4]) {
  if constexpr (kWiden == Widen::kNone) {
    asm(PAGODA_HALF_LOADS PAGODA_HALF_ROWS);
  } else if constexpr (kWiden == Widen::kEven) {
    asm(PAGODA_HALF_LOADS
        "vpslld $16, %%ymm12, %%ymm12\n\t"
        "vpslld $16, %%ymm13, %%ymm13\n\t"
        "vpslld $16, %%ymm14, %%ymm14\n\t" PAGODA_HALF_ROWS);
  } else {
    asm(PAGODA_HALF_LOADS
        "vpand %[high], %%ymm12, %%ymm12\n\t"
        "vpand %[high], %%ymm13, %%ymm13\n\t"
        "vpand %[high], %%ymm14, %%ymm14\n\t" PAGODA_HALF_ROWS);
  }
}
#undef PAGODA_HALF_ROWS
#undef PAGODA_HALF_ROW
#undef PAGODA_HALF_LOADS

// One step of the 3 x 4 tile from c: weight rows k apart from wr, x's rows k apart from xr.
template <typename W>
PAGODA_AVX2_TARGET inline void Step3x4(const W* wr, const float* xr, int64_t k, int64_t c,
                                       __m256 (&acc)[3][4]) {
  const int64_t w_stride = k * static_cast<int64_t>(sizeof(W)), x_stride = k * 4;
  const float* x = xr + c;
  if constexpr (std::is_same_v<W, uint16_t>) {
    Half3x4<Widen::kEven>(wr + c, w_stride, x, x_stride, x + 3 * k, acc);
    Half3x4<Widen::kOdd>(wr + c, w_stride, x + 8, x_stride, x + 3 * k + 8, acc);
  } else {
    Half3x4<Widen::kNone>(wr + c, w_stride, x, x_stride, x + 3 * k, acc);
  }
}

inline float WeightValue(float w) { return w; }
inline float WeightValue(uint16_t w) { return Bf16ToFloat(w); }

// A tile's sums: each accumulator's lanes, plus the products past the last whole step (k_steps),
// stored with the bias (and the old y when accumulating).
template <typename W, int NW, int M>
PAGODA_AVX2_TARGET inline void StoreTile(const MatMulArgs& a, const W* wr, const float* xr,
                                         int64_t k_steps, const __m256 (&acc)[NW][M], int64_t j,
                                         int64_t i0) {
  const int64_t k = a.k;
#pragma GCC unroll 4
  for (int r = 0; r < M; ++r) {
#pragma GCC unroll 8
    for (int n = 0; n < NW; ++n) {
      float sum = Sum8(acc[n][r]);
      // (SplitPairs leaves x's values past the last 16 in place.)
      for (int64_t c = k_steps; c < k; ++c) sum += xr[r * k + c] * WeightValue(wr[n * k + c]);
      a.StoreSum(i0 + r, j + n, sum);
    }
  }
}

// NW weight rows from j against M rows of x from i0: NW * M accumulators of 8 lanes, each
// weight vector loaded (and widened) once for the M rows, each x vector once for the NW rows.
// `xs`: x as the step reads it (bf16: split in pairs; its values past the last 16 in place).
// `prefetch`: NW rows (k apart) to ask for while this tile runs, a line per row every 64 bytes
// of this tile's; null for none.
template <typename W, int NW, int M>
PAGODA_AVX2_TARGET inline void Tile(const MatMulArgs& a, const W* w, const float* xs, int64_t j,
                                    int64_t i0, const W* prefetch) {
  const int64_t k = a.k, k_steps = k / kStep<W> * kStep<W>;
  const W* wr = w + j * k;
  const float* xr = xs + i0 * k;
  __m256 acc[NW][M];
#pragma GCC unroll 8
  for (int n = 0; n < NW; ++n) {
#pragma GCC unroll 4
    for (int r = 0; r < M; ++r) acc[n][r] = _mm256_setzero_ps();
  }
  const char* next = reinterpret_cast<const char*>(prefetch);
  constexpr int64_t kValuesPerLine = 64 / static_cast<int64_t>(sizeof(W));
  for (int64_t c = 0; c < k_steps; c += kStep<W>) {
    if (next != nullptr && c % kValuesPerLine == 0) {
#pragma GCC unroll 8
      for (int n = 0; n < NW; ++n) {
        _mm_prefetch(next + (n * k + c) * static_cast<int64_t>(sizeof(W)), _MM_HINT_T0);
      }
    }
    if constexpr (NW == 3 && M == 4) {
      Step3x4(wr, xr, k, c, acc);
    } else if constexpr (kPaired<W>) {
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        __m256 wv[NW];
#pragma GCC unroll 8
        for (int n = 0; n < NW; ++n) wv[n] = PairHalf(wr + n * k + c, half);
        Multiply<NW, M>(xr, k, c + 8 * half, wv, acc);
      }
    } else {
      __m256 wv[NW];
#pragma GCC unroll 8
      for (int n = 0; n < NW; ++n) wv[n] = _mm256_loadu_ps(wr + n * k + c);
      Multiply<NW, M>(xr, k, c, wv, acc);
    }
  }
  StoreTile<W, NW, M>(a, wr, xr, k_steps, acc, j, i0);
}

// The nw weight rows after the tile of nw rows at j, or null where the matrix ends before them.
template <typename W>
inline const W* NextTileRows(const MatMulArgs& a, const W* w, int64_t j, int nw) {
  return j + 2 * nw <= a.n ? w + (j + nw) * a.k : nullptr;
}

// Weight rows [j_begin, j_end) against M rows of x from i0. `ahead`: each tile asks for the next
// tile's rows. The pass of the first row group over a block reads its rows from memory in runs of
// a few KiB, too short for the hardware prefetcher; the later passes find them in L2.
template <typename W, int M>
PAGODA_AVX2_TARGET void Columns(const MatMulArgs& a, const W* w, const float* xs, int64_t j_begin,
                                int64_t j_end, int64_t i0, bool ahead) {
  int64_t j = j_begin;
  const auto rows = [&a, w, ahead](int64_t jj, int nw) {
    return ahead ? NextTileRows(a, w, jj, nw) : nullptr;
  };
  for (; j + kWeightRows <= j_end; j += kWeightRows) {
    Tile<W, kWeightRows, M>(a, w, xs, j, i0, rows(j, kWeightRows));
  }
  if (j_end - j == 2) Tile<W, 2, M>(a, w, xs, j, i0, rows(j, 2));
  if (j_end - j == 1) Tile<W, 1, M>(a, w, xs, j, i0, rows(j, 1));
}

// Every row of x [0, m) against weight rows [j_begin, j_end), 4 rows at a time, then the rest.
template <typename W>
PAGODA_AVX2_TARGET void AllRows(const MatMulArgs& a, const W* w, const float* xs, int64_t j_begin,
                                int64_t j_end, bool ahead) {
  int64_t i = 0;
  for (; i + kXRows <= a.m; i += kXRows) {
    Columns<W, kXRows>(a, w, xs, j_begin, j_end, i, ahead && i == 0);
  }
  ahead = ahead && i == 0;  // the rest is the first group only when m < kXRows
  switch (a.m - i) {
    case 3:
      Columns<W, 3>(a, w, xs, j_begin, j_end, i, ahead);
      break;
    case 2:
      Columns<W, 2>(a, w, xs, j_begin, j_end, i, ahead);
      break;
    case 1:
      Columns<W, 1>(a, w, xs, j_begin, j_end, i, ahead);
      break;
    default:
      break;
  }
}

template <typename W>
PAGODA_AVX2_TARGET void RowsOf(const MatMulArgs& a, const W* w, const float* xs, int64_t n_begin,
                               int64_t n_end) {
  if (a.m == 1) {  // decode: the weights stream once, as many chains as the registers allow
    int64_t j = n_begin;
    for (; j + kDecodeWeightRows <= n_end; j += kDecodeWeightRows) {
      // Alone against one row of x, the weights stream once: each tile asks for the next's.
      Tile<W, kDecodeWeightRows, 1>(a, w, xs, j, 0, NextTileRows(a, w, j, kDecodeWeightRows));
    }
    Columns<W, 1>(a, w, xs, j, n_end, 0, true);
    return;
  }
  // The range in equal blocks of at most kBlockBytes (whole tiles), so no block is a sliver.
  const int64_t rows = n_end - n_begin;
  const int64_t row_bytes = a.k * static_cast<int64_t>(sizeof(W));
  const int64_t blocks = std::max<int64_t>(1, (rows * row_bytes + kBlockBytes - 1) / kBlockBytes);
  const int64_t tiles = ((rows + blocks - 1) / blocks + kWeightRows - 1) / kWeightRows;
  const int64_t block_rows = tiles * kWeightRows;
  // (bf16 blocks were once widened to f32 from 32 rows of x, for all the row groups; with the
  // 3 x 4 step in assembly, widening per group as it loads was level at 128 rows and in prompts,
  // and 1.05-1.14x on a batch-64 decode step.)
  for (int64_t jb = n_begin; jb < n_end; jb += block_rows) {
    AllRows(a, w, xs, jb, std::min(n_end, jb + block_rows), true);
  }
}

}  // namespace

void SplitPairs(const float* x, int64_t m, int64_t k, bool round_to_bf16, float* out) {
  const auto value = [round_to_bf16](float v) {
    return round_to_bf16 ? Bf16ToFloat(FloatToBf16(v)) : v;
  };
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * k;
    float* split = out + i * k;
    int64_t c = 0;
    for (; c + 16 <= k; c += 16) {
      for (int p = 0; p < 8; ++p) {
        split[c + p] = value(row[c + 2 * p]);
        split[c + 8 + p] = value(row[c + 2 * p + 1]);
      }
    }
    for (; c < k; ++c) split[c] = value(row[c]);
  }
}

void Rows(const MatMulArgs& a, const float* x_pairs, int64_t n_begin, int64_t n_end) {
  if (a.w_type == WeightType::kF32) {
    RowsOf(a, static_cast<const float*>(a.w), a.x, n_begin, n_end);
  } else {
    RowsOf(a, static_cast<const uint16_t*>(a.w), x_pairs, n_begin, n_end);
  }
}

PAGODA_AVX2_TARGET float FmaPeakLoop(int64_t iterations) {
  __m256 one = _mm256_set1_ps(1.0f);
  const __m256 half = _mm256_set1_ps(0.5f);
  asm volatile("" : "+x"(one));  // opaque, so the FMAs are not folded into adds
  __m256 acc[kFmaPeakChains];
  for (__m256& c : acc) c = _mm256_setzero_ps();
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (__m256& c : acc) c = _mm256_fmadd_ps(one, half, c);
  }
  __m256 total = acc[0];
  for (int c = 1; c < kFmaPeakChains; ++c) total = _mm256_add_ps(total, acc[c]);
  return _mm256_cvtss_f32(total);
}

}  // namespace pagoda::kernels::cpu::avx2

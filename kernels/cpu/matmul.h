#pragma once

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace pagoda::kernels::cpu {

enum class WeightType { kF32, kBF16 };

// How a weight matrix [n, k] lies in memory. kRows: Hugging Face's row-major layout. kTiles
// (bf16 only, n a multiple of 16 and k of 32): the right operand of the AMX tiles, packed once
// at load, so that y = x * W^T runs on the tiles as it stands (x's rows the left operand, each
// weight tile one contiguous KiB, the sums leaving the tiles as rows of y): blocks of 16 rows
// (output columns) one after the other; within a block, its k / 32 tiles; within a tile, row p
// holds the 16 rows' values 2p and 2p + 1 of its 32 columns, pair by pair. Element (j, c) is at
// ((j / 16) * (k / 32) + c / 32) * 512 + (c % 32) / 2 * 32 + (j % 16) * 2 + c % 2. Every MatMul
// path reads both layouts (PackWeightsToTiles), to the same sums on the AMX tiles.
enum class WeightLayout { kRows, kTiles };

// y = x * W^T (+ bias): the linear layers of the model, weights in Hugging Face
// [out_features, in_features] layout.
struct MatMulArgs {
  const float* x = nullptr;  // [m, k] activations, row-major
  const void* w = nullptr;   // [n, k] weights: float or bf16 (uint16_t) per w_type
  WeightType w_type = WeightType::kF32;
  WeightLayout w_layout = WeightLayout::kRows;
  const float* bias = nullptr;  // [n] or nullptr
  float* y = nullptr;           // [m, n]; must not alias x
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  // True: y += x * W^T (+ bias), the residual added as the sums are stored (a pass over y
  // saved). Each element gets y + (sum + bias), so the result equals a separate add.
  bool accumulate = false;

  // y[i, j] = sum + bias[j], or y[i, j] + (sum + bias[j]) when accumulating: how every path
  // stores one output element.
  void StoreSum(int64_t i, int64_t j, float sum) const {
    float& out = y[i * n + j];
    const float value = sum + (bias != nullptr ? bias[j] : 0.0f);
    out = accumulate ? out + value : value;
  }
};

// Runs on `pool` (parallel over output features, so each weight row is read once per call
// whatever m is). Uses AVX-512 (with BF16 dot products for bf16 weights when m is large enough
// to be compute-bound, on AMX tiles where the CPU has them and the shape allows: n a multiple of
// 16, k of 32) where the CPU has it, AVX2+FMA otherwise, a portable loop last. `allow_amx` =
// false keeps AMX out (benchmarks compare the two). With bf16 weights and 4 rows or more, x is
// rounded to bf16 on every path (the bf16 dot products and the tiles multiply bf16; the f32
// paths round it first), so results differ between CPUs only in summation order; fewer rows
// (the bandwidth-bound decode) and f32 weights multiply x as it is.
void MatMul(const MatMulArgs& args, ThreadPool& pool, bool allow_amx = true);

// y[m, n] = silu(x * W_gate^T) * (x * W_up^T): the first half of the SwiGLU MLP, both weights
// [n, k] of one type.
struct GatedMatMulArgs {
  const float* x = nullptr;  // [m, k]
  const void* w_gate = nullptr;
  const void* w_up = nullptr;
  WeightType w_type = WeightType::kF32;
  WeightLayout w_layout = WeightLayout::kRows;  // of both
  float* y = nullptr;                           // [m, n]; must alias neither x nor scratch
  float* scratch = nullptr;                     // [m, n]: the up product, where it is written out
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
};

// On AMX tiles (where MatMul would take them) the two products share every tile of x and the
// activation is applied as the sums leave the tiles, so neither product is written out and no
// pass over them follows; elsewhere MatMul into y and scratch, then SiluAndMul on the pool. The
// same values either way: the products' sums are the ones MatMul computes.
void GatedMatMul(const GatedMatMulArgs& args, ThreadPool& pool, bool allow_amx = true);

// Whether a bf16 matrix [n, k] can be stored as WeightLayout::kTiles.
bool TilesLayoutFits(int64_t n, int64_t k);
// Whether storing bf16 matrices as kTiles speeds MatMul up on this CPU: it has AMX tiles.
bool TilesLayoutPays();
// Copies bf16 `rows` [n, k] (kRows) into `tiles` (n * k values, kTiles), on `pool`: AVX-512
// transposes where the CPU has it (allow_avx512 = false: the scalar loop, for tests).
// Requires TilesLayoutFits(n, k).
void PackWeightsToTiles(const uint16_t* rows, int64_t n, int64_t k, uint16_t* tiles,
                        ThreadPool& pool, bool allow_avx512 = true);
// Row `row` of a kTiles matrix of k columns, widened to f32 into out[0, k) (a packed table's
// lookup: kernels/cpu/elementwise.h, Embedding).
void UnpackTiledRow(const uint16_t* tiles, int64_t k, int64_t row, float* out);

// Whether MatMul (AMX allowed) runs `args` on AMX tiles on this CPU.
bool MatMulTakesAmx(const MatMulArgs& args);

// The portable loop only: the reference the vector paths are tested against.
void MatMulReference(const MatMulArgs& args);

// Which vector path MatMul takes on this CPU: "amx-bf16", "avx512bf16", "avx512", "avx2" or
// "portable" (for bf16 weights and enough rows; fewer rows and f32 weights take AVX-512 on the
// first two).
const char* MatMulIsa();

}  // namespace pagoda::kernels::cpu

#pragma once

#include <cstdint>

#include "kernels/cpu/matmul.h"

// The matmul for CPUs with AVX2 and FMA but no AVX-512 (AMD Zen 1-3, Intel before Skylake-SP,
// most desktop parts): f32 FMA over 8 lanes, bf16 weights widened exactly (a shift) as they are
// loaded, so the sums are the reference's up to summation order. Internal to
// kernels/cpu/matmul.cc, which dispatches here. Thread-compatible: each call writes only the
// output columns it is given.
namespace pagoda::kernels::cpu::avx2 {

// Each row of x [m, k] with its values split in pairs, per 16 (the whole 16s; the rest in
// place): the 8 even values, then the 8 odd ones, as Rows reads x against bf16 weights; each
// value rounded to bf16 on the way when `round_to_bf16` (MatMul's batched products).
void SplitPairs(const float* x, int64_t m, int64_t k, bool round_to_bf16, float* out);

// y[:, n_begin, n_end) of y = x * W^T (+ bias, + y when accumulating), weights in
// WeightLayout::kRows (f32 or bf16), on the calling thread; for bf16 weights `x_pairs` is
// SplitPairs(a.x) (unused for f32). A register-blocked micro-kernel: 3 weight rows against 4
// rows of x (12 accumulators), the 3 rows' values loaded once for the 4 rows; 6 weight rows
// against a single x row (the bandwidth-bound decode); the 3 x 4 tile's step is inline assembly,
// its registers fixed (GCC spilled accumulators from the intrinsics). bf16 weights are read 16 at a
// time as 8 pairs, the even values shifted into f32 and the odd ones masked (against x's even and
// odd values), half the widening work of 8 at a time. Weight rows are taken in blocks that stay in
// L2 while every 4-row group of x passes over them. Each output is the same, bit for bit, whatever
// the other rows of x in the call. Requires Supported() (kernels/cpu/avx2_math.h).
void Rows(const MatMulArgs& a, const float* x_pairs, int64_t n_begin, int64_t n_end);

// The FMA peak loop of the roofline (kernels/cpu/roofline.h): `iterations` rounds of
// kFmaPeakChains independent 8-lane vfmadd231ps (16 FLOP each), each adding 1 * 0.5 to its
// chain, on the calling thread. Returns a lane of the chains' sum: kFmaPeakChains * iterations / 2
// (exact below 2^24). Requires Supported().
inline constexpr int kFmaPeakChains = 10;
float FmaPeakLoop(int64_t iterations);

}  // namespace pagoda::kernels::cpu::avx2

#pragma once

#include <cstdint>

#include "kernels/cpu/matmul.h"

// The matmul for CPUs with AVX2 and FMA but no AVX-512 (AMD Zen 1-3, Intel before Skylake-SP,
// most desktop parts): f32 FMA over 8 lanes, bf16 weights widened exactly (a shift) as they are
// loaded, so the sums are the reference's up to summation order. Internal to
// kernels/cpu/matmul.cc, which dispatches here. Thread-compatible: each call writes only the
// output columns it is given.
namespace pagoda::kernels::cpu::avx2 {

// y[:, n_begin, n_end) of y = x * W^T (+ bias, + y when accumulating), weights in
// WeightLayout::kRows (f32 or bf16), on the calling thread. A register-blocked micro-kernel: 3
// weight rows against 4 rows of x (12 accumulators), the 3 rows' 8 values loaded once for the
// 4 rows; 6 weight rows against a single x row (the bandwidth-bound decode). Weight rows are
// taken in blocks that stay in L2 while every 4-row group of x passes over them. Requires
// Supported() (kernels/cpu/avx2_math.h).
void Rows(const MatMulArgs& a, int64_t n_begin, int64_t n_end);

// The FMA peak loop of the roofline (kernels/cpu/roofline.h): `iterations` rounds of
// kFmaPeakChains independent 8-lane vfmadd231ps (16 FLOP each), each adding 1 * 0.5 to its
// chain, on the calling thread. Returns a lane of the chains' sum: kFmaPeakChains * iterations / 2
// (exact below 2^24). Requires Supported().
inline constexpr int kFmaPeakChains = 10;
float FmaPeakLoop(int64_t iterations);

}  // namespace pagoda::kernels::cpu::avx2

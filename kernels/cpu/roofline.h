#pragma once

// The machine's own limits, measured, so that kernel benchmarks report their results as a
// fraction of what this CPU can do (issue: "kernels close to the machine's limits"):
// - read bandwidth: a STREAM-like sum over a buffer far larger than the caches, each thread
//   reading its own contiguous part;
// - the bf16 dot-product peak: independent vdpbf16ps chains (AVX-512 BF16), enough of them to
//   hide the instruction's latency, on register-resident data;
// - where the CPU has AMX, the tiles' bf16 peak: independent TDPBF16PS on register tiles;
// - the f32 FMA peak of 8-lane vfmadd231ps chains (AVX2+FMA): the bound of the matmul on CPUs
//   without AVX-512 BF16, which multiplies in f32 (kernels/cpu/matmul_avx2.h).
// Thread-compatible: each call uses the pool it is given.

#include <cstdint>

#include "kernels/cpu/thread_pool.h"

namespace pagoda::kernels::cpu {

// Whether this CPU has AVX-512 BF16 (vdpbf16ps).
bool HasAvx512Bf16();

// Sums `floats` floats from `data` on the pool's threads (each its own contiguous part) and
// returns the sum (so the reads cannot be optimized away; tests check it against a reference).
double ReadSum(const float* data, int64_t floats, ThreadPool& pool);

// Runs `iterations` rounds of the peak loop on each of the pool's threads and returns what one
// accumulator lane holds at the end, the same on every thread (tests check it against the
// closed form). Each round is kChains vdpbf16ps, 64 FLOP each. Needs HasAvx512Bf16().
inline constexpr int kBf16PeakChains = 12;
float Bf16PeakLoop(int64_t iterations, ThreadPool& pool);

// The same for the FMA peak: kernels/cpu/matmul_avx2.h, FmaPeakLoop, on each of the pool's
// threads. Each round is avx2::kFmaPeakChains FMAs of 16 FLOP. Returns 0 without AVX2+FMA.
float FmaPeakLoop(int64_t iterations, ThreadPool& pool);

struct Roofline {
  double read_gb_per_s = 0;     // read bandwidth of the pool's threads, GB/s (1e9 bytes)
  double bf16_gflop_per_s = 0;  // bf16 dot-product peak of the pool's threads; 0 without BF16
  double amx_gflop_per_s = 0;   // AMX bf16 tile peak of the pool's threads; 0 without AMX
  double fma_gflop_per_s = 0;   // f32 8-lane FMA peak of the pool's threads; 0 without AVX2+FMA
};

// Measures them on the pool's threads: the best of `repeats` runs of each (`buffer_bytes` to
// read; about 0.1 s of dot products).
Roofline MeasureRoofline(ThreadPool& pool, int64_t buffer_bytes = int64_t{512} << 20,
                         int repeats = 5);

// MeasureRoofline on `threads` threads (256 MiB, best of 3), measured once per thread count and
// kept: what a kernel benchmark divides its results by. Thread-safe.
const Roofline& MeasuredRoofline(int threads);

}  // namespace pagoda::kernels::cpu

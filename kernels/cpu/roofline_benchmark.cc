// The machine's limits for the kernel benchmarks (kernels/cpu/roofline.h): read bandwidth, the
// bf16 dot-product peak, the f32 FMA peak and (where the CPU has AMX) the tiles' bf16 peak, with
// 1 thread and 2.
//
//   ./build/kernels/roofline_benchmark

#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/roofline.h"
#include "kernels/cpu/thread_pool.h"

namespace pagoda::kernels::cpu {
namespace {

void BM_Roofline(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  Roofline best;
  for (auto _ : state) {
    const Roofline r = MeasureRoofline(pool, state.range(1) << 20, 3);
    best.read_gb_per_s = std::max(best.read_gb_per_s, r.read_gb_per_s);
    best.bf16_gflop_per_s = std::max(best.bf16_gflop_per_s, r.bf16_gflop_per_s);
    best.amx_gflop_per_s = std::max(best.amx_gflop_per_s, r.amx_gflop_per_s);
    best.fma_gflop_per_s = std::max(best.fma_gflop_per_s, r.fma_gflop_per_s);
  }
  state.counters["read_GB_per_s"] = best.read_gb_per_s;
  state.counters["bf16_GFLOP_per_s"] = best.bf16_gflop_per_s;
  state.counters["fma_GFLOP_per_s"] = best.fma_gflop_per_s;
  if (best.amx_gflop_per_s > 0) state.counters["amx_GFLOP_per_s"] = best.amx_gflop_per_s;
}
BENCHMARK(BM_Roofline)
    ->ArgNames({"threads", "MiB"})
    ->Args({1, 256})
    ->Args({2, 256})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// The sum of `words` 8-byte words read as runs of `run` words every `stride` words, every phase
// of the stride in turn (so all of them, once).
uint64_t SumRuns(const uint64_t* base, size_t words, size_t run, size_t stride) {
  uint64_t sum = 0;
  for (size_t phase = 0; phase < stride; phase += run) {
    for (size_t at = phase; at + run <= words; at += stride) {
      for (size_t i = 0; i < run; ++i) sum += base[at + i];
    }
  }
  return sum;
}

// The reads of decode attention: a task streams one KV head's tile of each block (block_size x
// head_dim elements: 1 KiB of int8 or 2 KiB of bf16 at llama-110m's 16 x 64), the other heads'
// tiles of the block lying between (12 heads: a stride of 12 or 24 KiB). 2 threads, 64 MiB
// each, as such runs and, for comparison in the same run, as runs as long as the stride (the
// whole buffer in order). On the Zen 1 machine of docs/benchmarks.md the 1-2 KiB runs read at
// about half the rate of the contiguous ones: the wall the decode kernels stand at.
void BM_ReadTiles(benchmark::State& state) {
  const size_t run = static_cast<size_t>(state.range(0)) / 8;
  const size_t stride = static_cast<size_t>(state.range(1)) / 8;
  constexpr size_t kWords = (64 << 20) / 8;
  ThreadPool pool(2);
  std::vector<std::vector<uint64_t>> buffers(2, std::vector<uint64_t>(kWords, 1));
  std::vector<uint64_t> sums(2);
  for (auto _ : state) {
    pool.ParallelFor(2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        sums[t] += SumRuns(buffers[t].data(), kWords, run, stride);
    });
  }
  benchmark::DoNotOptimize(sums);
  const double bytes = 2.0 * kWords * 8;
  state.counters["read_GB_per_s"] = benchmark::Counter(
      bytes * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReadTiles)
    ->ArgNames({"run", "stride"})
    ->Args({1024, 12288})
    ->Args({2048, 24576})
    ->Args({12288, 12288})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

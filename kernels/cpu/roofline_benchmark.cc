// The machine's limits for the kernel benchmarks (kernels/cpu/roofline.h): read bandwidth, the
// bf16 dot-product peak, the f32 FMA peak and (where the CPU has AMX) the tiles' bf16 peak, with
// 1 thread and 2.
//
//   ./build/kernels/roofline_benchmark

#include "benchmark/benchmark.h"
#include "kernels/cpu/roofline.h"

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

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

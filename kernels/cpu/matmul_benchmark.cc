// MatMul throughput for the shapes of llama-110m's decode (k = 768; n = 2048 fits in cache,
// n = 32000 is the lm_head and streams from memory), single-threaded so the
// figure reads as per-core efficiency: GFLOP/s and weight GB/s, m = 1 (bandwidth-bound) to
// m = 16 (compute-bound); also as fractions of this machine's measured single-thread limits
// (of_bf16_peak, of_read_bw: kernels/cpu/roofline.h). BM_MatMulShapes: the projections of
// llama-110m (k, n in 768, 2048, 32000) and TinyLlama (2048, 5632) at decode and prefill
// batches, with AMX tiles allowed (amx:1, where the CPU has them) and not (amx:0), in the same
// run.
//
//   ./build/kernels/matmul_benchmark

#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/roofline.h"

namespace pagoda::kernels::cpu {
namespace {

void BM_MatMul(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(2);
  const int64_t k = state.range(3) > 0 ? state.range(3) : 768;
  const bool allow_amx = state.range(4) != 0;
  const auto type = static_cast<WeightType>(state.range(1));
  std::vector<float> x(m * k, 0.5f), y(m * n);
  std::vector<uint16_t> w16(n * k, FloatToBf16(0.25f));
  std::vector<float> w32(n * k, 0.25f);
  ThreadPool pool(1);
  const MatMulArgs args{.x = x.data(),
                        .w = type == WeightType::kBF16 ? static_cast<const void*>(w16.data())
                                                       : static_cast<const void*>(w32.data()),
                        .w_type = type,
                        .y = y.data(),
                        .m = m,
                        .n = n,
                        .k = k};
  for (auto _ : state) {
    MatMul(args, pool, allow_amx);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * m * n * k;
  const double weight_bytes = static_cast<double>(n * k) * (type == WeightType::kBF16 ? 2 : 4);
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB_per_s"] =
      benchmark::Counter(weight_bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  // The same rates as fractions of the machine's limits: of the bf16 dot peak (the bound at
  // large m) and of the read bandwidth (the bound at m = 1).
  const Roofline& roof = MeasuredRoofline(1);
  if (roof.bf16_gflop_per_s > 0) {
    state.counters["of_bf16_peak"] = benchmark::Counter(
        flops / (roof.bf16_gflop_per_s * 1e9), benchmark::Counter::kIsIterationInvariantRate);
  }
  // On AMX tiles (bf16 weights, m >= 4, n a multiple of 16 and k of 32): of their peak.
  if (allow_amx && roof.amx_gflop_per_s > 0 && type == WeightType::kBF16 && m >= 4 && n % 16 == 0 &&
      k % 32 == 0) {
    state.counters["of_amx_peak"] = benchmark::Counter(
        flops / (roof.amx_gflop_per_s * 1e9), benchmark::Counter::kIsIterationInvariantRate);
  }
  state.counters["of_read_bw"] = benchmark::Counter(weight_bytes / (roof.read_gb_per_s * 1e9),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}
constexpr int kBf16 = static_cast<int>(WeightType::kBF16);
BENCHMARK(BM_MatMul)
    ->ArgNames({"m", "type", "n", "k", "amx"})
    ->ArgsProduct({{1, 2, 4, 8, 16}, {kBf16}, {2048, 32000}, {768}, {1}})
    ->ArgsProduct({{1, 16}, {static_cast<int>(WeightType::kF32)}, {2048}, {768}, {0}})
    ->Unit(benchmark::kMicrosecond);
// (n, k): llama-110m's q/k/v/o (768, 768), gate/up (2048, 768), down (768, 2048), lm_head
// (32000, 768); TinyLlama's gate/up (5632, 2048) and down (2048, 5632).
BENCHMARK(BM_MatMul)
    ->Name("BM_MatMulShapes")
    ->ArgNames({"m", "type", "n", "k", "amx"})
    ->ArgsProduct({{16, 128}, {kBf16}, {768}, {768}, {0, 1}})
    ->ArgsProduct({{16, 128}, {kBf16}, {2048}, {768}, {0, 1}})
    ->ArgsProduct({{16, 128}, {kBf16}, {768}, {2048}, {0, 1}})
    ->ArgsProduct({{16}, {kBf16}, {32000}, {768}, {0, 1}})
    ->ArgsProduct({{16, 128}, {kBf16}, {5632}, {2048}, {0, 1}})
    ->ArgsProduct({{16, 128}, {kBf16}, {2048}, {5632}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

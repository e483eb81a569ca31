// Pagoda's bf16 MatMul against oneDNN's bf16 matmul on the same shapes, in the same run, one
// thread (issue 25: "compare, in the same benchmark, with oneDNN's bf16 matmul"). Built only
// where CMake finds oneDNN (Debian's libdnnl-dev; not a dependency of the project):
//
//   sudo apt-get install libdnnl-dev && cmake -S . -B build   # then:
//   OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX ./build/kernels/matmul_onednn_benchmark
//
// impl: 0 = Pagoda (AMX where the CPU has it), 1 = Pagoda without AMX, 2 = oneDNN with the
// weights as they are ([n, k] row-major, as Pagoda reads them), 3 = oneDNN with the weights
// reordered once, outside the timed loop, into the layout it prefers. oneDNN gets its
// activations already in bf16; Pagoda rounds them from f32 inside MatMul (counted in its time).

#include <oneapi/dnnl/dnnl.hpp>

#include <string>
#include <unordered_map>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/roofline.h"

namespace pagoda::kernels::cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

void Report(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  const double flops = 2.0 * m * n * k;
  state.counters["GFLOP_per_s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  const Roofline& roof = MeasuredRoofline(1);
  const double peak = roof.amx_gflop_per_s > 0 ? roof.amx_gflop_per_s : roof.bf16_gflop_per_s;
  if (peak > 0) {
    state.counters["of_peak"] = benchmark::Counter(flops / (peak * 1e9),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  }
}

void RunPagoda(benchmark::State& state, int64_t m, int64_t n, int64_t k, bool allow_amx) {
  std::vector<float> x(m * k, 0.5f), y(m * n);
  std::vector<uint16_t> w(n * k, FloatToBf16(0.25f));
  ThreadPool pool(1);
  const MatMulArgs args{.x = x.data(),
                        .w = w.data(),
                        .w_type = WeightType::kBF16,
                        .y = y.data(),
                        .m = m,
                        .n = n,
                        .k = k};
  for (auto _ : state) {
    MatMul(args, pool, allow_amx);
    benchmark::ClobberMemory();
  }
}

void RunOneDnn(benchmark::State& state, int64_t m, int64_t n, int64_t k, bool reorder) {
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc src_md({m, k}, dt::bf16, tag::ab);
  const dnnl::memory::desc plain_weights_md({k, n}, dt::bf16, tag::ba);  // W [n, k] row-major
  const dnnl::memory::desc dst_md({m, n}, dt::f32, tag::ab);
  const dnnl::memory::desc weights_md =
      reorder ? dnnl::memory::desc({k, n}, dt::bf16, tag::any) : plain_weights_md;
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, weights_md, dst_md), engine);
  std::vector<uint16_t> x(m * k, FloatToBf16(0.5f)), w(n * k, FloatToBf16(0.25f));
  std::vector<float> y(m * n);
  dnnl::memory src(src_md, engine, x.data());
  dnnl::memory plain_weights(plain_weights_md, engine, w.data());
  dnnl::memory dst(dst_md, engine, y.data());
  dnnl::memory weights = plain_weights;
  if (pd.weights_desc() != plain_weights_md) {
    weights = dnnl::memory(pd.weights_desc(), engine);
    dnnl::reorder(plain_weights, weights).execute(stream, plain_weights, weights);
    stream.wait();
  }
  const dnnl::matmul matmul(pd);
  const std::unordered_map<int, dnnl::memory> io = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
  for (auto _ : state) {
    matmul.execute(stream, io);
    stream.wait();
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string("oneDNN ") + pd.impl_info_str());
}

void BM_MatMulVsOneDnn(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  switch (state.range(3)) {
    case 0:
      RunPagoda(state, m, n, k, /*allow_amx=*/true);
      state.SetLabel(MatMulIsa());
      break;
    case 1:
      RunPagoda(state, m, n, k, /*allow_amx=*/false);
      state.SetLabel("pagoda without AMX");
      break;
    default:
      RunOneDnn(state, m, n, k, /*reorder=*/state.range(3) == 3);
      break;
  }
  Report(state, m, n, k);
}
BENCHMARK(BM_MatMulVsOneDnn)
    ->ArgNames({"m", "n", "k", "impl"})
    ->ArgsProduct({{16, 128}, {2048}, {768}, {0, 1, 2, 3}})
    ->ArgsProduct({{16, 128}, {768}, {2048}, {0, 1, 2, 3}})
    ->ArgsProduct({{16}, {32000}, {768}, {0, 1, 2, 3}})
    ->ArgsProduct({{16, 128}, {5632}, {2048}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

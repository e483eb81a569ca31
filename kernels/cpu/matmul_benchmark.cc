// MatMul throughput for the shapes of llama-110m's decode (k = 768; n = 2048 fits in cache,
// n = 32000 is the lm_head and streams from memory), single-threaded so the
// figure reads as per-core efficiency: GFLOP/s and weight GB/s, m = 1 (bandwidth-bound) to
// m = 16 (compute-bound); also as fractions of this machine's measured single-thread limits
// (of_bf16_peak, of_read_bw, and of_fma_peak where the CPU has AVX2 but no AVX-512:
// kernels/cpu/roofline.h). BM_MatMulShapes: the projections of
// llama-110m (k, n in 768, 2048, 32000) and TinyLlama (2048, 5632) at decode and prefill
// batches, with AMX tiles allowed (amx:1, where the CPU has them) and not (amx:0), in the same
// run; BM_MatMulShapesTiled, the same on weights packed at load into WeightLayout::kTiles;
// BM_OneDnn, the same shapes through oneDNN, where CMake found Debian's libdnnl-dev (a
// peer to measure against, not a dependency).
//
//   ./build/kernels/matmul_benchmark
//   # with oneDNN, one command:
//   OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX ./build/kernels/matmul_benchmark
//       --benchmark_filter='Shapes|OneDnn'

#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#if PAGODA_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "benchmark/benchmark.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/roofline.h"
#include "kernels/cpu/roofline_counters.h"

namespace pagoda::kernels::cpu {
namespace {

// `tiled`: the weights packed once (outside the timed loop) into WeightLayout::kTiles.
void RunMatMul(benchmark::State& state, bool tiled) {
  const int64_t m = state.range(0), n = state.range(2);
  const int64_t k = state.range(3) > 0 ? state.range(3) : 768;
  const bool allow_amx = state.range(4) != 0;
  const auto type = static_cast<WeightType>(state.range(1));
  std::vector<float> x(m * k, 0.5f), y(m * n);
  std::vector<uint16_t> w16(n * k, FloatToBf16(0.25f));
  std::vector<float> w32(n * k, 0.25f);
  ThreadPool pool(1);
  MatMulArgs args{.x = x.data(),
                  .w = type == WeightType::kBF16 ? static_cast<const void*>(w16.data())
                                                 : static_cast<const void*>(w32.data()),
                  .w_type = type,
                  .y = y.data(),
                  .m = m,
                  .n = n,
                  .k = k};
  std::vector<uint16_t> tiles;
  if (tiled) {
    if (type != WeightType::kBF16 || !TilesLayoutFits(n, k)) {
      state.SkipWithError("the tiles layout takes bf16 with n % 16 == 0 and k % 32 == 0");
      return;
    }
    // LlamaModel packs tiles only where they pay (AMX); elsewhere this layout runs a fallback
    // no model uses, and timing it measures nothing a user sees.
    if (!TilesLayoutPays()) {
      state.SkipWithError("the tiles layout is used only where the CPU has AMX tiles");
      return;
    }
    tiles.resize(w16.size());
    PackWeightsToTiles(w16.data(), n, k, tiles.data(), pool);
    args.w = tiles.data();
    args.w_layout = WeightLayout::kTiles;
  }
  for (auto _ : state) {
    MatMul(args, pool, allow_amx);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * m * n * k;
  const double weight_bytes = static_cast<double>(n * k) * (type == WeightType::kBF16 ? 2 : 4);
  SetRate(state, "GFLOP_per_s", flops / 1e9);
  SetRate(state, "weight_GB_per_s", weight_bytes / 1e9);
  // The same rates as fractions of the machine's limits: of the bf16 dot peak (the bound at
  // large m), on AMX tiles of their peak, and of the read bandwidth (the bound at m = 1).
  const Roofline& roof = MeasuredRoofline(1);
  SetFractionOf(state, "of_bf16_peak", flops, roof.bf16_gflop_per_s * 1e9);
  if (allow_amx && MatMulTakesAmx(args)) {
    SetFractionOf(state, "of_amx_peak", flops, roof.amx_gflop_per_s * 1e9);
  }
  SetFractionOf(state, "of_read_bw", weight_bytes, roof.read_gb_per_s * 1e9);
  // Without AVX-512 the product runs in f32 on 8-lane FMAs (kernels/cpu/matmul_avx2.h).
  if (std::string(MatMulIsa()) == "avx2") {
    SetFractionOf(state, "of_fma_peak", flops, roof.fma_gflop_per_s * 1e9);
  }
}
void BM_MatMul(benchmark::State& state) { RunMatMul(state, /*tiled=*/false); }
void BM_MatMulTiled(benchmark::State& state) { RunMatMul(state, /*tiled=*/true); }
constexpr int kBf16 = static_cast<int>(WeightType::kBF16);
BENCHMARK(BM_MatMul)
    ->ArgNames({"m", "type", "n", "k", "amx"})
    ->ArgsProduct({{1, 2, 4, 8, 16}, {kBf16}, {2048, 32000}, {768}, {1}})
    ->ArgsProduct({{1, 16}, {static_cast<int>(WeightType::kF32)}, {2048}, {768}, {0}})
    ->Unit(benchmark::kMicrosecond);
// (n, k): llama-110m's q/k/v/o (768, 768), gate/up (2048, 768), down (768, 2048), lm_head
// (32000, 768); TinyLlama's gate/up (5632, 2048) and down (2048, 5632); each with the values
// `last` of the last argument, named `last_name`.
void ModelShapes(benchmark::internal::Benchmark* b, const std::string& last_name,
                 const std::vector<int64_t>& last) {
  b->ArgNames({"m", "type", "n", "k", last_name});
  b->ArgsProduct({{16, 128}, {kBf16}, {768}, {768}, last});
  b->ArgsProduct({{16, 128}, {kBf16}, {2048}, {768}, last});
  b->ArgsProduct({{16, 128}, {kBf16}, {768}, {2048}, last});
  b->ArgsProduct({{16}, {kBf16}, {32000}, {768}, last});
  b->ArgsProduct({{16, 128}, {kBf16}, {5632}, {2048}, last});
  b->ArgsProduct({{16, 128}, {kBf16}, {2048}, {5632}, last});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_MatMul)->Name("BM_MatMulShapes")->Apply([](benchmark::internal::Benchmark* b) {
  ModelShapes(b, "amx", {0, 1});
});
// The same shapes on weights packed into the tiles' order (what LlamaModel does at load where
// the CPU has AMX), and the decode rows (m = 1, 2: the exact f32 path reading tiles).
BENCHMARK(BM_MatMulTiled)
    ->Name("BM_MatMulShapesTiled")
    ->Apply([](benchmark::internal::Benchmark* b) { ModelShapes(b, "amx", {1}); })
    ->ArgsProduct({{1, 2}, {kBf16}, {2048, 32000}, {768}, {1}});
// Prompt-sized products at the 1B-class shapes (TinyLlama, Llama-3.2-1B: hidden 2,048,
// intermediate 5,632-8,192), where x's rows no longer fit in L2: as stored and packed.
void PromptShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "type", "n", "k", "amx"});
  b->ArgsProduct({{512, 1024}, {kBf16}, {2048, 8192}, {2048}, {1}});
  b->ArgsProduct({{512, 1024}, {kBf16}, {2048}, {8192}, {1}});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_MatMul)->Name("BM_MatMulPrompt")->Apply(PromptShapes);
BENCHMARK(BM_MatMulTiled)->Name("BM_MatMulPromptTiled")->Apply(PromptShapes);

#if PAGODA_WITH_ONEDNN
// oneDNN's matmul of [m, k] x [n, k]^T into f32 (its weights [n, k] row-major, or with
// `reordered` in the layout it prefers), in bf16 where it has that and in f32 otherwise (its bf16
// matmul needs AVX-512; on an AVX2 CPU its C++ API throws rather than return one), or none. Also
// sets `plain_weights` to the weights' row-major descriptor in the type chosen.
std::optional<dnnl::matmul::primitive_desc> FindOneDnnMatMul(int64_t m, int64_t n, int64_t k,
                                                             bool reordered,
                                                             const dnnl::engine& engine,
                                                             dnnl::memory::desc* plain_weights) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dnnl::memory::desc dst({m, n}, dt::f32, tag::ab);
  for (const dt type : {dt::bf16, dt::f32}) {
    const dnnl::memory::desc src({m, k}, type, tag::ab);
    *plain_weights = dnnl::memory::desc({k, n}, type, tag::ba);
    const dnnl::memory::desc weights =
        reordered ? dnnl::memory::desc({k, n}, type, tag::any) : *plain_weights;
    try {
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), engine);
    } catch (const dnnl::error&) {
      continue;
    }
  }
  return std::nullopt;
}

// The same shapes through oneDNN's bf16 matmul, the peer issue 25 compares with: reordered:0
// reads the weights as stored ([n, k] row-major, as Pagoda does), reordered:1 after reordering
// them once, outside the timed loop, into the layout oneDNN prefers. oneDNN gets its
// activations already in bf16; Pagoda rounds them from f32 inside MatMul (counted in its time).
// Where oneDNN has no bf16 matmul (CPUs without AVX-512), its f32 matmul on the same values
// instead (twice the weight bytes), labelled so.
void BM_OneDnn(benchmark::State& state) {
  using dt = dnnl::memory::data_type;
  const int64_t m = state.range(0), n = state.range(2), k = state.range(3);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  dnnl::memory::desc plain_weights_md;
  const std::optional<dnnl::matmul::primitive_desc> pd =
      FindOneDnnMatMul(m, n, k, state.range(4) != 0, engine, &plain_weights_md);
  if (!pd.has_value()) {
    state.SkipWithError("oneDNN has no bf16 or f32 matmul for this shape on this CPU");
    return;
  }
  const bool bf16 = pd->src_desc().data_type() == dt::bf16;
  // x = 0.5 and W = 0.25 in the type the primitive reads (only that one allocated: the lm_head's
  // f32 weights alone are 98 MB).
  std::vector<uint16_t> x16, w16;
  std::vector<float> x32, w32;
  void* x = nullptr;
  void* w = nullptr;
  if (bf16) {
    x16.assign(m * k, FloatToBf16(0.5f));
    w16.assign(n * k, FloatToBf16(0.25f));
    x = x16.data();
    w = w16.data();
  } else {
    x32.assign(m * k, 0.5f);
    w32.assign(n * k, 0.25f);
    x = x32.data();
    w = w32.data();
  }
  std::vector<float> y(m * n);
  dnnl::memory src(pd->src_desc(), engine, x);
  dnnl::memory plain_weights(plain_weights_md, engine, w);
  dnnl::memory dst(pd->dst_desc(), engine, y.data());
  dnnl::memory weights = plain_weights;
  if (pd->weights_desc() != plain_weights_md) {
    weights = dnnl::memory(pd->weights_desc(), engine);
    dnnl::reorder(plain_weights, weights).execute(stream, plain_weights, weights);
    stream.wait();
  }
  const dnnl::matmul matmul(*pd);
  const std::unordered_map<int, dnnl::memory> io = {
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
  for (auto _ : state) {
    matmul.execute(stream, io);
    stream.wait();
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(bf16 ? "oneDNN bf16 " : "oneDNN f32 (no bf16 matmul here) ") +
                 pd->impl_info_str());
  SetRate(state, "GFLOP_per_s", 2.0 * m * n * k / 1e9);
}
BENCHMARK(BM_OneDnn)->Apply([](benchmark::internal::Benchmark* b) {
  ModelShapes(b, "reordered", {0, 1});
});
#endif

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

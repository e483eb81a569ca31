// Paged attention of a decode batch: B requests, one query token each, over a context of L
// tokens, llama-110m's shape (12 heads, head_dim 64), block size 16, an f32, bf16, int8, FP8 E4M3
// or FP8 E5M2 KV cache; the KV bytes read per second also as a fraction of the machine's measured
// read bandwidth. Contexts 128, 1,024 and 4,096 (batch 16 x 4,096 is 200 MB of bf16 K/V).
//
// BM_PagedAttentionPrefill: one prompt of L tokens attending causally to itself (a whole
// prefill, bf16 or int8 cache, same shape), by path: 0 one query at a time, 1 the AVX-512 query
// blocks, 2 the AMX query blocks (where the CPU has them); reported as a fraction of the bf16
// dot-product peak (and of the AMX tile peak; on a CPU without AVX-512, path 1 takes the AVX2
// blocks, of the f32 FMA peak). BM_PagedAttentionChunk: short chunks against a long context, by
// path, where the blocks start to pay.
//
//   ./build/kernels/paged_attention_benchmark

#include <algorithm>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/matmul_amx.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/roofline.h"
#include "kernels/cpu/roofline_counters.h"

namespace pagoda::kernels::cpu {
namespace {

// The shape: llama-110m's attention (12 heads of 64, one KV head each), blocks of 16 tokens.
constexpr int kHeads = 12, kDim = 64, kBlock = 16;

// The K and V of `num_blocks` blocks (for the caller to fill) and, for the 8-bit types, one bf16
// scale per token and head, `scale`, shared by K and V.
template <typename T>
struct BenchCache {
  BenchCache(int blocks, float scale)
      : k(static_cast<size_t>(blocks) * kHeads * kBlock * kDim),
        v(k.size()),
        scales(static_cast<size_t>(blocks) * kHeads * kBlock, FloatToBf16(scale)),
        num_blocks(blocks) {}

  PagedKvCacheView<T> View() {
    uint16_t* s = kScaled<T> ? scales.data() : nullptr;
    return {k.data(), v.data(), num_blocks, kHeads, kBlock, kDim, s, s};
  }

  // Attention of `q` ([tokens, kHeads, kDim]) over this cache into `out`, 1 / sqrt(kDim) scale.
  PagedAttentionArgs<T> Args(const std::vector<float>& q, std::vector<float>& out,
                             const std::vector<int32_t>& query_start,
                             const std::vector<int32_t>& context_lens,
                             const std::vector<int32_t>& block_tables, int max_blocks_per_request) {
    return {.query = q.data(),
            .output = out.data(),
            .num_heads = kHeads,
            .cache = View(),
            .query_start = query_start,
            .context_lens = context_lens,
            .block_tables = block_tables,
            .max_blocks_per_request = max_blocks_per_request,
            .scale = 0.125f};
  }

  // K and V random: int8 uniform over its range, the others N(0, 1) encoded.
  void FillRandom(std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (size_t i = 0; i < k.size(); ++i) {
      if constexpr (std::is_same_v<T, int8_t>) {
        k[i] = static_cast<int8_t>(rng() % 255 - 127);
        v[i] = static_cast<int8_t>(rng() % 255 - 127);
      } else {
        FromFloat(dist(rng), &k[i]);
        FromFloat(dist(rng), &v[i]);
      }
    }
  }

  std::vector<T> k, v;
  std::vector<uint16_t> scales;
  int num_blocks;
};

template <typename T>
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const int context = static_cast<int>(state.range(1));
  const int blocks_per_seq = (context + kBlock - 1) / kBlock;
  const int num_blocks = batch * blocks_per_seq;
  T element{};
  if constexpr (std::is_same_v<T, int8_t>) {
    element = 1;
  } else {
    FromFloat(0.01f, &element);
  }
  BenchCache<T> cache(num_blocks, 0.01f);
  std::fill(cache.k.begin(), cache.k.end(), element);
  std::fill(cache.v.begin(), cache.v.end(), element);
  std::vector<float> q(static_cast<size_t>(batch) * kHeads * kDim, 0.1f), out(q.size());
  std::vector<int32_t> tables(num_blocks), query_start(batch + 1), lens(batch, context);
  std::iota(tables.begin(), tables.end(), 0);
  std::iota(query_start.begin(), query_start.end(), 0);
  ThreadPool pool(2);
  const PagedAttentionArgs<T> args = cache.Args(q, out, query_start, lens, tables, blocks_per_seq);
  for (auto _ : state) PagedAttention(args, pool);
  // K and V, with the 8-bit types' scales (2 bytes per token and head each).
  const double kv_bytes =
      2.0 * batch * context * kHeads * (kDim * sizeof(T) + (kScaled<T> ? 2 : 0));
  SetRate(state, "KV_GB_per_s", kv_bytes / 1e9);
  // Decode attention reads every K and V once: bound by the read bandwidth (a KV set that fits
  // in cache can pass 1).
  SetFractionOf(state, "of_read_bw", kv_bytes, MeasuredRoofline(2).read_gb_per_s * 1e9);
}
#define PAGODA_DECODE_BENCHMARK(T)                \
  BENCHMARK(BM_PagedAttentionDecode<T>)           \
      ->ArgsProduct({{1, 16}, {128, 1024, 4096}}) \
      ->Unit(benchmark::kMicrosecond)             \
      ->UseRealTime()
PAGODA_DECODE_BENCHMARK(float);
PAGODA_DECODE_BENCHMARK(Bf16);
PAGODA_DECODE_BENCHMARK(int8_t);
PAGODA_DECODE_BENCHMARK(Fp8E4M3);
PAGODA_DECODE_BENCHMARK(Fp8E5M2);

// Prefill attention: FLOPs 2 (QK) + 2 (PV) per query, key and head dim, over the causal
// triangle. T: the cache's element type (bf16, or int8 with its per-token scales).
template <typename T>
void BM_PagedAttentionPrefill(benchmark::State& state) {
  const int len = static_cast<int>(state.range(0));
  const int path = static_cast<int>(state.range(1));
  const bool amx = path == 2;
  if (amx && !amx::Available()) {
    state.SkipWithError("no AMX on this CPU");
    return;
  }
  const int blocks = (len + kBlock - 1) / kBlock;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  BenchCache<T> cache(blocks, 0.02f);
  cache.FillRandom(rng);
  std::vector<float> q(static_cast<size_t>(len) * kHeads * kDim), out(q.size());
  for (float& x : q) x = dist(rng);
  std::vector<int32_t> tables(blocks), query_start = {0, len}, lens = {len};
  std::iota(tables.begin(), tables.end(), 0);
  ThreadPool pool(2);
  PagedAttentionArgs<T> args = cache.Args(q, out, query_start, lens, tables, blocks);
  args.allow_amx = amx;
  args.allow_query_blocks = path != 0;
  for (auto _ : state) PagedAttention(args, pool);
  const double flop = 4.0 * kDim * kHeads * (static_cast<double>(len) * (len + 1) / 2);
  SetRate(state, "GFLOP_per_s", flop / 1e9);
  const Roofline& roof = MeasuredRoofline(2);
  SetFractionOf(state, "of_bf16_peak", flop, roof.bf16_gflop_per_s * 1e9);
  SetFractionOf(state, "of_amx_peak", flop, roof.amx_gflop_per_s * 1e9);
  if (!avx512::Supported()) SetFractionOf(state, "of_fma_peak", flop, roof.fma_gflop_per_s * 1e9);
}
// A step's short prompt chunks (or speculative tokens): 8 requests of `queries` queries at the
// end of a 1,024-token context (bf16 cache), on the query blocks (path 1: AVX-512, or AVX2 on a
// CPU without it) or one query at a time (path 0). Where the blocks start to win sets
// blocks::MinQueries.
void BM_PagedAttentionChunk(benchmark::State& state) {
  constexpr int kRequests = 8, kContext = 1024;
  const int queries = static_cast<int>(state.range(0));
  const int per_request = kContext / kBlock;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  BenchCache<Bf16> cache(kRequests * per_request, 0.0f);
  cache.FillRandom(rng);
  std::vector<float> q(static_cast<size_t>(kRequests) * queries * kHeads * kDim), out(q.size());
  for (float& x : q) x = dist(rng);
  std::vector<int32_t> tables(kRequests * per_request), query_start = {0}, lens;
  std::iota(tables.begin(), tables.end(), 0);
  for (int r = 0; r < kRequests; ++r) {
    query_start.push_back(query_start.back() + queries);
    lens.push_back(kContext);
  }
  ThreadPool pool(2);
  PagedAttentionArgs<Bf16> args = cache.Args(q, out, query_start, lens, tables, per_request);
  args.allow_amx = false;
  args.allow_query_blocks = state.range(1) != 0;
  for (auto _ : state) PagedAttention(args, pool);
  state.counters["us_per_query"] =
      benchmark::Counter(kRequests * queries, benchmark::Counter::kIsIterationInvariantRate |
                                                  benchmark::Counter::kInvert);
}
BENCHMARK(BM_PagedAttentionChunk)
    ->ArgsProduct({{2, 4, 8, 16}, {1, 0}})
    ->ArgNames({"queries", "path"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

BENCHMARK(BM_PagedAttentionPrefill<Bf16>)
    ->ArgsProduct({{512, 1024, 2048}, {2, 1, 0}})
    ->ArgNames({"len", "path"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PagedAttentionPrefill<int8_t>)
    ->ArgsProduct({{512, 2048}, {2, 1, 0}})
    ->ArgNames({"len", "path"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace pagoda::kernels::cpu

BENCHMARK_MAIN();

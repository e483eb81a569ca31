// Decode throughput of the CPU forward pass, against the machine's memory bandwidth measured in
// the same run.
//
//   ./build/model/llama_model_benchmark                      # llama-110m, BF16 weights
//   ./build/model/llama_model_benchmark --benchmark_filter=Context
//
// BM_MemoryBandwidth: read bandwidth of a 1 GiB buffer on all threads (the decode floor's
// denominator). BM_Decode/B: one decode step of B sequences at context 128; counters give
// tokens/s and the fraction of the bandwidth floor (weight bytes / bandwidth per step) reached.
// BM_DecodeWithCache/L vs BM_DecodeWithoutCache/L: the cost of producing the token at context
// L with the paged KV cache (one decode step) and without it (recomputing all L tokens).
// tiles:0 / tiles:1 (BM_Decode, BM_DecodeWithoutCache/512): the matrices as stored, or in the
// AMX tiles' order (LlamaModel::Options::tile_matrices), in the same run.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/check.h"
#include "model/llama_model.h"

namespace pagoda::model {
namespace {

constexpr int kBlockSize = 16;
constexpr int kThreads = 2;

double g_bandwidth_bytes_per_second = 0;

__attribute__((target("avx2"))) double SumAvx2(const float* data, size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (size_t i = 0; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(data + i));
    acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(data + i + 8));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
  return std::accumulate(lanes, lanes + 8, 0.0);
}

void BM_MemoryBandwidth(benchmark::State& state) {
  const size_t n = (1ull << 30) / sizeof(float);
  std::vector<float> buffer(n, 1.0f);
  double sink = 0;
  int64_t bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    std::atomic<int64_t> total{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const size_t chunk = n / kThreads;
        total += static_cast<int64_t>(SumAvx2(buffer.data() + t * chunk, chunk));
      });
    }
    for (auto& th : threads) th.join();
    sink += static_cast<double>(total.load());
    bytes += static_cast<int64_t>(n * sizeof(float));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  benchmark::DoNotOptimize(sink);
  g_bandwidth_bytes_per_second = static_cast<double>(bytes) / seconds;
  state.counters["GB_per_s"] = g_bandwidth_bytes_per_second / 1e9;
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_MemoryBandwidth)->Unit(benchmark::kMillisecond)->MinTime(1.0)->UseRealTime();

// A model, a cache and B sequences of a given context, decoding one token per step.
class DecodeFixture {
 public:
  DecodeFixture(const char* preset, int batch, int context, int max_context,
                DType kv_dtype = DType::kF32, bool tile_matrices = true) {
    const ModelConfig config = DummyPresetConfig(preset).value();
    model_ = LlamaModel::Create(MakeDummyWeights(config, 7, DType::kBF16).value(),
                                {.num_threads = kThreads, .tile_matrices = tile_matrices})
                 .value();
    const int blocks_per_seq = (max_context + kBlockSize - 1) / kBlockSize;
    cache_ = CpuKvCache::Create(config, batch * blocks_per_seq, kBlockSize, kv_dtype).value();
    batch_ = batch;
    max_blocks_ = blocks_per_seq;
    for (int b = 0; b < batch; ++b) {
      for (int i = 0; i < blocks_per_seq; ++i) tables_.push_back(b * blocks_per_seq + i);
    }
    context_ = context;
    if (context > 1) Prefill(context - 1);
  }

  const LlamaModel& model() const { return *model_; }

  // Computes the first n tokens of every sequence (one request at a time).
  void Prefill(int n) {
    const std::vector<TokenId> ids(n, 1);
    ForwardBatchBuilder builder;
    for (int b = 0; b < batch_; ++b) {
      builder.Reset(kBlockSize, max_blocks_);
      builder.AddRequest(ids, 0, n, Table(b), LogitsRows::kLast);
      std::vector<float> logits;
      const absl::Status s = model_->Forward(builder.batch(), *cache_, &logits);
      PAGODA_CHECK(s.ok()) << s;
    }
  }

  // One decode step of every sequence at position context_ - 1 (rewritten each time, so the
  // context stays fixed while the benchmark iterates).
  void DecodeStep() {
    if (decode_.num_requests() == 0) {
      const std::vector<TokenId> ids(context_, 2);
      decode_.Reset(kBlockSize, max_blocks_);
      for (int b = 0; b < batch_; ++b) {
        decode_.AddRequest(ids, context_ - 1, context_, Table(b), LogitsRows::kLast);
      }
    }
    const absl::Status s = model_->Forward(decode_.batch(), *cache_, &logits_);
    PAGODA_CHECK(s.ok()) << s;
  }

 private:
  absl::Span<const int32_t> Table(int b) const {
    return absl::MakeConstSpan(tables_).subspan(b * max_blocks_, max_blocks_);
  }

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<CpuKvCache> cache_;
  std::vector<int32_t> tables_;
  std::vector<float> logits_;
  ForwardBatchBuilder decode_;  // the decode step, built once
  int batch_ = 0;
  int max_blocks_ = 0;
  int context_ = 0;
};

void BM_Decode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const DType kv_dtype = state.range(1) == 0 ? DType::kF32 : DType::kBF16;
  DecodeFixture fixture("llama-110m", batch, /*context=*/128, /*max_context=*/128, kv_dtype,
                        /*tile_matrices=*/state.range(2) != 0);
  for (auto _ : state) fixture.DecodeStep();
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  const double weight_bytes = static_cast<double>(fixture.model().weights().matrix_bytes());
  state.counters["weight_MB"] = weight_bytes / 1e6;
  if (g_bandwidth_bytes_per_second > 0) {
    // Steps per second at the floor: the bandwidth over the bytes every step must read.
    state.counters["floor_steps_per_s"] = g_bandwidth_bytes_per_second / weight_bytes;
  }
}
// Args: batch, KV cache dtype (0 = f32, 1 = bf16), matrices in the AMX tiles' order (1, the
// default where the CPU has AMX) or as stored (0).
BENCHMARK(BM_Decode)
    ->ArgNames({"batch", "kv_bf16", "tiles"})
    ->ArgsProduct({{1, 16}, {0, 1}, {1}})
    ->ArgsProduct({{1, 16, 64}, {1}, {0}})
    ->ArgsProduct({{64}, {1}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

void BM_DecodeWithCache(benchmark::State& state) {
  const int context = static_cast<int>(state.range(0));
  DecodeFixture fixture("llama-110m", 1, context, context);
  for (auto _ : state) fixture.DecodeStep();
}

void BM_DecodeWithoutCache(benchmark::State& state) {
  const int context = static_cast<int>(state.range(0));
  DecodeFixture fixture("llama-110m", 1, 1, context, DType::kF32,
                        /*tile_matrices=*/state.range(1) != 0);
  for (auto _ : state) fixture.Prefill(context);
}
BENCHMARK(BM_DecodeWithCache)
    ->RangeMultiplier(2)
    ->Range(64, 1024)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Args: context, tiles (as BM_Decode's): a prompt of `context` tokens from scratch.
BENCHMARK(BM_DecodeWithoutCache)
    ->ArgNames({"context", "tiles"})
    ->ArgsProduct({{64, 128, 256, 512, 1024}, {1}})
    ->ArgsProduct({{512}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace pagoda::model

BENCHMARK_MAIN();

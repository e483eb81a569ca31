// Sample() cost per call at real vocabulary sizes (Llama 2: 32000, Llama 3: 128256).
//
// Sample() uses the logits as scratch, so every iteration first copies fresh logits;
// BM_CopyLogits measures that copy alone, to subtract. Logits are N(0, stddev^2): stddev 3
// gives a peaked distribution like a trained model's, stddev 1 a flat one (the worst case for
// top-p, whose nucleus then holds most of the vocabulary).

#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "sampling/sampler.h"

namespace pagoda::sampling {
namespace {

std::vector<float> MakeLogits(int64_t vocab_size, float stddev) {
  std::mt19937 gen(1234);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> logits(static_cast<size_t>(vocab_size));
  for (float& l : logits) l = dist(gen);
  return logits;
}

void RunSample(benchmark::State& bench, const SamplingParams& params, float stddev) {
  const std::vector<float> logits = MakeLogits(bench.range(0), stddev);
  std::vector<float> scratch(logits.size());
  SamplerState state(42, {});
  for (auto _ : bench) {
    scratch = logits;
    benchmark::DoNotOptimize(Sample(absl::MakeSpan(scratch), params, state));
  }
}

void BM_CopyLogits(benchmark::State& bench) {
  const std::vector<float> logits = MakeLogits(bench.range(0), 1.0f);
  std::vector<float> scratch(logits.size());
  for (auto _ : bench) {
    scratch = logits;
    benchmark::DoNotOptimize(scratch.data());
  }
}

void BM_Greedy(benchmark::State& bench) {
  SamplingParams params;
  params.temperature = 0.0f;
  RunSample(bench, params, 3.0f);
}

void BM_Temperature(benchmark::State& bench) {
  SamplingParams params;
  params.temperature = 0.8f;
  RunSample(bench, params, 3.0f);
}

void BM_TopK50(benchmark::State& bench) {
  SamplingParams params;
  params.top_k = 50;
  RunSample(bench, params, 3.0f);
}

void BM_TopP09Peaked(benchmark::State& bench) {
  SamplingParams params;
  params.top_p = 0.9f;
  RunSample(bench, params, 3.0f);
}

void BM_TopP09Flat(benchmark::State& bench) {
  SamplingParams params;
  params.top_p = 0.9f;
  RunSample(bench, params, 1.0f);
}

void BM_TopK50TopP09Penalties(benchmark::State& bench) {
  SamplingParams params;
  params.top_k = 50;
  params.top_p = 0.9f;
  params.repetition_penalty = 1.1f;
  params.frequency_penalty = 0.2f;
  const std::vector<float> logits = MakeLogits(bench.range(0), 3.0f);
  std::vector<float> scratch(logits.size());
  std::vector<TokenId> prompt(1000);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<TokenId>(i * 31);
  SamplerState state(42, prompt);
  for (int i = 0; i < 500; ++i) state.AddOutputToken(static_cast<TokenId>(i * 17));
  for (auto _ : bench) {
    scratch = logits;
    benchmark::DoNotOptimize(Sample(absl::MakeSpan(scratch), params, state));
  }
}

#define PAGODA_SAMPLER_BENCHMARK(fn) BENCHMARK(fn)->Arg(32000)->Arg(128256)
PAGODA_SAMPLER_BENCHMARK(BM_CopyLogits);
PAGODA_SAMPLER_BENCHMARK(BM_Greedy);
PAGODA_SAMPLER_BENCHMARK(BM_Temperature);
PAGODA_SAMPLER_BENCHMARK(BM_TopK50);
PAGODA_SAMPLER_BENCHMARK(BM_TopP09Peaked);
PAGODA_SAMPLER_BENCHMARK(BM_TopP09Flat);
PAGODA_SAMPLER_BENCHMARK(BM_TopK50TopP09Penalties);

}  // namespace
}  // namespace pagoda::sampling

BENCHMARK_MAIN();

// Offline engine throughput and the engine's own overhead, on dummy weights (issue 5).
//
//   ./build/engine/engine_benchmark --benchmark_filter=Throughput
//   ./build/engine/engine_benchmark --benchmark_filter=Overhead
//
// Figures go to docs/benchmarks.md; nothing here is asserted.

#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/check.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"

namespace pagoda::engine {
namespace {

const char* const kPresets[] = {"dummy:tiny", "dummy:llama-110m"};

class StepRecorder final : public MetricsObserver {
 public:
  void OnStep(const StepMetrics& step) override { steps.push_back(step); }
  void OnRequestFinished(const FinishedRequestMetrics&) override {}
  std::vector<StepMetrics> steps;
};

std::vector<EngineRequest> RandomRequests(int count, int input_len, int output_len,
                                          int vocab_size) {
  std::vector<EngineRequest> requests(count);
  uint64_t x = 12345;
  for (EngineRequest& r : requests) {
    for (int t = 0; t < input_len; ++t) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      r.prompt_tokens.push_back(static_cast<TokenId>((x >> 33) % vocab_size));
    }
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = output_len;
    r.stopping.ignore_eos = true;
  }
  return requests;
}

// vLLM's offline throughput benchmark shape: 64 requests, 128 tokens in and 128 out,
// ignore_eos. Args: preset index, max_num_seqs.
void BM_OfflineThroughput(benchmark::State& state) {
  EngineConfig config;
  config.model = kPresets[state.range(0)];
  config.max_num_seqs = static_cast<int>(state.range(1));
  config.max_num_batched_tokens = 2048;
  config.max_model_len = 512;
  auto core = CreateEngineCore(config);
  PAGODA_CHECK(core.ok()) << core.status().message();
  StepRecorder recorder;
  (*core)->set_metrics_observer(&recorder);
  const int vocab = (*core)->info().vocab_size;
  int64_t output_tokens = 0;
  for (auto _ : state) {
    auto out = GenerateOffline(**core, RandomRequests(64, 128, 128, vocab));
    PAGODA_CHECK(out.ok());
    for (const RequestCompletion& c : *out) output_tokens += c.usage.completion_tokens;
  }
  state.counters["output_tok_per_s"] =
      benchmark::Counter(static_cast<double>(output_tokens), benchmark::Counter::kIsRate);
  state.counters["total_tok_per_s"] =
      benchmark::Counter(static_cast<double>(output_tokens) * 2, benchmark::Counter::kIsRate);
  state.counters["preemptions"] = static_cast<double>((*core)->num_preemptions());
}
BENCHMARK(BM_OfflineThroughput)
    ->ArgsProduct({{1}, {1, 4, 16, 64}})
    ->Args({0, 64})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

// The engine's overhead with `requests` running decodes: the scheduler's share of step time,
// and everything but the model (scheduling, batch building, sampling, stop checks, outputs).
// Args: preset index, running requests.
void BM_EngineOverhead(benchmark::State& state) {
  const int num_requests = static_cast<int>(state.range(1));
  EngineConfig config;
  config.model = kPresets[state.range(0)];
  config.max_num_seqs = num_requests;
  config.max_num_batched_tokens = 8192;
  config.max_model_len = 256;
  auto core = CreateEngineCore(config);
  PAGODA_CHECK(core.ok()) << core.status().message();
  StepRecorder recorder;
  (*core)->set_metrics_observer(&recorder);
  const int vocab = (*core)->info().vocab_size;
  for (auto _ : state) {
    auto out = GenerateOffline(**core, RandomRequests(num_requests, 32, 32, vocab));
    PAGODA_CHECK(out.ok());
  }
  double step = 0, schedule = 0, model = 0;
  int decode_steps = 0;
  for (const StepMetrics& s : recorder.steps) {
    if (s.num_running != num_requests || s.num_prompt_tokens > 0) continue;  // full decodes only
    step += s.step_seconds;
    schedule += s.schedule_seconds;
    model += s.model_seconds;
    ++decode_steps;
  }
  state.counters["decode_steps"] = decode_steps;
  state.counters["step_ms"] = decode_steps > 0 ? 1e3 * step / decode_steps : 0;
  state.counters["schedule_us"] = decode_steps > 0 ? 1e6 * schedule / decode_steps : 0;
  state.counters["schedule_share_pct"] = step > 0 ? 100 * schedule / step : 0;
  state.counters["non_model_share_pct"] = step > 0 ? 100 * (step - model) / step : 0;
}
BENCHMARK(BM_EngineOverhead)
    ->Args({0, 32})
    ->Args({0, 256})
    ->Args({1, 256})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace pagoda::engine

BENCHMARK_MAIN();

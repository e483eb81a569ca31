// Offline engine throughput and the engine's own overhead, on dummy weights (issue 5).
//
//   ./build/engine/engine_benchmark --benchmark_filter=Throughput
//   ./build/engine/engine_benchmark --benchmark_filter=Overhead
//   ./build-cuda/engine/engine_benchmark --benchmark_filter=BM_CudaOfflineThroughput/  (a GPU)
//
// Figures go to docs/benchmarks.md; nothing here is asserted.

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/check.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"

#ifdef PAGODA_WITH_CUDA
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "runner/cuda/cuda_model_runner.h"
#endif

namespace pagoda::engine {
namespace {

const char* const kPresets[] = {"dummy:tiny", "dummy:llama-110m"};

class StepRecorder final : public MetricsObserver {
 public:
  void OnStep(const StepMetrics& step) override { steps.push_back(step); }
  void OnRequestFinished(const FinishedRequestMetrics&) override {}
  std::vector<StepMetrics> steps;
};

std::vector<EngineRequest> RandomRequests(int count, int input_len, int output_len, int vocab_size,
                                          uint64_t seed = 12345) {
  std::vector<EngineRequest> requests(count);
  uint64_t x = seed;
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
  state.counters["non_model_us"] = decode_steps > 0 ? 1e6 * (step - model) / decode_steps : 0;
}
BENCHMARK(BM_EngineOverhead)
    ->Args({0, 1})
    ->Args({0, 16})
    ->Args({0, 32})
    ->Args({0, 64})
    ->Args({0, 256})
    ->Args({1, 1})
    ->Args({1, 16})
    ->Args({1, 64})
    ->Args({1, 256})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

#ifdef PAGODA_WITH_CUDA
// The CUDA runner (runner/cuda/) as pagodad runs it with --device cuda: offline throughput of
// one wave of `max_num_seqs` requests, 128 tokens in and 128 out, ignore_eos, with and without
// CUDA graphs. Each engine is built with max_num_seqs kCudaMaxNumSeqs; with no more requests than
// N its scheduler runs exactly the steps an engine built with max_num_seqs N would (the runner's
// graphs for 1, 16, 64 and 256 are among those captured for 256), so one engine serves all four.

const char* const kCudaPresets[] = {"dummy:llama-110m", "dummy:llama-3.2-1b", "dummy:llama-3.1-8b"};
constexpr int kCudaMaxNumSeqs = 256;
constexpr int kCudaInputLen = 128;
constexpr int kCudaOutputLen = 128;
constexpr int kCudaIterations = 2;

enum class CudaGraphs { kCaptured, kEager };

// The last engine built, kept across benchmarks: building one takes long (llama-3.1-8b's 16 GB
// of dummy weights are drawn on the host and uploaded, the pool is profiled, the graphs
// captured), and two would not fit on the device at gpu_memory_utilization 0.9, so a different
// (model, graphs) frees the previous engine first. The benchmarks are registered grouped by
// that pair, so each engine is built once per run. A failure to build or run is kept in its
// place, so that the pair's other benchmarks report it without retrying. Only the benchmark
// thread touches it.
struct CachedCudaEngine {
  std::string model;
  CudaGraphs graphs = CudaGraphs::kCaptured;
  absl::StatusOr<std::unique_ptr<EngineCore>> core;
};

std::optional<CachedCudaEngine>& CudaEngineCache() {
  // Never destroyed: main releases the engine before the CUDA runtime's teardown at exit.
  static auto* const cache = new std::optional<CachedCudaEngine>;
  return *cache;
}

void ReleaseCudaEngine() { CudaEngineCache().reset(); }

// The engine for (model, graphs), or why it could not be built or failed.
absl::StatusOr<EngineCore*> CudaEngine(const std::string& model, CudaGraphs graphs) {
  std::optional<CachedCudaEngine>& cache = CudaEngineCache();
  if (!cache.has_value() || cache->model != model || cache->graphs != graphs) {
    ReleaseCudaEngine();
    EngineConfig config;
    config.model = model;
    config.device = "cuda";
    config.enforce_eager = graphs == CudaGraphs::kEager;
    config.max_num_seqs = kCudaMaxNumSeqs;
    config.max_num_batched_tokens = 2048;
    config.max_model_len = 512;
    cache = CachedCudaEngine{.model = model, .graphs = graphs, .core = CreateEngineCore(config)};
  }
  if (!cache->core.ok()) return cache->core.status();
  return cache->core->get();
}

// Frees the current engine and keeps `status` for the rest of its benchmarks.
void FailCudaEngine(const absl::Status& status) {
  std::optional<CachedCudaEngine>& cache = CudaEngineCache();
  if (cache.has_value()) cache->core = status;
}

// Args: index into kCudaPresets, graphs, max_num_seqs (= the number of requests). Counters:
// output tokens per second of wall time, the mean time of a decode step of all the requests
// (the engine's whole step: schedule, model, sampling on the host, outputs), requests.
void BM_CudaOfflineThroughput(benchmark::State& state, int preset, CudaGraphs graphs,
                              int max_num_seqs) {
  if (runner::cuda::VisibleCudaDeviceCount() == 0) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const absl::StatusOr<EngineCore*> core = CudaEngine(kCudaPresets[preset], graphs);
  if (!core.ok()) {
    state.SkipWithError(std::string(core.status().message()).c_str());
    return;
  }
  const int vocab = (*core)->info().vocab_size;
  // Fresh prompts for every run: the prefix cache must not turn a later run's prefill into hits.
  static uint64_t seed = 1;
  // Warm-up at the same batch size: first launches, cuBLASLt's algorithm choices.
  const auto warm_up =
      GenerateOffline(**core, RandomRequests(max_num_seqs, kCudaInputLen, 4, vocab, ++seed));
  if (!warm_up.ok()) {
    state.SkipWithError(std::string(warm_up.status().message()).c_str());
    FailCudaEngine(warm_up.status());
    return;
  }
  StepRecorder recorder;
  (*core)->set_metrics_observer(&recorder);
  const int64_t preemptions_before = (*core)->num_preemptions();
  int64_t output_tokens = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<EngineRequest> requests =
        RandomRequests(max_num_seqs, kCudaInputLen, kCudaOutputLen, vocab, ++seed);
    state.ResumeTiming();
    auto out = GenerateOffline(**core, std::move(requests));
    if (!out.ok()) {
      state.SkipWithError(std::string(out.status().message()).c_str());
      (*core)->set_metrics_observer(nullptr);
      FailCudaEngine(out.status());
      return;
    }
    for (const RequestCompletion& c : *out) output_tokens += c.usage.completion_tokens;
  }
  (*core)->set_metrics_observer(nullptr);
  double decode_seconds = 0;
  int decode_steps = 0;
  for (const StepMetrics& s : recorder.steps) {
    if (s.num_prompt_tokens > 0 || s.num_generation_tokens != max_num_seqs) continue;
    decode_seconds += s.step_seconds;
    ++decode_steps;
  }
  state.counters["output_tok_per_s"] =
      benchmark::Counter(static_cast<double>(output_tokens), benchmark::Counter::kIsRate);
  state.counters["decode_step_ms"] = decode_steps > 0 ? 1e3 * decode_seconds / decode_steps : 0;
  state.counters["requests"] = max_num_seqs;
  state.counters["preemptions"] =
      static_cast<double>((*core)->num_preemptions() - preemptions_before);
}

// Named BM_CudaOfflineThroughput/<preset>/<graphs|eager>/max_num_seqs:<n>, grouped by engine
// (see CudaEngineCache). No name contains "/0/", the CPU smoke run's filter.
void RegisterCudaBenchmarks() {
  for (int preset = 0; preset < static_cast<int>(std::size(kCudaPresets)); ++preset) {
    for (const CudaGraphs graphs : {CudaGraphs::kCaptured, CudaGraphs::kEager}) {
      for (const int max_num_seqs : {1, 16, 64, 256}) {
        const std::string name = absl::StrCat(
            "BM_CudaOfflineThroughput/", absl::StripPrefix(kCudaPresets[preset], "dummy:"), "/",
            graphs == CudaGraphs::kCaptured ? "graphs" : "eager", "/max_num_seqs:", max_num_seqs);
        benchmark::RegisterBenchmark(name.c_str(), BM_CudaOfflineThroughput, preset, graphs,
                                     max_num_seqs)
            ->Iterations(kCudaIterations)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
  }
}
#endif  // PAGODA_WITH_CUDA

}  // namespace
}  // namespace pagoda::engine

int main(int argc, char** argv) {
#ifdef PAGODA_WITH_CUDA
  pagoda::engine::RegisterCudaBenchmarks();
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
#ifdef PAGODA_WITH_CUDA
  // Device memory goes back while the CUDA runtime is still up.
  pagoda::engine::ReleaseCudaEngine();
#endif
  benchmark::Shutdown();
  return 0;
}

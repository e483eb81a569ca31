// What the KV cache and paging buy, measured in-process on one model in one run (issue 8):
//   1. the paged KV cache against no KV cache (the whole sequence recomputed every step):
//      time per generated token against context length;
//   2. paged allocation against a contiguous allocator that reserves max_model_len per
//      request, on the same KV memory: concurrency, throughput and KV memory left unfilled;
//   3. prefix caching on against off, on a shared-system-prompt workload: TTFT, prefill work
//      and throughput;
//   4. the KV dtype (f32, bf16, int8) at the same KV memory: the tokens the pool holds,
//      concurrency and throughput.
//
//   ./build/bench/kv_ablations --model dummy:llama-110m --out docs/figures
//   gnuplot -e "dir='docs/figures'" bench/plot_ablations.gnuplot
//
// Writes one CSV per ablation into --out and a Markdown summary to stdout.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/kv_ablation_policies.h"
#include "common/check.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "model/llama_model.h"

namespace pagoda::bench {
namespace {

using engine::EngineConfig;
using engine::EngineRequest;
using engine::StepMetrics;

struct Flags {
  std::string model = "dummy:llama-110m";
  std::string out = ".";
  int threads = 0;
  bool quick = false;  // small sizes, for a smoke run
  int section = 0;     // 1-4: only that ablation; 0: all
};

class StepRecorder final : public engine::MetricsObserver {
 public:
  void OnStep(const StepMetrics& step) override { steps.push_back(step); }
  void OnRequestFinished(const engine::FinishedRequestMetrics&) override {}
  std::vector<StepMetrics> steps;
};

// Deterministic pseudo-random tokens in [1, vocab).
class TokenSource {
 public:
  explicit TokenSource(uint64_t seed) : x_(seed) {}
  TokenId Next(int vocab) {
    x_ = x_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<TokenId>(1 + (x_ >> 33) % static_cast<uint64_t>(vocab - 1));
  }
  int Uniform(int lo, int hi) { return lo + static_cast<int>(Next(1 << 30) % (hi - lo + 1)); }
  std::vector<TokenId> Tokens(int n, int vocab) {
    std::vector<TokenId> tokens(n);
    for (TokenId& t : tokens) t = Next(vocab);
    return tokens;
  }

 private:
  uint64_t x_;
};

EngineRequest Greedy(std::vector<TokenId> prompt, int max_tokens) {
  EngineRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  return r;
}

EngineConfig BaseConfig(const Flags& flags) {
  EngineConfig config;
  config.model = flags.model;
  config.num_threads = flags.threads;
  config.max_num_seqs = 64;
  config.max_num_batched_tokens = 2048;
  return config;
}

struct Run {
  std::vector<StepMetrics> steps;
  std::vector<engine::RequestCompletion> completions;
  double wall_seconds = 0;
};

Run RunOffline(const EngineConfig& config, std::vector<EngineRequest> requests) {
  auto core = engine::CreateEngineCore(config);
  PAGODA_CHECK(core.ok()) << core.status().message();
  StepRecorder recorder;
  (*core)->set_metrics_observer(&recorder);
  const absl::Time start = absl::Now();
  auto out = engine::GenerateOffline(**core, std::move(requests));
  PAGODA_CHECK(out.ok()) << out.status().message();
  return {std::move(recorder.steps), *std::move(out), absl::ToDoubleSeconds(absl::Now() - start)};
}

// Mean step time of the steps that only decode (no prompt work).
double MeanDecodeStepSeconds(const Run& run, bool recompute) {
  double total = 0;
  int n = 0;
  for (size_t i = 1; i < run.steps.size(); ++i) {  // the first step is the prompt
    if (!recompute && run.steps[i].num_prompt_tokens > 0) continue;
    total += run.steps[i].step_seconds;
    ++n;
  }
  PAGODA_CHECK_GT(n, 0);
  return total / n;
}

void KvCacheAblation(const Flags& flags, int vocab) {
  const std::vector<int> contexts =
      flags.quick ? std::vector<int>{32, 64} : std::vector<int>{64, 128, 256, 512, 1016};
  constexpr int kTimedSteps = 4;
  std::ofstream csv(flags.out + "/kv_cache_ablation.csv");
  csv << "context,paged_ms_per_token,recompute_ms_per_token\n";
  std::printf("\n## 1. Paged KV cache vs no KV cache (one request, %s)\n\n", flags.model.c_str());
  std::printf("| context | paged KV cache, ms/token | no KV cache, ms/token | ratio |\n");
  std::printf("|---:|---:|---:|---:|\n");
  TokenSource source(1);
  for (const int context : contexts) {
    EngineConfig config = BaseConfig(flags);
    config.max_model_len = context + kTimedSteps + 1;
    config.max_num_batched_tokens = std::max(2048, config.max_model_len);
    const std::vector<TokenId> prompt = source.Tokens(context - 1, vocab);
    const Run paged = RunOffline(config, {Greedy(prompt, kTimedSteps + 1)});
    config.enable_prefix_caching = false;
    config.allocation_policy = std::make_shared<NoKvCache>();
    const Run recompute = RunOffline(config, {Greedy(prompt, kTimedSteps + 1)});
    PAGODA_CHECK(paged.completions[0].token_ids == recompute.completions[0].token_ids ||
                 config.kv_cache_dtype != model::DType::kF32)
        << "recomputation changed the tokens";
    const double paged_ms = 1e3 * MeanDecodeStepSeconds(paged, false);
    const double recompute_ms = 1e3 * MeanDecodeStepSeconds(recompute, true);
    csv << context << "," << paged_ms << "," << recompute_ms << "\n";
    std::printf("| %d | %.2f | %.2f | %.1fx |\n", context, paged_ms, recompute_ms,
                recompute_ms / paged_ms);
  }
}

struct PagingResult {
  double mean_running = 0;  // time-weighted
  int peak_running = 0;
  double output_tokens_per_second = 0;
  double unfilled_kv_percent = 0;  // allocated but not holding K/V, time-weighted
  int64_t preemptions = 0;
  double wall_seconds = 0;
};

PagingResult Summarize(const Run& run, int block_size) {
  PagingResult r;
  double time = 0, running = 0, allocated = 0, unfilled = 0;
  for (const StepMetrics& s : run.steps) {
    time += s.step_seconds;
    running += s.step_seconds * (s.num_running + 0.0);
    r.peak_running = std::max(r.peak_running, s.num_running);
    const double slots = static_cast<double>(s.kv.num_used_blocks) * block_size;
    allocated += s.step_seconds * slots;
    unfilled += s.step_seconds * (slots - static_cast<double>(s.num_computed_tokens_running));
    r.preemptions += s.num_preemptions;
  }
  int64_t output = 0;
  for (const auto& c : run.completions) output += c.usage.completion_tokens;
  r.mean_running = running / time;
  r.unfilled_kv_percent = allocated > 0 ? 100 * unfilled / allocated : 0;
  r.output_tokens_per_second = static_cast<double>(output) / run.wall_seconds;
  r.wall_seconds = run.wall_seconds;
  return r;
}

// The workload of the paging and dtype ablations: random prompts and outputs.
std::vector<EngineRequest> MixedRequests(const Flags& flags, int vocab) {
  const int num_requests = flags.quick ? 8 : 64;
  TokenSource source(2);
  std::vector<EngineRequest> requests;
  for (int i = 0; i < num_requests; ++i) {
    const int in = flags.quick ? source.Uniform(8, 32) : source.Uniform(32, 256);
    const int out = flags.quick ? source.Uniform(8, 32) : source.Uniform(32, 256);
    requests.push_back(Greedy(source.Tokens(in, vocab), out));
  }
  return requests;
}

// KV bytes per token of the dummy preset of --model in `dtype`.
int64_t KvBytesPerTokenOf(const Flags& flags, model::DType dtype) {
  auto model_config = model::DummyPresetConfig(flags.model.substr(6));
  PAGODA_CHECK(model_config.ok()) << "the paging ablations need a dummy:<preset> model";
  return model::KvBytesPerToken(*model_config, dtype);
}

void PagingAblation(const Flags& flags, int vocab) {
  const std::vector<EngineRequest> requests = MixedRequests(flags, vocab);
  const int num_requests = static_cast<int>(requests.size());
  const int max_model_len = flags.quick ? 256 : 1024;
  const int kv_tokens = flags.quick ? 1024 : 8192;
  EngineConfig config = BaseConfig(flags);
  config.max_model_len = max_model_len;
  config.enable_prefix_caching = false;  // random prompts share nothing anyway
  config.kv_cache_memory_bytes = KvBytesPerTokenOf(flags, config.kv_cache_dtype) * kv_tokens;
  const PagingResult paged = Summarize(RunOffline(config, requests), config.block_size);
  config.allocation_policy = std::make_shared<ContiguousReservation>();
  const PagingResult contiguous = Summarize(RunOffline(config, requests), config.block_size);

  std::ofstream csv(flags.out + "/paging_ablation.csv");
  csv << "allocator,mean_running,peak_running,output_tokens_per_s,unfilled_kv_percent\n";
  std::printf(
      "\n## 2. Paged vs contiguous allocation (%d requests, prompt and output lengths "
      "uniform in %s, %d KV tokens, max_model_len %d, %s)\n\n",
      num_requests, flags.quick ? "[8, 32]" : "[32, 256]", kv_tokens, max_model_len,
      flags.model.c_str());
  std::printf(
      "| allocator | mean running | peak running | output tok/s | KV allocated but "
      "unfilled | preemptions | wall s |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [name, r] : {std::pair{"paged", paged}, std::pair{"contiguous", contiguous}}) {
    csv << name << "," << r.mean_running << "," << r.peak_running << ","
        << r.output_tokens_per_second << "," << r.unfilled_kv_percent << "\n";
    std::printf("| %s | %.1f | %d | %.1f | %.1f%% | %lld | %.1f |\n", name, r.mean_running,
                r.peak_running, r.output_tokens_per_second, r.unfilled_kv_percent,
                static_cast<long long>(r.preemptions), r.wall_seconds);
  }
  std::printf("\nPaged/contiguous: %.2fx mean concurrency, %.2fx throughput.\n",
              paged.mean_running / contiguous.mean_running,
              paged.output_tokens_per_second / contiguous.output_tokens_per_second);
}

// The paging workload on a quarter of its KV memory (in bf16 tokens), in each
// KV dtype: the smaller the element, the more tokens the pool holds and the more requests run.
void DtypeAblation(const Flags& flags, int vocab) {
  const std::vector<EngineRequest> requests = MixedRequests(flags, vocab);
  const int kv_tokens_bf16 = flags.quick ? 256 : 2048;  // a quarter of the paging ablation's
  EngineConfig config = BaseConfig(flags);
  config.max_model_len = flags.quick ? 64 : 512;  // the longest request, so f32's pool admits it
  config.enable_prefix_caching = false;
  config.kv_cache_memory_bytes = KvBytesPerTokenOf(flags, model::DType::kBF16) * kv_tokens_bf16;
  std::ofstream csv(flags.out + "/kv_dtype_ablation.csv");
  csv << "kv_dtype,pool_tokens,mean_running,peak_running,output_tokens_per_s\n";
  std::printf(
      "\n## 4. KV dtype at the same KV memory (%lld MiB, the paging workload, %s)\n\n"
      "| KV dtype | pool tokens | mean running | peak running | output tok/s | preemptions |\n"
      "|---|---:|---:|---:|---:|---:|\n",
      static_cast<long long>(config.kv_cache_memory_bytes >> 20), flags.model.c_str());
  double bf16_running = 0, bf16_throughput = 0;
  for (const auto& [name, dtype] :
       {std::pair{"f32", model::DType::kF32}, std::pair{"bf16", model::DType::kBF16},
        std::pair{"int8", model::DType::kInt8}, std::pair{"fp8_e4m3", model::DType::kFp8E4M3},
        std::pair{"fp8_e5m2", model::DType::kFp8E5M2}}) {
    config.kv_cache_dtype = dtype;
    const int64_t pool_tokens = config.kv_cache_memory_bytes /
                                (KvBytesPerTokenOf(flags, dtype) * config.block_size) *
                                config.block_size;
    const PagingResult r = Summarize(RunOffline(config, requests), config.block_size);
    if (dtype == model::DType::kBF16) {
      bf16_running = r.mean_running;
      bf16_throughput = r.output_tokens_per_second;
    }
    csv << name << "," << pool_tokens << "," << r.mean_running << "," << r.peak_running << ","
        << r.output_tokens_per_second << "\n";
    std::printf("| %s | %lld | %.1f | %d | %.1f | %lld |\n", name,
                static_cast<long long>(pool_tokens), r.mean_running, r.peak_running,
                r.output_tokens_per_second, static_cast<long long>(r.preemptions));
    if (model::IsScaledKvType(dtype)) {
      std::printf("\n%s/bf16: %.2fx mean concurrency, %.2fx throughput.\n", name,
                  r.mean_running / bf16_running, r.output_tokens_per_second / bf16_throughput);
    }
  }
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void PrefixAblation(const Flags& flags, int vocab) {
  const int num_requests = flags.quick ? 8 : 32;
  const int system_len = flags.quick ? 64 : 512;
  TokenSource source(3);
  const std::vector<TokenId> system_prompt = source.Tokens(system_len, vocab);
  std::vector<EngineRequest> requests;
  for (int i = 0; i < num_requests; ++i) {
    std::vector<TokenId> prompt = system_prompt;
    for (const TokenId t : source.Tokens(32, vocab)) prompt.push_back(t);
    requests.push_back(Greedy(std::move(prompt), 32));
  }
  std::ofstream csv(flags.out + "/prefix_ablation.csv");
  csv << "prefix_caching,mean_ttft_s,p90_ttft_s,prefill_tokens,output_tokens_per_s\n";
  std::printf(
      "\n## 3. Prefix caching on vs off (%d requests: a shared %d-token system prompt + "
      "32 own tokens, 32 out; max_num_seqs 8; %s)\n\n",
      num_requests, system_len, flags.model.c_str());
  std::printf(
      "| prefix caching | mean TTFT s | p90 TTFT s | prompt tokens computed | cached "
      "prompt tokens | output tok/s |\n|---|---:|---:|---:|---:|---:|\n");
  for (const bool on : {false, true}) {
    EngineConfig config = BaseConfig(flags);
    config.max_num_seqs = 8;
    config.max_model_len = system_len + 64;
    config.enable_prefix_caching = on;
    const Run run = RunOffline(config, requests);
    std::vector<double> ttft;
    int64_t output = 0, cached = 0, prefill = 0;
    for (const auto& c : run.completions) {
      ttft.push_back(c.timings.ttft_seconds);
      output += c.usage.completion_tokens;
      cached += c.usage.cached_prompt_tokens;
    }
    for (const StepMetrics& s : run.steps) prefill += s.num_prompt_tokens;
    double mean = 0;
    for (const double t : ttft) mean += t / static_cast<double>(ttft.size());
    const double throughput = static_cast<double>(output) / run.wall_seconds;
    csv << (on ? "on" : "off") << "," << mean << "," << Percentile(ttft, 0.9) << "," << prefill
        << "," << throughput << "\n";
    std::printf("| %s | %.3f | %.3f | %lld | %lld | %.1f |\n", on ? "on" : "off", mean,
                Percentile(ttft, 0.9), static_cast<long long>(prefill),
                static_cast<long long>(cached), throughput);
  }
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      PAGODA_CHECK(i + 1 < argc) << arg << " needs a value";
      return argv[++i];
    };
    if (arg == "--model") {
      flags.model = value();
    } else if (arg == "--out") {
      flags.out = value();
    } else if (arg == "--threads") {
      PAGODA_CHECK(absl::SimpleAtoi(value(), &flags.threads));
    } else if (arg == "--quick") {
      flags.quick = true;
    } else if (arg == "--section") {
      PAGODA_CHECK(absl::SimpleAtoi(value(), &flags.section) && flags.section >= 0 &&
                   flags.section <= 4);
    } else {
      std::fprintf(stderr,
                   "usage: kv_ablations [--model dummy:<preset>] [--out DIR] [--threads N] "
                   "[--quick] [--section 1-4]\n");
      std::exit(arg == "--help" ? 0 : 2);
    }
  }
  return flags;
}

}  // namespace
}  // namespace pagoda::bench

int main(int argc, char** argv) {
  using namespace pagoda::bench;
  const Flags flags = ParseFlags(argc, argv);
  auto config = pagoda::model::DummyPresetConfig(
      flags.model.rfind("dummy:", 0) == 0 ? flags.model.substr(6) : "");
  PAGODA_CHECK(config.ok()) << "--model must be dummy:<preset>";
  std::printf("# KV-cache ablations (%s)\n", flags.model.c_str());
  const auto run = [&](int section) { return flags.section == 0 || flags.section == section; };
  if (run(1)) KvCacheAblation(flags, config->vocab_size);
  if (run(2)) PagingAblation(flags, config->vocab_size);
  if (run(3)) PrefixAblation(flags, config->vocab_size);
  if (run(4)) DtypeAblation(flags, config->vocab_size);
  return 0;
}

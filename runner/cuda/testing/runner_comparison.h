#pragma once

// Test support: the CUDA model runner against the CPU runner on the same weights, shared by the
// GPU test (cuda_model_runner_test.cc) and the emulated one (cuda_model_runner_emulation_test.cc).
//
// Tolerance. The CPU runner computes in f32 (BF16 weights, BF16 KV cache); the CUDA runner rounds
// every kernel's output to bf16 (fp32 inside kernels), as vLLM does. The rounding's effect on the
// logits was measured with tests/reference/bf16_activation_error.py, which runs the NumPy
// reference both ways: the largest difference was 0.135 on pagoda-kjv (logits up to 20) and 0.071
// on the dummy shape below, over three seeds of 64 tokens. Each logit must satisfy
//   |cuda - cpu| <= kAbsTolerance + kRelTolerance * |cpu|
// (the simulation's smallest margin under this bound: 0.059), and where the CPU's best logit
// leads the runner-up by more than kArgmaxMargin (twice the largest error), both runners must
// pick the same token.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "model/model_weights.h"
#include "model/testing/forward_batch_builder.h"
#include "runner/cpu/cpu_model_runner.h"
#include "runner/cuda/cuda_model_runner.h"
#include "sampling/sampler.h"

namespace pagoda::runner::cuda::testing {

using model::testing::ForwardBatchBuilder;
using model::testing::StepRequest;

constexpr float kAbsTolerance = 0.15f;
constexpr float kRelTolerance = 0.02f;
constexpr float kArgmaxMargin = 0.3f;
constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 64;

std::unique_ptr<model::ModelWeights> DummyWeights(const model::ModelConfig& config) {
  auto weights = model::MakeDummyWeights(config, /*seed=*/11, model::DType::kBF16);
  PAGODA_CHECK(weights.ok()) << weights.status();
  return *std::move(weights);
}

// `weights` with the static FP8 KV scales a checkpoint can carry (self_attn.k_scale/v_scale):
// per layer l and KV head h, k = (1 + l + h / 2) / 64 and v = (2 + l + h) / 64, wide enough for
// the dummy K/V.
std::unique_ptr<model::ModelWeights> WithKvScales(std::unique_ptr<model::ModelWeights> weights) {
  model::ModelWeightsParts parts = std::move(*weights).ReleaseParts();
  for (size_t l = 0; l < parts.layers.size(); ++l) {
    parts.layers[l].k_scale.clear();
    parts.layers[l].v_scale.clear();
    for (int h = 0; h < parts.config.num_kv_heads; ++h) {
      parts.layers[l].k_scale.push_back((1.0f + l + 0.5f * h) / 64.0f);
      parts.layers[l].v_scale.push_back((2.0f + l + h) / 64.0f);
    }
  }
  return std::make_unique<model::ModelWeights>(std::move(parts));
}

std::unique_ptr<cpu::CpuModelRunner> CpuRunner(std::unique_ptr<model::ModelWeights> weights,
                                               model::DType kv_dtype = model::DType::kBF16) {
  auto llama = model::LlamaModel::Create(std::move(weights), {.num_threads = 2});
  PAGODA_CHECK(llama.ok());
  auto runner = cpu::CpuModelRunner::Create(
      *std::move(llama),
      {.num_kv_blocks = kNumBlocks, .block_size = kBlockSize, .kv_dtype = kv_dtype});
  PAGODA_CHECK(runner.ok());
  return *std::move(runner);
}

std::unique_ptr<CudaModelRunner> GpuRunner(std::unique_ptr<model::ModelWeights> weights,
                                           const CudaModelRunnerOptions& options) {
  auto runner = CudaModelRunner::Create(std::move(weights), options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return nullptr;
  EXPECT_GE((*runner)->num_kv_blocks(), kNumBlocks);
  return *std::move(runner);
}

// Compares two [rows, vocab] logit arrays under the stated tolerance.
void ExpectLogitsClose(const std::vector<float>& cpu, const std::vector<float>& gpu, int vocab,
                       const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  const size_t rows = cpu.size() / vocab;
  for (size_t r = 0; r < rows; ++r) {
    const float* c = cpu.data() + r * vocab;
    const float* g = gpu.data() + r * vocab;
    float worst = 0;
    int worst_at = 0;
    for (int j = 0; j < vocab; ++j) {
      ASSERT_TRUE(std::isfinite(g[j])) << what << " row " << r << " logit " << j;
      const float excess = std::abs(g[j] - c[j]) - (kAbsTolerance + kRelTolerance * std::abs(c[j]));
      if (excess > worst) {
        worst = excess;
        worst_at = j;
      }
    }
    EXPECT_LE(worst, 0.0f) << what << " row " << r << " logit " << worst_at << ": cpu "
                           << c[worst_at] << " cuda " << g[worst_at];
    std::vector<int> order(vocab);
    for (int j = 0; j < vocab; ++j) order[j] = j;
    std::partial_sort(order.begin(), order.begin() + 2, order.end(),
                      [&](int a, int b) { return c[a] > c[b]; });
    if (c[order[0]] - c[order[1]] > kArgmaxMargin) {
      EXPECT_EQ(std::max_element(g, g + vocab) - g, order[0]) << what << " row " << r;
    }
  }
}

// Runs `batch` again through ExecuteStep with every other logits row greedy (the runner answers
// those with its device argmax) and the others sampled at temperature 0.8 with a seed: each
// token must be the host sampler's choice on the `logits` Execute returned for the same batch,
// with the same seed. (Running a step again rewrites its K/V with the same values.)
inline void ExpectDeviceGreedyMatches(ModelRunner& gpu, const model::ForwardBatch& batch,
                                      const std::vector<float>& logits, int vocab,
                                      const std::string& what) {
  const size_t rows = batch.logits_indices.size();
  const sampling::SamplingParams greedy{.temperature = 0.0f};
  const sampling::SamplingParams random{.temperature = 0.8f};
  std::vector<sampling::SamplerState> states;
  for (size_t r = 0; r < rows; ++r) states.emplace_back(/*seed=*/r, absl::Span<const TokenId>());
  std::vector<SamplingRow> sampling_rows;
  for (size_t r = 0; r < rows; ++r) {
    sampling_rows.push_back({.params = r % 2 == 0 ? &greedy : &random, .state = &states[r]});
  }
  std::vector<absl::StatusOr<TokenId>> tokens;
  const absl::Status s = gpu.ExecuteStep(batch, sampling_rows, &tokens);
  ASSERT_TRUE(s.ok()) << what << ": " << s;
  ASSERT_EQ(tokens.size(), rows) << what;
  for (size_t r = 0; r < rows; ++r) {
    std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    sampling::SamplerState state(r, {});
    const absl::StatusOr<TokenId> expected =
        sampling::Sample(absl::MakeSpan(row), *sampling_rows[r].params, state);
    ASSERT_TRUE(expected.ok()) << what << " row " << r << ": " << expected.status();
    ASSERT_TRUE(tokens[r].ok()) << what << " row " << r << ": " << tokens[r].status();
    EXPECT_EQ(*tokens[r], *expected)
        << what << (r % 2 == 0 ? ": greedy row " : ": sampled row ") << r;
  }
}

// Steps both runners through the same batches (blocks scattered over the pool, prefix reuse,
// chunked prefill, mixed prefill and decode, decode-only) and compares their logits each step;
// then checks the GPU runner's greedy rows on the same step (ExpectDeviceGreedyMatches).
void CompareOnSteps(ModelRunner& cpu, ModelRunner& gpu, int vocab) {
  std::vector<TokenId> a, b, c;
  for (int i = 0; i < 70; ++i) a.push_back((i * 37 + 5) % vocab);
  for (int i = 0; i < 33; ++i) b.push_back((i * 11 + 2) % vocab);
  for (int i = 0; i < 17; ++i) c.push_back((i * 29 + 1) % vocab);
  const std::vector<int32_t> blocks_a = {40, 3, 17, 9, 58};
  const std::vector<int32_t> blocks_b = {21, 7, 33};
  const std::vector<int32_t> blocks_c = {5, 44};
  struct Step {
    std::vector<StepRequest> requests;
    std::string name;
  };
  const auto prefix = [](const std::vector<TokenId>& t, int n) {
    return std::vector<TokenId>(t.begin(), t.begin() + n);
  };
  const std::vector<Step> steps = {
      // Context 1 and a chunk that ends one token short of a block boundary.
      {{{.tokens = prefix(a, 1), .first = 0, .blocks = blocks_a},
        {.tokens = prefix(b, 15), .first = 0, .blocks = blocks_b}},
       "first chunks"},
      // Chunked prefill across block boundaries.
      {{{.tokens = prefix(a, 49), .first = 1, .blocks = blocks_a},
        {.tokens = prefix(b, 17), .first = 15, .blocks = blocks_b}},
       "second chunks"},
      // Decode of b, the rest of a's prompt, and a new request.
      {{{.tokens = prefix(b, 18), .first = 17, .blocks = blocks_b},
        {.tokens = prefix(a, 70), .first = 49, .blocks = blocks_a},
        {.tokens = prefix(c, 16), .first = 0, .blocks = blocks_c}},
       "mixed"},
      // Decode-only (a CUDA graph when the runner has them).
      {{{.tokens = prefix(b, 19), .first = 18, .blocks = blocks_b},
        {.tokens = prefix(c, 17), .first = 16, .blocks = blocks_c}},
       "decode-only"},
  };
  for (const Step& step : steps) {
    const ForwardBatchBuilder builder(step.requests, kBlockSize);
    std::vector<float> cpu_logits, gpu_logits;
    ASSERT_TRUE(cpu.Execute(builder.batch(), &cpu_logits).ok());
    const absl::Status s = gpu.Execute(builder.batch(), &gpu_logits);
    ASSERT_TRUE(s.ok()) << step.name << ": " << s;
    ExpectLogitsClose(cpu_logits, gpu_logits, vocab, step.name);
    ExpectDeviceGreedyMatches(gpu, builder.batch(), gpu_logits, vocab, step.name);
  }
}

// models/pagoda-kjv: the path compiled into the test (PAGODA_BUILTIN_MODEL_SOURCE_DIR), else
// relative to the current directory (a copied tree, e.g. the GPU package); nullopt without it.
inline std::optional<std::string> BuiltinModelDir() {
#ifdef PAGODA_BUILTIN_MODEL_SOURCE_DIR
  for (const std::string dir : {PAGODA_BUILTIN_MODEL_SOURCE_DIR, "models/pagoda-kjv"}) {
#else
  for (const std::string dir : {"models/pagoda-kjv"}) {
#endif
    if (std::filesystem::exists(dir + "/config.json")) return dir;
  }
  return std::nullopt;
}

inline std::unique_ptr<model::ModelWeights> LoadWeights(const std::string& dir) {
  auto weights = model::LoadModelWeights(dir, {});
  PAGODA_CHECK(weights.ok()) << weights.status();
  return *std::move(weights);
}

// Greedy decoding of one request for `steps` steps with the CPU's token fed to both runners (so
// one near-tie cannot make the rest diverge), comparing the logits of every step. Returns how
// many steps' argmax agreed.
inline int CompareTeacherForcedGreedy(ModelRunner& cpu, ModelRunner& gpu,
                                      std::vector<TokenId> tokens,
                                      const std::vector<int32_t>& blocks, int steps) {
  const int vocab = cpu.config().vocab_size;
  int first = 0;
  int agreements = 0;
  for (int step = 0; step < steps; ++step) {
    const ForwardBatchBuilder builder(
        {StepRequest{.tokens = tokens, .first = first, .blocks = blocks}}, kBlockSize);
    std::vector<float> cpu_logits, gpu_logits;
    EXPECT_TRUE(cpu.Execute(builder.batch(), &cpu_logits).ok());
    const absl::Status s = gpu.Execute(builder.batch(), &gpu_logits);
    EXPECT_TRUE(s.ok()) << "step " << step << ": " << s;
    if (!s.ok()) return agreements;
    ExpectLogitsClose(cpu_logits, gpu_logits, vocab, "step " + std::to_string(step));
    const auto cpu_best = std::max_element(cpu_logits.begin(), cpu_logits.end());
    const auto gpu_best = std::max_element(gpu_logits.begin(), gpu_logits.end());
    agreements += (cpu_best - cpu_logits.begin()) == (gpu_best - gpu_logits.begin());
    first = static_cast<int>(tokens.size());
    tokens.push_back(static_cast<TokenId>(cpu_best - cpu_logits.begin()));
  }
  return agreements;
}

}  // namespace pagoda::runner::cuda::testing

// The CUDA model runner against the CPU runner on the same weights (ctest label gpu; every test
// that needs a device skips without one). Tolerances: testing/runner_comparison.h.

#include "runner/cuda/cuda_model_runner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "runner/cpu/cpu_model_runner.h"
#include "runner/cuda/testing/runner_comparison.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "model/model_weights.h"
#include "model/testing/forward_batch_builder.h"

namespace pagoda::engine {
namespace {

using runner::cuda::CudaModelRunner;
using runner::cuda::CudaModelRunnerOptions;
using runner::cuda::CudaGraphBatchSizes;
using runner::cuda::CudaRunnerReport;

using model::testing::ForwardBatchBuilder;
using model::testing::StepRequest;
using runner::cuda::testing::CompareOnSteps;
using runner::cuda::testing::CpuRunner;
using runner::cuda::testing::DummyWeights;
using runner::cuda::testing::GpuRunner;
using ::testing::HasSubstr;
using runner::cuda::testing::kBlockSize;

bool HaveDevice() { return runner::cuda::VisibleCudaDeviceCount() > 0; }

#define SKIP_WITHOUT_DEVICE() \
  if (!HaveDevice()) GTEST_SKIP() << "no CUDA device"

// Head dim 64 (the CUDA kernels' smallest common one), an intermediate size and a vocabulary
// that are not multiples of 8 (the runner pads them), GQA 2.
model::ModelConfig SmallConfig(bool attention_bias = false) {
  model::ModelConfig c;
  c.architecture = attention_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.vocab_size = 509;
  c.hidden_size = 256;
  c.intermediate_size = 340;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = 512;
  c.attention_bias = attention_bias;
  return c;
}

CudaModelRunnerOptions SmallOptions() {
  return {.block_size = kBlockSize,
          .kv_cache_memory_bytes = int64_t{64} << 20,
          .max_num_batched_tokens = 256,
          .max_num_seqs = 16,
          .max_model_len = 512};
}

TEST(CudaModelRunnerTest, RefusesModelsTheKernelsDoNotSupportWithoutTouchingTheDevice) {
  model::ModelConfig config = SmallConfig();
  config.hidden_size = 64;
  config.head_dim = 16;  // 4 heads x 16
  auto runner = CudaModelRunner::Create(DummyWeights(config), SmallOptions());
  ASSERT_FALSE(runner.ok());
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(runner.status().message(), HasSubstr("head_dim 16"));

  CudaModelRunnerOptions f32 = SmallOptions();
  f32.dtype = model::DType::kF32;
  runner = CudaModelRunner::Create(DummyWeights(SmallConfig()), f32);
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaModelRunnerTest, GraphBatchSizes) {
  EXPECT_THAT(CudaGraphBatchSizes(0), ::testing::IsEmpty());
  EXPECT_THAT(CudaGraphBatchSizes(3), ::testing::ElementsAre(1, 2, 3));
  EXPECT_THAT(CudaGraphBatchSizes(20), ::testing::ElementsAre(1, 2, 4, 8, 16, 20));
  EXPECT_THAT(CudaGraphBatchSizes(32), ::testing::ElementsAre(1, 2, 4, 8, 16, 24, 32));
}

TEST(CudaModelRunnerTest, MatchesTheCpuRunnerOnADummyModel) {
  SKIP_WITHOUT_DEVICE();
  for (const bool eager : {true, false}) {
    auto cpu = CpuRunner(DummyWeights(SmallConfig()));
    CudaModelRunnerOptions options = SmallOptions();
    options.enforce_eager = eager;
    auto gpu = GpuRunner(DummyWeights(SmallConfig()), options);
    ASSERT_NE(gpu, nullptr);
    CompareOnSteps(*cpu, *gpu, SmallConfig().vocab_size);
    EXPECT_EQ(gpu->graph_replays() > 0, !eager);
  }
}

TEST(CudaModelRunnerTest, MatchesTheCpuRunnerWithAttentionBiasAndFloat16) {
  SKIP_WITHOUT_DEVICE();
  auto cpu = CpuRunner(DummyWeights(SmallConfig(/*attention_bias=*/true)));
  CudaModelRunnerOptions options = SmallOptions();
  options.dtype = model::DType::kF16;
  auto gpu = GpuRunner(DummyWeights(SmallConfig(/*attention_bias=*/true)), options);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->kv_dtype(), model::DType::kF16);
  CompareOnSteps(*cpu, *gpu, SmallConfig().vocab_size);
}

// The built-in model's safetensors (head dim 32, tied embeddings), greedy decoding with the CPU's
// tokens fed to both runners, so one near-tie cannot make the rest of the comparison diverge.
TEST(CudaModelRunnerTest, MatchesTheCpuRunnerOnTheBuiltInSafetensorsModel) {
  SKIP_WITHOUT_DEVICE();
  const std::optional<std::string> dir = runner::cuda::testing::BuiltinModelDir();
  if (!dir.has_value()) GTEST_SKIP() << "no models/pagoda-kjv";
  auto cpu = CpuRunner(runner::cuda::testing::LoadWeights(*dir));
  auto gpu = GpuRunner(runner::cuda::testing::LoadWeights(*dir), SmallOptions());
  ASSERT_NE(gpu, nullptr);
  constexpr int kSteps = 48;
  const int agreements = runner::cuda::testing::CompareTeacherForcedGreedy(
      *cpu, *gpu, {0, 412, 95, 7, 1203, 56, 88, 19, 640, 33, 2, 1500, 77},
      {12, 3, 30, 8, 51, 26, 2, 61}, kSteps);
  EXPECT_GE(agreements, kSteps * 9 / 10);
  EXPECT_GT(gpu->graph_replays(), 0);
}

TEST(CudaModelRunnerTest, PoolIsSizedByUtilizationLessTheRunnersOwnMemory) {
  SKIP_WITHOUT_DEVICE();
  CudaModelRunnerOptions options = SmallOptions();
  options.kv_cache_memory_bytes = 0;
  options.gpu_memory_utilization = 0.3;
  auto gpu = GpuRunner(DummyWeights(SmallConfig()), options);
  ASSERT_NE(gpu, nullptr);
  const CudaRunnerReport& r = gpu->report();
  EXPECT_GT(r.weight_bytes, 0);
  EXPECT_GE(r.kv.non_kv_bytes, r.weight_bytes + r.activation_bytes);
  const double allowed = 0.3 * static_cast<double>(r.memory.total_bytes);
  EXPECT_LE(static_cast<double>(r.kv.kv_bytes + r.kv.non_kv_bytes), allowed);
  // All but less than one block of what the rule allows (unless free memory limited it).
  if (!r.kv.limited_by_free_memory) {
    const int64_t bytes_per_block = r.kv.kv_bytes / r.kv.num_blocks;
    EXPECT_GT(static_cast<double>(r.kv.kv_bytes + r.kv.non_kv_bytes + bytes_per_block), allowed);
  }
  EXPECT_EQ(gpu->num_kv_blocks(), r.kv.num_blocks);
  // The device really holds it: what is in use now covers the pool and the runner's memory.
  auto info = runner::cuda::CurrentCudaDeviceMemory();
  ASSERT_TRUE(info.ok());
  EXPECT_GE(info->total_bytes - info->free_bytes, r.kv.kv_bytes + r.weight_bytes);
}

TEST(CudaModelRunnerTest, MalformedBatchesAreRefused) {
  SKIP_WITHOUT_DEVICE();
  auto gpu = GpuRunner(DummyWeights(SmallConfig()), SmallOptions());
  ASSERT_NE(gpu, nullptr);
  std::vector<float> logits;
  // A block id past the pool would make the kernels read outside it.
  const ForwardBatchBuilder outside({StepRequest{.tokens = {1, 2, 3}, .blocks = {1 << 20}}},
                                    kBlockSize);
  EXPECT_EQ(gpu->Execute(outside.batch(), &logits).code(), absl::StatusCode::kInvalidArgument);
  // More tokens than the runner's buffers hold.
  const ForwardBatchBuilder too_long(
      {StepRequest{.tokens = std::vector<TokenId>(300, 1),
                   .blocks = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}}},
      kBlockSize);
  EXPECT_EQ(gpu->Execute(too_long.batch(), &logits).code(), absl::StatusCode::kInvalidArgument);
  // And it still works afterwards.
  const ForwardBatchBuilder fine({StepRequest{.tokens = {1, 2, 3}, .blocks = {0}}}, kBlockSize);
  EXPECT_TRUE(gpu->Execute(fine.batch(), &logits).ok());
  EXPECT_EQ(logits.size(), static_cast<size_t>(SmallConfig().vocab_size));
}

// The whole engine on the GPU, as pagodad builds it: concurrent greedy requests on a pool small
// enough to preempt, every request completes with its tokens and no block is left in use.
TEST(CudaModelRunnerTest, EngineServesConcurrentRequestsOnTheGpu) {
  SKIP_WITHOUT_DEVICE();
  EngineConfig config;
  config.model = "dummy:llama-110m";
  config.device = "cuda";
  config.kv_cache_memory_bytes = int64_t{64} << 20;  // 113 blocks of 16 tokens: preempts
  config.max_num_seqs = 32;
  config.max_num_batched_tokens = 512;
  config.max_model_len = 1024;
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 40; ++i) {
    EngineRequest r;
    for (int t = 0; t < 40 + 13 * i; ++t) r.prompt_tokens.push_back(1 + (i * 31 + t * 7) % 250);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 64;
    r.stopping.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  auto completions = GenerateOffline(**core, requests);
  ASSERT_TRUE(completions.ok()) << completions.status();
  for (const RequestCompletion& c : *completions) EXPECT_EQ(c.token_ids.size(), 64u);
  EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
  // Greedy decoding replays: the same request alone twice gives the same tokens.
  auto once = GenerateOffline(**core, {requests[0]});
  auto twice = GenerateOffline(**core, {requests[0]});
  ASSERT_TRUE(once.ok() && twice.ok());
  EXPECT_EQ((*once)[0].token_ids, (*twice)[0].token_ids);
}

}  // namespace
}  // namespace pagoda::engine

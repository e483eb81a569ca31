// The CUDA model runner's own code (cuda_model_runner.cc and the kernels' launch wrappers, as
// built for the GPU) on the CPU emulator of kernels/cuda (pagoda_kernels_cuda_emulated: kernels
// emulated thread by thread, host memory as device memory, a loop for cuBLASLt), against the CPU
// runner. It checks what the GPU test checks, without a GPU: step packing, pointers and
// strides, the attention split, padding of GEMM sizes, CUDA-graph replay of padded decode
// batches, the profiling pass and the pool's size. It cannot check real concurrency, cuBLASLt or
// the driver; the GPU test (cuda_model_runner_test.cc) remains the authority.

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "engine/engine_core.h"
#include "engine/engine_factory.h"
#include "engine/offline.h"
#include "gtest/gtest.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "runner/cuda/cuda_model_runner.h"
#include "runner/cuda/testing/runner_comparison.h"

namespace pagoda::engine {
namespace {

using runner::cuda::CudaModelRunner;
using runner::cuda::CudaModelRunnerOptions;
using runner::cuda::CudaRunnerReport;

using runner::cuda::testing::CompareOnSteps;
using runner::cuda::testing::CpuRunner;
using runner::cuda::testing::DummyWeights;
using runner::cuda::testing::GpuRunner;
using runner::cuda::testing::kBlockSize;
using runner::cuda::testing::WithKvScales;

// Small enough for the emulator: head dim 32 (the built-in model's), GQA 2, an intermediate size
// and a vocabulary that are not multiples of 8.
model::ModelConfig TinyConfig(bool attention_bias) {
  model::ModelConfig c;
  c.architecture = attention_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.vocab_size = 203;
  c.hidden_size = 64;
  c.intermediate_size = 100;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 32;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = 256;
  c.attention_bias = attention_bias;
  return c;
}

CudaModelRunnerOptions TinyOptions(model::DType dtype, bool eager) {
  return {.block_size = kBlockSize,
          .dtype = dtype,
          .kv_cache_memory_bytes = int64_t{1} << 20,
          .max_num_batched_tokens = 64,
          .max_num_seqs = 4,
          .max_model_len = 128,
          .enforce_eager = eager};
}

// A block written to the runner's pool and read back comes back byte for byte.
void ExpectKvBlockRoundTrips(CudaModelRunner& gpu, BlockId id) {
  std::string block(gpu.kv_block_bytes(), '\0'), back(block.size(), '\0');
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 13 + id.value());
  ASSERT_TRUE(gpu.WriteKvBlock(id, block.data()).ok());
  ASSERT_TRUE(gpu.ReadKvBlock(id, back.data()).ok());
  EXPECT_EQ(back, block);
}

TEST(CudaModelRunnerEmulationTest, MatchesTheCpuRunnerEagerAndWithGraphs) {
  for (const bool eager : {true, false}) {
    auto cpu = CpuRunner(DummyWeights(TinyConfig(false)));
    auto gpu = GpuRunner(DummyWeights(TinyConfig(false)), TinyOptions(model::DType::kBF16, eager));
    ASSERT_NE(gpu, nullptr);
    CompareOnSteps(*cpu, *gpu, TinyConfig(false).vocab_size);
    EXPECT_EQ(gpu->graph_replays() > 0, !eager) << "eager " << eager;
    EXPECT_EQ(gpu->report().graph_batch_sizes.empty(), eager);
  }
}

// 8-bit KV caches: the CUDA runner quantizes K/V as it caches them (per-token scales) and its
// kernels dequantize, as the CPU runner does with the same dtype; the logits agree within the
// 16-bit tolerance (the quantized values can differ by a step where the CUDA runner's K/V were
// rounded to bf16 before quantizing, which the tolerance absorbs).
TEST(CudaModelRunnerEmulationTest, MatchesTheCpuRunnerWithAnEightBitKvCache) {
  for (const model::DType kv : {model::DType::kInt8, model::DType::kFp8E4M3}) {
    auto cpu = CpuRunner(DummyWeights(TinyConfig(false)), kv);
    CudaModelRunnerOptions options = TinyOptions(model::DType::kBF16, false);
    options.kv_dtype = kv;
    auto gpu = GpuRunner(DummyWeights(TinyConfig(false)), options);
    ASSERT_NE(gpu, nullptr);
    EXPECT_EQ(gpu->kv_dtype(), kv);
    CompareOnSteps(*cpu, *gpu, TinyConfig(false).vocab_size);
    // The block copies carry the scales, in the CPU runner's layout and size.
    EXPECT_EQ(gpu->kv_block_bytes(), cpu->kv_block_bytes());
    ExpectKvBlockRoundTrips(*gpu, BlockId(3));
  }
  CudaModelRunnerOptions bad = TinyOptions(model::DType::kBF16, false);
  bad.kv_dtype = model::DType::kF32;
  EXPECT_EQ(CudaModelRunner::Create(DummyWeights(TinyConfig(false)), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = TinyOptions(model::DType::kF16, false);  // 8-bit caches are built for bf16 compute
  bad.kv_dtype = model::DType::kInt8;
  EXPECT_EQ(CudaModelRunner::Create(DummyWeights(TinyConfig(false)), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// FP8 with the checkpoint's static per-head K/V scales: no scale stored per token (the pool's
// blocks and the block copies shrink by them, as the CPU runner's), the same logits as the CPU
// runner with the same scales. E4M3 only, as in the per-token test above: the CUDA runner rounds
// K/V to bf16 before quantizing, and with E5M2's 2 mantissa bits the values that this moves
// across a rounding boundary change by an eighth, past the 16-bit tolerance of the comparison
// (measured: logits off by up to 0.2). E5M2 takes the same code with another element type.
TEST(CudaModelRunnerEmulationTest, MatchesTheCpuRunnerWithStaticFp8Scales) {
  const model::DType kv = model::DType::kFp8E4M3;
  auto cpu = CpuRunner(WithKvScales(DummyWeights(TinyConfig(false))), kv);
  ASSERT_TRUE(cpu->kv_static_scales());
  CudaModelRunnerOptions options = TinyOptions(model::DType::kBF16, false);
  options.kv_dtype = kv;
  auto gpu = GpuRunner(WithKvScales(DummyWeights(TinyConfig(false))), options);
  ASSERT_NE(gpu, nullptr);
  EXPECT_TRUE(gpu->kv_static_scales());
  CompareOnSteps(*cpu, *gpu, TinyConfig(false).vocab_size);
  EXPECT_EQ(gpu->kv_block_bytes(), cpu->kv_block_bytes());
  const model::ModelConfig c = TinyConfig(false);
  EXPECT_EQ(gpu->kv_block_bytes(), 2LL * c.num_layers * c.num_kv_heads * kBlockSize * c.head_dim);
  ExpectKvBlockRoundTrips(*gpu, BlockId(5));
  // int8 has no static scales: the checkpoint's are for FP8 and are ignored.
  options.kv_dtype = model::DType::kInt8;
  auto int8 = GpuRunner(WithKvScales(DummyWeights(TinyConfig(false))), options);
  ASSERT_NE(int8, nullptr);
  EXPECT_FALSE(int8->kv_static_scales());
}

TEST(CudaModelRunnerEmulationTest, MatchesTheCpuRunnerWithAttentionBiasInFloat16) {
  auto cpu = CpuRunner(DummyWeights(TinyConfig(true)));
  auto gpu = GpuRunner(DummyWeights(TinyConfig(true)), TinyOptions(model::DType::kF16, false));
  ASSERT_NE(gpu, nullptr);
  CompareOnSteps(*cpu, *gpu, TinyConfig(true).vocab_size);
}

// The built-in model's safetensors (4 layers, hidden 256, tied embeddings, vocabulary 2048):
// greedy decoding with the CPU's tokens fed to both runners.
TEST(CudaModelRunnerEmulationTest, MatchesTheCpuRunnerOnTheBuiltInSafetensorsModel) {
  const std::optional<std::string> dir = runner::cuda::testing::BuiltinModelDir();
  if (!dir.has_value()) GTEST_SKIP() << "no models/pagoda-kjv";
  auto cpu = CpuRunner(runner::cuda::testing::LoadWeights(*dir));
  CudaModelRunnerOptions options = TinyOptions(model::DType::kBF16, false);
  options.kv_cache_memory_bytes = int64_t{4} << 20;
  auto gpu = GpuRunner(runner::cuda::testing::LoadWeights(*dir), options);
  ASSERT_NE(gpu, nullptr);
  runner::cuda::testing::CompareTeacherForcedGreedy(
      *cpu, *gpu, {0, 412, 95, 7, 1203, 56, 88, 19, 640, 33, 2, 1500, 77}, {12, 3, 30, 8, 51},
      /*steps=*/12);
  EXPECT_GT(gpu->graph_replays(), 0);
}

TEST(CudaModelRunnerEmulationTest, PoolTakesTheUtilizationLessTheRunnersOwnMemory) {
  CudaModelRunnerOptions options = TinyOptions(model::DType::kBF16, false);
  options.kv_cache_memory_bytes = 0;
  options.gpu_memory_utilization = 0.01;  // of the emulated 4 GiB device
  auto gpu = GpuRunner(DummyWeights(TinyConfig(false)), options);
  ASSERT_NE(gpu, nullptr);
  const CudaRunnerReport& r = gpu->report();
  EXPECT_GT(r.weight_bytes, 0);
  EXPECT_GE(r.kv.non_kv_bytes, r.weight_bytes + r.activation_bytes);
  const double allowed = 0.01 * static_cast<double>(r.memory.total_bytes);
  const int64_t bytes_per_block = r.kv.kv_bytes / r.kv.num_blocks;
  EXPECT_LE(static_cast<double>(r.kv.kv_bytes + r.kv.non_kv_bytes), allowed);
  EXPECT_GT(static_cast<double>(r.kv.kv_bytes + r.kv.non_kv_bytes + bytes_per_block), allowed);
  EXPECT_EQ(gpu->num_kv_blocks(), r.kv.num_blocks);
}

// Forwards to a runner but leaves ExecuteStep to runner::ModelRunner's default, so that every row
// is sampled on the host from the runner's logits.
class HostSampling final : public runner::ModelRunner {
 public:
  explicit HostSampling(std::unique_ptr<runner::ModelRunner> runner) : runner_(std::move(runner)) {}
  const model::ModelConfig& config() const override { return runner_->config(); }
  int num_kv_blocks() const override { return runner_->num_kv_blocks(); }
  int block_size() const override { return runner_->block_size(); }
  model::DType kv_dtype() const override { return runner_->kv_dtype(); }
  model::DType weight_dtype() const override { return runner_->weight_dtype(); }
  const char* backend_name() const override { return runner_->backend_name(); }
  absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) override {
    return runner_->Execute(batch, logits);
  }

 private:
  std::unique_ptr<runner::ModelRunner> runner_;
};

// The whole engine on the emulated runner: concurrent requests on a pool small enough to preempt
// (so recomputation, chunked prefill, mixed steps and graph-replayed decodes all occur) complete
// with all their tokens and leave no block in use. Greedy requests take the runner's argmax and
// the others (seeded, temperature 0.8) are sampled on the host from the rows it sends; a second
// run samples every row on the host from the same runner's logits and must produce the same
// tokens.
TEST(CudaModelRunnerEmulationTest, EngineServesConcurrentRequestsWithPreemption) {
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 5; ++i) {
    EngineRequest r;
    for (int t = 0; t < 40; ++t) r.prompt_tokens.push_back(1 + (i * 31 + t * 17) % 200);
    r.sampling.temperature = i % 2 == 0 ? 0.0f : 0.8f;
    r.sampling.seed = 100 + i;
    r.stopping.max_tokens = 24;
    r.stopping.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  std::vector<std::vector<TokenId>> runs[2];
  int64_t device_greedy_tokens[2] = {0, 0};
  for (int run = 0; run < 2; ++run) {
    std::vector<std::vector<TokenId>>& tokens = runs[run];
    CudaModelRunnerOptions runner_options = TinyOptions(model::DType::kBF16, false);
    runner_options.max_num_seqs = 5;
    // 12 blocks of 16 tokens: four 40-token prompts (3 blocks each) are admitted, and their
    // growth past 48 tokens preempts.
    runner_options.kv_cache_memory_bytes =
        12 * model::CpuKvCache::BytesPerBlock(TinyConfig(false), kBlockSize, model::DType::kBF16);
    auto runner = CudaModelRunner::Create(DummyWeights(TinyConfig(false)), runner_options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const CudaModelRunner* gpu = runner->get();
    std::unique_ptr<runner::ModelRunner> engine_runner = *std::move(runner);
    if (run == 1) engine_runner = std::make_unique<HostSampling>(std::move(engine_runner));
    EngineCoreOptions options;
    options.scheduler.max_num_seqs = runner_options.max_num_seqs;
    options.scheduler.max_num_batched_tokens = runner_options.max_num_batched_tokens;
    options.scheduler.max_model_len = runner_options.max_model_len;
    auto core = EngineCore::Create("tiny", std::move(engine_runner), nullptr, options);
    ASSERT_TRUE(core.ok()) << core.status();
    auto completions = GenerateOffline(**core, requests);
    ASSERT_TRUE(completions.ok()) << completions.status();
    for (const RequestCompletion& c : *completions) {
      EXPECT_EQ(c.token_ids.size(), 24u);
      tokens.push_back(c.token_ids);
    }
    EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
    EXPECT_GT((*core)->num_preemptions(), 0);
    device_greedy_tokens[run] = gpu->device_argmax_rows();
  }
  EXPECT_EQ(runs[0], runs[1]);
  // Every token of the 3 greedy requests (24 each) came from the runner's argmax in the first
  // run, none in the second.
  EXPECT_EQ(device_greedy_tokens[0], 3 * 24);
  EXPECT_EQ(device_greedy_tokens[1], 0);
}

// A Mistral-like windowed model (window 20, every layer): the CUDA runner's per-layer masks
// against the CPU runner's, on steps whose contexts pass the window; then through the engine in
// a pool of 12 blocks, where three 70-to-76-token requests (15 blocks in all) only fit because
// the blocks behind the
// window are freed (null table entries the kernels never read), giving what the same runner
// gives in an ample pool.
TEST(CudaModelRunnerEmulationTest, SlidingWindowMatchesTheCpuRunnerAndFreesBlocks) {
  model::ModelConfig config = TinyConfig(false);
  config.architecture = "MistralForCausalLM";
  config.sliding_window = 20;
  config.windowed_layers = {true, true};
  {
    auto cpu = CpuRunner(DummyWeights(config));
    auto gpu = GpuRunner(DummyWeights(config), TinyOptions(model::DType::kBF16, false));
    ASSERT_NE(gpu, nullptr);
    EXPECT_EQ(gpu->kv_window().sliding_window, 20);
    CompareOnSteps(*cpu, *gpu, config.vocab_size);
  }
  std::vector<EngineRequest> requests;
  for (int i = 0; i < 3; ++i) {
    EngineRequest r;
    for (int t = 0; t < 10 + 3 * i; ++t) r.prompt_tokens.push_back(1 + (i * 31 + t * 7) % 200);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 60;
    r.stopping.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  std::vector<std::vector<TokenId>> runs[2];
  for (const int num_blocks : {12, 64}) {
    CudaModelRunnerOptions runner_options = TinyOptions(model::DType::kBF16, false);
    runner_options.max_model_len = 256;
    runner_options.kv_cache_memory_bytes =
        num_blocks * model::CpuKvCache::BytesPerBlock(config, kBlockSize, model::DType::kBF16);
    auto runner = CudaModelRunner::Create(DummyWeights(config), runner_options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    EngineCoreOptions options;
    options.scheduler.max_num_seqs = runner_options.max_num_seqs;
    options.scheduler.max_num_batched_tokens = runner_options.max_num_batched_tokens;
    options.scheduler.max_model_len = runner_options.max_model_len;
    auto core = EngineCore::Create("mistral-tiny", *std::move(runner), nullptr, options);
    ASSERT_TRUE(core.ok()) << core.status();
    auto completions = GenerateOffline(**core, requests);
    ASSERT_TRUE(completions.ok()) << completions.status();
    for (const RequestCompletion& c : *completions) {
      EXPECT_EQ(c.token_ids.size(), 60u);
      runs[num_blocks == 64].push_back(c.token_ids);
    }
    EXPECT_EQ((*core)->num_preemptions(), 0) << num_blocks;
    EXPECT_EQ((*core)->kv_stats().num_used_blocks, 0);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

// The factory builds the runner for --device cuda as pagodad does (the built-in model here).
// KV offload through the CUDA runner: a block copied out (ReadKvBlock) and into another block
// (WriteKvBlock) reads back the same; then an engine with a disk tier serves an evicted prefix
// from disk with the tokens of its cold run.
TEST(CudaModelRunnerEmulationTest, KvBlocksCopyOutAndInAndTheDiskTierServesAnEvictedPrefix) {
  CudaModelRunnerOptions runner_options = TinyOptions(model::DType::kBF16, false);
  runner_options.kv_cache_memory_bytes =
      12 * model::CpuKvCache::BytesPerBlock(TinyConfig(false), kBlockSize, model::DType::kBF16);
  auto created = CudaModelRunner::Create(DummyWeights(TinyConfig(false)), runner_options);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<runner::ModelRunner> runner = *std::move(created);
  const int64_t bytes = runner->kv_block_bytes();
  ASSERT_EQ(bytes, 2 * 2 * 1 * kBlockSize * 32 * 2);  // K and V, 2 layers, 1 KV head, bf16
  std::string pattern(bytes, '\0'), back(bytes, '\0');
  for (int64_t i = 0; i < bytes; ++i) pattern[i] = static_cast<char>(i * 7 + 3);
  ASSERT_TRUE(runner->WriteKvBlock(BlockId(5), pattern.data()).ok());
  ASSERT_TRUE(runner->ReadKvBlock(BlockId(5), back.data()).ok());
  EXPECT_EQ(back, pattern);
  EXPECT_FALSE(runner->ReadKvBlock(BlockId(12), back.data()).ok());
  char* pinned = runner->AllocateHostMemory(4096);
  ASSERT_NE(pinned, nullptr);
  runner->FreeHostMemory(pinned);

  char dir_template[] = "/tmp/pagoda-cuda-tier-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  EngineCoreOptions options;
  options.scheduler.max_num_seqs = 2;
  options.scheduler.max_num_batched_tokens = runner_options.max_num_batched_tokens;
  options.scheduler.max_model_len = runner_options.max_model_len;
  options.kv_tiering = {.host_bytes = 4 * bytes,
                        .disk_dir = dir,
                        .disk_bytes = 1 << 20,
                        .policy = kv_offload::ReloadPolicy::kAlways,
                        .prefill_tokens_per_second = 1000.0};
  auto core = EngineCore::Create("tiny", std::move(runner), nullptr, options);
  ASSERT_TRUE(core.ok()) << core.status();
  const auto request = [](int salt) {
    EngineRequest r;
    for (int t = 0; t < 40; ++t) r.prompt_tokens.push_back(1 + (salt * 31 + t * 17) % 200);
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 8;
    r.stopping.ignore_eos = true;
    return r;
  };
  auto cold = GenerateOffline(**core, {request(0)});
  ASSERT_TRUE(cold.ok()) << cold.status();
  for (int salt = 1; salt <= 6; ++salt) ASSERT_TRUE(GenerateOffline(**core, {request(salt)}).ok());
  auto again = GenerateOffline(**core, {request(0)});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)[0].token_ids, (*cold)[0].token_ids);
  EXPECT_EQ((*again)[0].usage.cached_prompt_tokens, 32);
  core->reset();
  std::filesystem::remove_all(dir);
}

TEST(CudaModelRunnerEmulationTest, FactoryBuildsTheCudaRunner) {
  if (!runner::cuda::testing::BuiltinModelDir().has_value()) GTEST_SKIP() << "no models/pagoda-kjv";
  EngineConfig config;  // the built-in model
  config.device = "cuda";
  config.kv_cache_memory_bytes = 64 * 32768;  // 64 blocks of 16 tokens of pagoda-kjv
  config.max_num_seqs = 4;
  config.max_num_batched_tokens = 64;
  auto core = CreateEngineCore(config);
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ((*core)->info().backend, "cuda");
  EXPECT_EQ((*core)->info().num_kv_blocks, 64);
  EXPECT_EQ((*core)->info().kv_dtype, model::DType::kBF16);
  // max_model_len unset: the model's 256, which the pool holds.
  EXPECT_EQ((*core)->info().max_model_len, 256);
  config.device = "cuda:1";
  EXPECT_EQ(CreateEngineCore(config).status().code(), absl::StatusCode::kInvalidArgument);
  // An 8-bit KV cache: the pool holds about twice the blocks in the same memory.
  config.device = "cuda";
  config.kv_cache_dtype = model::DType::kInt8;
  auto int8 = CreateEngineCore(config);
  ASSERT_TRUE(int8.ok()) << int8.status();
  EXPECT_EQ((*int8)->info().kv_dtype, model::DType::kInt8);
  EXPECT_GE((*int8)->info().num_kv_blocks, 120);
  auto done = GenerateOffline(**int8, {[] {
    EngineRequest r;
    r.prompt_tokens = {1, 40, 41, 42, 43, 44, 45};
    r.sampling.temperature = 0.0f;
    r.stopping.max_tokens = 6;
    r.stopping.ignore_eos = true;
    return r;
  }()});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ((*done)[0].token_ids.size(), 6u);
}

}  // namespace
}  // namespace pagoda::engine

#include "engine/engine_factory.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "engine/model_fingerprint.h"
#include "runner/cpu/cpu_model_runner.h"
#ifdef PAGODA_WITH_CUDA
#include "runner/cuda/cuda_model_runner.h"
#endif
#include "model/llama_model.h"
#include "model/model_weights.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/tokenizer_loader.h"

// Set by models/CMakeLists.txt; empty means no such location.
#ifndef PAGODA_BUILTIN_MODEL_INSTALL_DIR
#define PAGODA_BUILTIN_MODEL_INSTALL_DIR ""
#endif
#ifndef PAGODA_BUILTIN_MODEL_DIR
#define PAGODA_BUILTIN_MODEL_DIR ""
#endif

namespace pagoda::engine {
namespace {

constexpr int64_t kDefaultKvCacheCapBytes = int64_t{2} << 30;

struct LoadedModel {
  std::string name;
  std::unique_ptr<model::ModelWeights> weights;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
};

absl::StatusOr<LoadedModel> LoadModel(const EngineConfig& config) {
  const std::string spec = config.model.empty() ? DefaultModelSpec() : config.model;
  LoadedModel loaded;
  if (absl::StartsWith(spec, "dummy:")) {
    const std::string preset(absl::StripPrefix(spec, "dummy:"));
    absl::StatusOr<model::ModelConfig> model_config = model::DummyPresetConfig(preset);
    if (!model_config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--model: unknown dummy preset '", preset,
                       "'; known presets: ", absl::StrJoin(model::DummyPresetNames(), ", ")));
    }
    PAGODA_ASSIGN_OR_RETURN(
        loaded.weights, model::MakeDummyWeights(*model_config, config.seed,
                                                config.weight_dtype.value_or(model::DType::kBF16)));
    loaded.tokenizer = std::make_unique<tokenizer::ByteTokenizer>();
    loaded.name = spec;
    return loaded;
  }
  absl::StatusOr<std::unique_ptr<model::ModelWeights>> weights =
      model::LoadModelWeights(spec, {.matrix_dtype = config.weight_dtype});
  if (!weights.ok()) {
    return absl::Status(weights.status().code(),
                        absl::StrCat("--model ", spec, ": ", weights.status().message()));
  }
  loaded.weights = *std::move(weights);
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer = tokenizer::LoadTokenizer(spec);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat("--model ", spec, ": ", tokenizer.status().message()));
  }
  loaded.tokenizer = *std::move(tokenizer);
  loaded.name = std::string(absl::StripSuffix(spec, "/"));
  if (const size_t slash = loaded.name.rfind('/'); slash != std::string::npos) {
    loaded.name = loaded.name.substr(slash + 1);
  }
  return loaded;
}

}  // namespace

std::string DefaultModelSpec() {
  // The installed copy first: an installed binary may outlive the source tree it was built from.
  for (const char* dir : {PAGODA_BUILTIN_MODEL_INSTALL_DIR, PAGODA_BUILTIN_MODEL_DIR}) {
    std::error_code error;
    if (*dir != '\0' &&
        std::filesystem::exists(std::filesystem::path(dir) / "config.json", error)) {
      return dir;
    }
  }
  return "dummy:tiny";
}

namespace {

// "cpu", "cuda" or "cuda:N": the CUDA device ordinal, or nullopt for the CPU.
absl::StatusOr<std::optional<int>> ParseDevice(const std::string& device) {
  if (device == "cpu") return std::nullopt;
  if (device == "cuda") return 0;
  int ordinal = 0;
  if (absl::StartsWith(device, "cuda:") &&
      absl::SimpleAtoi(absl::StripPrefix(device, "cuda:"), &ordinal) && ordinal >= 0) {
    return ordinal;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device: must be cpu, cuda or cuda:N, got '", device, "'"));
}

// max_model_len: the configured one, or the model's when unset (before the pool caps it).
absl::StatusOr<std::unique_ptr<runner::ModelRunner>> CreateCpuRunner(
    const EngineConfig& config, int max_model_len, std::unique_ptr<model::ModelWeights> weights) {
  if (config.kv_cache_dtype == model::DType::kF16) {
    return absl::InvalidArgumentError(
        "--kv-cache-dtype: the CPU KV cache is f32, bf16, int8, fp8_e4m3 or fp8_e5m2");
  }
  const model::ModelConfig model_config = weights->config();
  const int num_threads = config.num_threads > 0
                              ? config.num_threads
                              : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  absl::StatusOr<std::unique_ptr<model::LlamaModel>> created = model::LlamaModel::Create(
      std::move(weights), {.num_threads = num_threads,
                           .streaming = {.sliding_window = config.streaming_window,
                                         .sink_tokens = config.attention_sinks},
                           .tile_matrices = config.repack_weights});
  if (!created.ok()) {
    return absl::Status(
        created.status().code(),
        absl::StrCat("--attention-sinks/--streaming-window: ", created.status().message()));
  }
  std::unique_ptr<model::LlamaModel> llama = *std::move(created);
  const bool static_scales = (config.kv_cache_dtype == model::DType::kFp8E4M3 ||
                              config.kv_cache_dtype == model::DType::kFp8E5M2) &&
                             llama->weights().has_kv_scales();
  const int64_t bytes_per_block = model::CpuKvCache::BytesPerBlock(
      model_config, config.block_size, config.kv_cache_dtype, !static_scales);
  int64_t kv_bytes = config.kv_cache_memory_bytes;
  if (kv_bytes == 0) {
    const auto blocks = [&](int64_t tokens) {
      return (tokens + config.block_size - 1) / config.block_size;
    };
    int64_t blocks_per_request = blocks(max_model_len);
    if (config.streaming_window > 0) {
      // Past max_model_len a request holds the sinks, the window and a chunk; a lone one must
      // fit beside the admission watermark (1% of the pool) and its rounding.
      blocks_per_request = std::max(
          blocks_per_request,
          blocks(config.attention_sinks) +
              blocks(int64_t{config.streaming_window} - 1 + config.max_num_batched_tokens) + 1 +
              std::max<int64_t>(1, blocks_per_request / 50));
    }
    kv_bytes = std::min(kDefaultKvCacheCapBytes,
                        int64_t{config.max_num_seqs} * blocks_per_request * bytes_per_block);
  }
  const int64_t num_blocks = kv_bytes / bytes_per_block;
  if (num_blocks < 1 || num_blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-cache-memory: ", kv_bytes, " bytes give ",
                                                   num_blocks, " blocks of ", bytes_per_block,
                                                   " bytes; need between 1 and 2^30 blocks"));
  }
  PAGODA_ASSIGN_OR_RETURN(std::unique_ptr<runner::cpu::CpuModelRunner> runner,
                          runner::cpu::CpuModelRunner::Create(
                              std::move(llama), {.num_kv_blocks = static_cast<int>(num_blocks),
                                                 .block_size = config.block_size,
                                                 .kv_dtype = config.kv_cache_dtype}));
  return runner;
}

absl::StatusOr<std::unique_ptr<runner::ModelRunner>> CreateCudaRunner(
    const EngineConfig& config, int device, int max_model_len,
    std::unique_ptr<model::ModelWeights> weights) {
#ifdef PAGODA_WITH_CUDA
  if (config.streaming_window > 0 || config.attention_sinks > 0) {
    return absl::InvalidArgumentError(
        "--attention-sinks/--streaming-window: StreamingLLM runs on the CPU backend only in this "
        "version (the CUDA kernels take sliding windows but no sinks)");
  }
  // 8-bit KV: the runner computes in bf16 and quantizes K/V as it caches them, with per-token
  // scales, or for FP8 with the checkpoint's static k_scale / v_scale where it has them.
  const bool scaled_kv = model::IsScaledKvType(config.kv_cache_dtype);
  if (!scaled_kv && config.kv_cache_dtype != model::DType::kBF16 &&
      config.kv_cache_dtype != model::DType::kF16) {
    return absl::InvalidArgumentError(
        "--kv-cache-dtype: the CUDA runner caches in bf16, f16, int8, fp8_e4m3 or fp8_e5m2");
  }
  const model::DType compute = scaled_kv ? model::DType::kBF16 : config.kv_cache_dtype;
  PAGODA_ASSIGN_OR_RETURN(
      std::unique_ptr<runner::cuda::CudaModelRunner> runner,
      runner::cuda::CudaModelRunner::Create(
          std::move(weights),
          {.device = device,
           .block_size = config.block_size,
           .dtype = compute,
           .kv_dtype = scaled_kv ? std::optional(config.kv_cache_dtype) : std::nullopt,
           .gpu_memory_utilization = config.gpu_memory_utilization,
           .kv_cache_memory_bytes = config.kv_cache_memory_bytes,
           .max_num_batched_tokens = config.max_num_batched_tokens,
           .max_num_seqs = config.max_num_seqs,
           .max_model_len = max_model_len,
           .enforce_eager = config.enforce_eager}));
  return runner;
#else
  (void)config;
  (void)device;
  (void)max_model_len;
  (void)weights;
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA support (nvcc was not found when it was "
      "configured); use --device cpu");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<EngineCore>> CreateEngineCore(const EngineConfig& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::optional<int> cuda_device, ParseDevice(config.device));
  if (config.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--block-size: must be positive, got ", config.block_size));
  }
  if (config.kv_cache_memory_bytes < 0) {
    return absl::InvalidArgumentError("--kv-cache-memory: must not be negative");
  }
  if (config.max_model_len < 0) {
    return absl::InvalidArgumentError("--max-model-len: must not be negative");
  }
  if (config.attention_sinks < 0 || config.streaming_window < 0) {
    return absl::InvalidArgumentError("--attention-sinks/--streaming-window: must not be negative");
  }
  if (config.attention_sinks > 0 && config.streaming_window == 0) {
    return absl::InvalidArgumentError(
        "--attention-sinks: needs --streaming-window (the recent tokens kept besides the sinks)");
  }
  PAGODA_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(config));
  int max_model_len = config.max_model_len > 0 ? config.max_model_len
                                               : loaded.weights->config().max_position_embeddings;
  PAGODA_ASSIGN_OR_RETURN(
      std::unique_ptr<runner::ModelRunner> runner,
      cuda_device.has_value()
          ? CreateCudaRunner(config, *cuda_device, max_model_len, std::move(loaded.weights))
          : CreateCpuRunner(config, max_model_len, std::move(loaded.weights)));
  const EngineCoreOptions core_options_defaults;
  if (config.max_model_len == 0 && runner->kv_window().full()) {
    // Unset: as long as the model allows and the whole KV cache holds (watermark excluded).
    // (Under a window a request holds only the window's blocks: the model's length stands.)
    const int64_t num_blocks = runner->num_kv_blocks();
    const int64_t watermark_blocks = static_cast<int64_t>(
        std::floor(core_options_defaults.watermark_ratio * static_cast<double>(num_blocks)));
    max_model_len = static_cast<int>(
        std::min<int64_t>(max_model_len, (num_blocks - watermark_blocks) * config.block_size));
  }
  EngineCoreOptions options;
  options.scheduler.max_num_seqs = config.max_num_seqs;
  options.scheduler.max_num_batched_tokens = config.max_num_batched_tokens;
  options.scheduler.step_time_ratio = config.step_time_ratio;
  options.scheduler.growth_reserve = {
      .initial_ratio = config.new_token_ratio,
      .min_ratio = std::min(config.min_new_token_ratio, config.new_token_ratio)};
  options.scheduler.max_model_len = max_model_len;
  options.scheduler.queue_policy = config.queue_policy;
  options.scheduler.preemption_policy = config.preemption_policy;
  options.scheduler.allocation_policy = config.allocation_policy;
  options.enable_prefix_caching = config.enable_prefix_caching;
  if (config.kv_host_cache_bytes < 0 || config.kv_offload_bytes <= 0) {
    return absl::InvalidArgumentError(
        "--kv-host-cache-bytes must not be negative, --kv-offload-bytes must be positive");
  }
  if (config.kv_host_cache_bytes > 0 || !config.kv_offload_dir.empty()) {
    PAGODA_ASSIGN_OR_RETURN(
        options.kv_tiering.fingerprint,
        FingerprintModel(config.model.empty() ? DefaultModelSpec() : config.model, config.seed,
                         *runner));
    options.kv_tiering.host_bytes = config.kv_host_cache_bytes;
    options.kv_tiering.disk_dir = config.kv_offload_dir;
    options.kv_tiering.disk_bytes = config.kv_offload_bytes;
    options.kv_tiering.policy = config.kv_offload_reload;
    options.kv_tiering.log = config.log;
  }
  std::string name =
      config.served_model_name.empty() ? std::move(loaded.name) : config.served_model_name;
  return EngineCore::Create(std::move(name), std::move(runner), std::move(loaded.tokenizer),
                            options);
}

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineConfig& config,
                                                     MetricsObserver* metrics_observer) {
  PAGODA_ASSIGN_OR_RETURN(std::unique_ptr<EngineCore> core, CreateEngineCore(config));
  return Engine::Create(std::move(core), {.max_waiting_requests = config.max_waiting_requests,
                                          .metrics_observer = metrics_observer});
}

}  // namespace pagoda::engine

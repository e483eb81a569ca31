#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/engine_core.h"
#include "kv_offload/cost_model.h"
#include "model/dtype.h"
#include "scheduler/scheduler.h"

namespace pagoda::engine {

// The model `pagodad` serves without --model: pagoda-kjv, a small Llama trained on the King
// James Bible that ships with Pagoda (docs/model_card.md). Its directory is the first of these
// that holds a config.json:
//   1. PAGODA_BUILTIN_MODEL_INSTALL_DIR, where `cmake --install` puts models/pagoda-kjv
//      (<prefix>/share/pagoda/models/pagoda-kjv);
//   2. PAGODA_BUILTIN_MODEL_DIR, models/pagoda-kjv of the source tree this binary was built from.
// Both are compile-time paths (models/CMakeLists.txt). When neither exists the default is
// "dummy:tiny": random weights, so the output is noise.
inline constexpr char kDefaultModel[] = "pagoda-kjv";

// What an empty EngineConfig::model stands for: the built-in model's directory, or "dummy:tiny"
// when it cannot be found (see kDefaultModel).
std::string DefaultModelSpec();

// Everything needed to build an engine from the command line (the server's flags map onto it).
struct EngineConfig {
  // "" = the built-in default model (DefaultModelSpec()); "dummy:<preset>"
  // (model::DummyPresetNames()) = random weights of a named shape with the byte tokenizer;
  // otherwise a Hugging Face model directory (config.json, *.safetensors, tokenizer.json).
  std::string model;
  // The name clients use and see (`model` fields, /v1/models, GetModelInfo, metric labels).
  // Empty: the model directory's name, or the dummy spec.
  std::string served_model_name;
  // Weights' matrix dtype: unset keeps the checkpoint's (F16 becomes F32); dummy models default
  // to BF16.
  std::optional<model::DType> weight_dtype;
  std::string device = "cpu";  // "cpu" | "cuda" | "cuda:N" (device ordinal N)
  int block_size = 16;
  // Bytes of KV cache (all layers, K and V). 0 = CPU: enough for max_num_seqs requests of
  // max_model_len tokens, capped at 2 GiB; CUDA: by gpu_memory_utilization.
  int64_t kv_cache_memory_bytes = 0;
  // CPU: F32 or BF16. CUDA: BF16 or F16, which is also the type of the weights and
  // activations there.
  model::DType kv_cache_dtype = model::DType::kBF16;
  // CUDA: the fraction of device memory this instance may use (weights, buffers, KV pool); with
  // kv_cache_memory_bytes > 0 the pool has exactly that size instead.
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;  // CUDA: no CUDA graphs for decode steps
  // CPU: repack bf16 matrices at load into the AMX tiles' operand layout where the CPU has AMX
  // (model::LlamaModel::Options::tile_matrices); false keeps the checkpoint's layout.
  bool repack_weights = true;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  // A step with running decodes adds prefill chunks only up to this many times a decode-only
  // step's time (scheduler::SchedulerOptions::step_time_ratio); 0 = off. pagodad's default is 2
  // (server/server_options.h); library users and tests get fixed token budgets unless they ask.
  double step_time_ratio = 0;
  // The growth reserve (scheduler::GrowthReserve): an admission leaves free this share of the
  // running requests' remaining max_tokens, learned online from here down to
  // min_new_token_ratio (capped at new_token_ratio), back up on a preemption. 0 = off.
  double new_token_ratio = 0;
  double min_new_token_ratio = 0.1;
  // 0 = the model's max_position_embeddings, capped by what the KV cache holds.
  int max_model_len = 0;
  int max_waiting_requests = 1024;
  bool enable_prefix_caching = true;
  scheduler::QueuePolicy queue_policy = scheduler::QueuePolicy::kFcfs;
  scheduler::PreemptionPolicy preemption_policy = scheduler::PreemptionPolicy::kLastAdmitted;
  // Benchmarks only (bench/kv_ablation_policies.h): how KV blocks are sized and kept. Null in
  // serving (paging with a KV cache). See scheduler::AllocationPolicy.
  std::shared_ptr<const scheduler::AllocationPolicy> allocation_policy;
  // StreamingLLM for full-attention models (CPU): every layer keeps the first attention_sinks
  // tokens and the last streaming_window ones; requests may then generate past max_model_len.
  // streaming_window 0 = off (attention_sinks must then be 0).
  int attention_sinks = 0;
  int streaming_window = 0;
  // Tiers below the KV pool (docs/operations.md, "KV offload"): host memory (bytes; 0 = none)
  // and a disk directory ("" = none) holding at most kv_offload_bytes. A block the pool evicts
  // is spilled there, and a later request whose prefix is there loads it instead of recomputing
  // it when the cost model (kv_offload_reload) says that is faster.
  int64_t kv_host_cache_bytes = 0;
  std::string kv_offload_dir;
  int64_t kv_offload_bytes = int64_t{16} << 30;
  kv_offload::ReloadPolicy kv_offload_reload = kv_offload::ReloadPolicy::kAuto;
  // Operational log lines of the tiers (a full disk); may be null.
  std::function<void(const std::string&)> log;
  int num_threads = 0;  // 0 = hardware concurrency
  uint64_t seed = 0;    // dummy weights
};

// Loads the model and tokenizer, sizes the KV cache and builds the EngineCore. Errors name the
// offending setting (e.g. "--model: no config.json in /x", "--device cuda: this build has no
// CUDA support").
absl::StatusOr<std::unique_ptr<EngineCore>> CreateEngineCore(const EngineConfig& config);

// CreateEngineCore, then the threaded Engine around it.
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(const EngineConfig& config,
                                                     MetricsObserver* metrics_observer = nullptr);

}  // namespace pagoda::engine

#pragma once

// What every front end needs to know about the served engine: static facts, fixed at start-up.

#include <optional>
#include <string>
#include <vector>

#include "common/attention_window.h"
#include "common/ids.h"
#include "model/dtype.h"
#include "model/model_config.h"

namespace pagoda::engine {

// Static facts about the served model and engine, for validation, GetModelInfo and logs.
// Immutable once the engine is built: any thread may read it.
struct EngineInfo {
  std::string model_name;
  model::ModelConfig config;
  int max_model_len = 0;
  int block_size = 0;
  int num_kv_blocks = 0;
  model::DType kv_dtype = model::DType::kF32;
  // FP8 KV with the checkpoint's static per-head scales (no scale stored per token).
  bool kv_static_scales = false;
  model::DType weight_dtype = model::DType::kF32;
  std::string backend;          // "cpu", "cuda"
  std::string backend_details;  // ModelRunner::Describe()
  // The tiers below the device pool and the cost model's inputs (start-up log); empty: none.
  std::string kv_offload_details;
  std::vector<std::string> kv_offload_media;  // the tiers, top first: "cpu", "disk"
  bool has_tokenizer = false;
  bool prefix_caching = true;
  int max_num_seqs = 0;
  int max_num_batched_tokens = 0;
  double step_time_ratio = 0;  // SchedulerOptions::step_time_ratio; 0 = off
  // What every layer attends when it is less than the whole context (a sliding-window model's
  // window, or StreamingLLM's sinks and window): the KV blocks before it are freed.
  common::AttentionWindow kv_window;
  // StreamingLLM (--attention-sinks/--streaming-window): requests may generate past
  // max_model_len.
  bool streaming = false;
  // Token ids that end generation (the tokenizer's, else the model config's).
  std::vector<TokenId> eos_token_ids;
  std::optional<TokenId> bos_token_id;
  int vocab_size = 0;
};

}  // namespace pagoda::engine

#pragma once

// The shape of a Llama-family decoder-only transformer, read from a Hugging Face config.json.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ids.h"

namespace pagoda::model {

// Llama 3.1-style RoPE frequency scaling (rope_scaling {"rope_type": "llama3", ...}).
struct RopeScaling {
  std::string type;  // "llama3", the only type supported
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 1.0f;
  int original_max_position_embeddings = 0;
};

// Hyperparameters of a Llama / Mistral / Qwen2 model. Plain data; a value returned by
// ParseModelConfig() satisfies: every size > 0, num_heads % num_kv_heads == 0, head_dim even,
// token ids in [0, vocab_size).
struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;  // SwiGLU hidden size
  int num_layers = 0;
  int num_heads = 0;     // query heads
  int num_kv_heads = 0;  // key/value heads; query head h uses kv head h / (num_heads/num_kv_heads)
  int head_dim = 0;      // q/k/v projections are [num_heads * head_dim, hidden_size] etc.
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;  // nullopt: plain RoPE
  int max_position_embeddings = 0;
  bool tie_word_embeddings = false;  // lm_head is embed_tokens
  bool attention_bias = false;       // q/k/v projections have biases (Qwen2: always true)
  // Sliding-window attention: a windowed layer's query attends only the last `sliding_window`
  // positions, itself included. Mistral v0.1 windows every layer; Qwen2 with
  // use_sliding_window the layers from max_window_layers on; `layer_types` (Qwen2, Gemma 3)
  // names each layer's kind. nullopt: no layer is windowed.
  std::optional<int> sliding_window;
  // [num_layers] when sliding_window is set: true for a windowed layer. Empty otherwise.
  std::vector<bool> windowed_layers;
  std::optional<TokenId> bos_token_id;
  std::vector<TokenId> eos_token_ids;  // config.json may give one id or a list

  // The window of layer `layer`: sliding_window for a windowed layer, 0 (full attention) else.
  int LayerWindow(int layer) const;
  // The window every layer has, when all are windowed (KV blocks before it can be freed);
  // 0 when some layer attends the full context.
  int UniformWindow() const;

  // Exact number of parameters: embedding, per-layer norms, projections and biases, final norm,
  // and lm_head unless tied.
  int64_t NumParameters() const;
};

// Parses the text of a Hugging Face config.json. Defaults follow transformers' config classes:
// num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads (then
// hidden_size must be divisible), rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings false.
// Unknown architectures, unsupported rope_scaling types or activations, o_proj/MLP biases and
// inconsistent shapes give InvalidArgument errors that name the field. Never throws.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view config_json);

// Reads `model_dir`/config.json. config.json is authoritative; only when it gives no
// eos_token_id are the ids of `model_dir`/generation_config.json (if present) used.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Reads a whole (small) file; NotFound when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace pagoda::model

#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pagoda::model {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", problem));
}

// Absent and null are the same to transformers: "use the default".
const Json* FindNonNull(const Json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer field; a float with an integral value (some exporters write 8192.0) is accepted.
absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, const char* key) {
  const Json* value = FindNonNull(object, key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FieldError(key, "out of range");
    }
    return static_cast<int64_t>(u);
  }
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_float()) {
    const double d = value->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      return static_cast<int64_t>(d);
    }
  }
  return FieldError(key, "expected an integer");
}

// An int field that must be present and in [1, INT32_MAX] unless `fallback` is given.
absl::StatusOr<int> PositiveInt(const Json& object, const char* key,
                                std::optional<int> fallback = std::nullopt) {
  PAGODA_ASSIGN_OR_RETURN(const std::optional<int64_t> value, OptionalInt(object, key));
  if (!value.has_value()) {
    if (fallback.has_value()) return *fallback;
    return FieldError(key, "missing");
  }
  if (*value <= 0 || *value > std::numeric_limits<int32_t>::max()) {
    return FieldError(key, absl::StrCat("must be positive and fit in int32, got ", *value));
  }
  return static_cast<int>(*value);
}

absl::StatusOr<float> PositiveFloat(const Json& object, const char* key, float fallback) {
  const Json* value = FindNonNull(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_number()) return FieldError(key, "expected a number");
  const double d = value->get<double>();
  if (!std::isfinite(d) || d <= 0 || d > std::numeric_limits<float>::max()) {
    return FieldError(key, "must be a positive finite number");
  }
  return static_cast<float>(d);
}

absl::StatusOr<bool> OptionalBool(const Json& object, const char* key, bool fallback) {
  const Json* value = FindNonNull(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return FieldError(key, "expected true or false");
  return value->get<bool>();
}

absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object, const char* key) {
  const Json* value = FindNonNull(object, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) return FieldError(key, "expected a string");
  return value->get<std::string>();
}

absl::StatusOr<TokenId> TokenIdValue(const Json& value, const char* key, int vocab_size) {
  if (!value.is_number_integer()) return FieldError(key, "expected an integer token id");
  const int64_t id = value.is_number_unsigned()
                         ? static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), 1u << 31))
                         : value.get<int64_t>();
  if (id < 0 || id >= vocab_size) {
    return FieldError(key, absl::StrCat("token id ", id, " not in [0, ", vocab_size, ")"));
  }
  return static_cast<TokenId>(id);
}

// eos_token_id is an integer or a list of integers.
absl::StatusOr<std::vector<TokenId>> EosTokenIds(const Json& object, int vocab_size) {
  std::vector<TokenId> ids;
  const Json* value = FindNonNull(object, "eos_token_id");
  if (value == nullptr) return ids;
  if (value->is_array()) {
    for (const Json& element : *value) {
      PAGODA_ASSIGN_OR_RETURN(const TokenId id, TokenIdValue(element, "eos_token_id", vocab_size));
      ids.push_back(id);
    }
    return ids;
  }
  PAGODA_ASSIGN_OR_RETURN(const TokenId id, TokenIdValue(*value, "eos_token_id", vocab_size));
  ids.push_back(id);
  return ids;
}

absl::StatusOr<std::optional<RopeScaling>> ParseRopeScaling(const Json& config) {
  const Json* value = FindNonNull(config, "rope_scaling");
  if (value == nullptr) return std::nullopt;
  if (!value->is_object()) return FieldError("rope_scaling", "expected an object or null");
  // transformers renamed "type" to "rope_type"; both appear in published configs.
  PAGODA_ASSIGN_OR_RETURN(std::optional<std::string> type, OptionalString(*value, "rope_type"));
  if (!type.has_value()) {
    PAGODA_ASSIGN_OR_RETURN(type, OptionalString(*value, "type"));
  }
  if (!type.has_value()) return FieldError("rope_scaling.rope_type", "missing");
  if (*type == "default") return std::nullopt;
  if (*type != "llama3") {
    return FieldError("rope_scaling.rope_type",
                      absl::StrCat("unsupported type \"", *type, "\" (supported: llama3)"));
  }
  RopeScaling scaling;
  scaling.type = *type;
  const Json& s = *value;
  PAGODA_ASSIGN_OR_RETURN(scaling.factor, PositiveFloat(s, "factor", 0.0f));
  PAGODA_ASSIGN_OR_RETURN(scaling.low_freq_factor, PositiveFloat(s, "low_freq_factor", 0.0f));
  PAGODA_ASSIGN_OR_RETURN(scaling.high_freq_factor, PositiveFloat(s, "high_freq_factor", 0.0f));
  PAGODA_ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                          PositiveInt(s, "original_max_position_embeddings"));
  if (scaling.factor == 0.0f || scaling.low_freq_factor == 0.0f ||
      scaling.high_freq_factor == 0.0f) {
    return FieldError("rope_scaling", "llama3 needs factor, low_freq_factor, high_freq_factor");
  }
  if (scaling.high_freq_factor <= scaling.low_freq_factor) {
    return FieldError("rope_scaling.high_freq_factor", "must exceed low_freq_factor");
  }
  return scaling;
}

absl::StatusOr<std::string> ParseArchitecture(const Json& config) {
  static constexpr const char* kSupported[] = {"LlamaForCausalLM", "MistralForCausalLM",
                                               "Qwen2ForCausalLM"};
  const Json* value = FindNonNull(config, "architectures");
  if (value == nullptr || !value->is_array() || value->empty() || !(*value)[0].is_string()) {
    return FieldError("architectures", "expected a non-empty list of strings");
  }
  const std::string architecture = (*value)[0].get<std::string>();
  for (const char* supported : kSupported) {
    if (architecture == supported) return architecture;
  }
  return FieldError("architectures",
                    absl::StrCat("unsupported architecture \"", architecture,
                                 "\" (supported: ", absl::StrJoin(kSupported, ", "), ")"));
}

// Features of the config that this implementation does not compute: refuse rather than
// silently produce a different model.
absl::Status CheckUnsupportedFeatures(const Json& config, bool is_qwen2) {
  PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> act,
                          OptionalString(config, "hidden_act"));
  if (act.has_value() && *act != "silu") {
    return FieldError("hidden_act", absl::StrCat("unsupported activation \"", *act, "\""));
  }
  PAGODA_ASSIGN_OR_RETURN(const bool mlp_bias, OptionalBool(config, "mlp_bias", false));
  if (mlp_bias) return FieldError("mlp_bias", "MLP biases are not supported");
  if (!is_qwen2) {
    // Llama's attention_bias also adds an o_proj bias, which ModelWeights has no place for.
    PAGODA_ASSIGN_OR_RETURN(const bool attention_bias,
                            OptionalBool(config, "attention_bias", false));
    if (attention_bias) return FieldError("attention_bias", "o_proj bias is not supported");
  }
  return absl::OkStatus();
}

absl::Status ParseShapes(const Json& config, ModelConfig& c) {
  PAGODA_ASSIGN_OR_RETURN(c.vocab_size, PositiveInt(config, "vocab_size"));
  PAGODA_ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(config, "hidden_size"));
  PAGODA_ASSIGN_OR_RETURN(c.intermediate_size, PositiveInt(config, "intermediate_size"));
  PAGODA_ASSIGN_OR_RETURN(c.num_layers, PositiveInt(config, "num_hidden_layers"));
  PAGODA_ASSIGN_OR_RETURN(c.num_heads, PositiveInt(config, "num_attention_heads"));
  PAGODA_ASSIGN_OR_RETURN(c.num_kv_heads, PositiveInt(config, "num_key_value_heads", c.num_heads));
  PAGODA_ASSIGN_OR_RETURN(const std::optional<int64_t> head_dim, OptionalInt(config, "head_dim"));
  if (head_dim.has_value()) {
    PAGODA_ASSIGN_OR_RETURN(c.head_dim, PositiveInt(config, "head_dim"));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return FieldError("hidden_size", absl::StrCat(c.hidden_size,
                                                    " is not divisible by "
                                                    "num_attention_heads ",
                                                    c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return FieldError(
        "num_key_value_heads",
        absl::StrCat(c.num_kv_heads, " does not divide num_attention_heads ", c.num_heads));
  }
  if (c.head_dim % 2 != 0) {
    return FieldError("head_dim", absl::StrCat(c.head_dim, " is odd; RoPE rotates pairs"));
  }
  if (static_cast<int64_t>(c.num_heads) * c.head_dim > std::numeric_limits<int32_t>::max()) {
    return FieldError("head_dim", "num_attention_heads * head_dim overflows");
  }
  PAGODA_ASSIGN_OR_RETURN(c.max_position_embeddings,
                          PositiveInt(config, "max_position_embeddings"));
  return absl::OkStatus();
}

// Which layers a windowed config windows: `layer_types` when present, else Qwen2's
// max_window_layers rule (layers from it on; transformers' default 28), else every layer.
absl::Status ParseWindowedLayers(const Json& config, bool is_qwen2, ModelConfig& c) {
  c.windowed_layers.assign(static_cast<size_t>(c.num_layers), true);
  if (const Json* types = FindNonNull(config, "layer_types"); types != nullptr) {
    if (!types->is_array() || static_cast<int>(types->size()) != c.num_layers) {
      return FieldError("layer_types", "must be an array of num_hidden_layers strings");
    }
    for (int i = 0; i < c.num_layers; ++i) {
      const Json& type = (*types)[static_cast<size_t>(i)];
      if (type == "sliding_attention") continue;
      if (type != "full_attention") {
        return FieldError("layer_types", absl::StrCat("entry ", i, " is ", type.dump(),
                                                      "; expected sliding_attention or "
                                                      "full_attention"));
      }
      c.windowed_layers[static_cast<size_t>(i)] = false;
    }
    return absl::OkStatus();
  }
  if (is_qwen2) {
    PAGODA_ASSIGN_OR_RETURN(const std::optional<int64_t> first,
                            OptionalInt(config, "max_window_layers"));
    const int64_t first_windowed = first.value_or(28);
    if (first_windowed < 0) return FieldError("max_window_layers", "must be >= 0");
    for (int i = 0; i < c.num_layers && i < first_windowed; ++i) {
      c.windowed_layers[static_cast<size_t>(i)] = false;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSlidingWindow(const Json& config, bool is_qwen2, ModelConfig& c) {
  // Qwen2 configs carry a sliding_window that is only used with use_sliding_window: true.
  PAGODA_ASSIGN_OR_RETURN(const bool use_sliding_window,
                          OptionalBool(config, "use_sliding_window", !is_qwen2));
  if (!use_sliding_window) return absl::OkStatus();
  PAGODA_ASSIGN_OR_RETURN(const std::optional<int64_t> window,
                          OptionalInt(config, "sliding_window"));
  if (!window.has_value()) return absl::OkStatus();
  PAGODA_ASSIGN_OR_RETURN(c.sliding_window, PositiveInt(config, "sliding_window"));
  PAGODA_RETURN_IF_ERROR(ParseWindowedLayers(config, is_qwen2, c));
  if (std::find(c.windowed_layers.begin(), c.windowed_layers.end(), true) ==
      c.windowed_layers.end()) {
    c.sliding_window.reset();  // no layer uses it
    c.windowed_layers.clear();
  }
  return absl::OkStatus();
}

}  // namespace

int ModelConfig::LayerWindow(int layer) const {
  if (!sliding_window.has_value()) return 0;
  return windowed_layers[static_cast<size_t>(layer)] ? *sliding_window : 0;
}

int ModelConfig::UniformWindow() const {
  if (!sliding_window.has_value()) return 0;
  for (const bool windowed : windowed_layers) {
    if (!windowed) return 0;
  }
  return *sliding_window;
}

int64_t ModelConfig::NumParameters() const {
  const int64_t hidden = hidden_size;
  const int64_t q_dim = static_cast<int64_t>(num_heads) * head_dim;
  const int64_t kv_dim = static_cast<int64_t>(num_kv_heads) * head_dim;
  int64_t per_layer = 2 * hidden;                                     // the two RMSNorms
  per_layer += hidden * q_dim * 2 + hidden * kv_dim * 2;              // q, o, k, v
  per_layer += 3 * hidden * static_cast<int64_t>(intermediate_size);  // gate, up, down
  if (attention_bias) per_layer += q_dim + 2 * kv_dim;
  const int64_t embedding = static_cast<int64_t>(vocab_size) * hidden;
  return embedding + per_layer * num_layers + hidden + (tie_word_embeddings ? 0 : embedding);
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view config_json) {
  const Json config = Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!config.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  ModelConfig c;
  PAGODA_ASSIGN_OR_RETURN(c.architecture, ParseArchitecture(config));
  const bool is_qwen2 = c.architecture == "Qwen2ForCausalLM";
  PAGODA_RETURN_IF_ERROR(CheckUnsupportedFeatures(config, is_qwen2));
  PAGODA_RETURN_IF_ERROR(ParseShapes(config, c));
  PAGODA_ASSIGN_OR_RETURN(c.rms_norm_eps, PositiveFloat(config, "rms_norm_eps", 1e-6f));
  PAGODA_ASSIGN_OR_RETURN(c.rope_theta, PositiveFloat(config, "rope_theta", 10000.0f));
  PAGODA_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(config));
  PAGODA_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                          OptionalBool(config, "tie_word_embeddings", false));
  c.attention_bias = is_qwen2;  // Qwen2's q/k/v always have biases; others refused above
  PAGODA_RETURN_IF_ERROR(ParseSlidingWindow(config, is_qwen2, c));
  if (const Json* bos = FindNonNull(config, "bos_token_id"); bos != nullptr) {
    PAGODA_ASSIGN_OR_RETURN(c.bos_token_id, TokenIdValue(*bos, "bos_token_id", c.vocab_size));
  }
  PAGODA_ASSIGN_OR_RETURN(c.eos_token_ids, EosTokenIds(config, c.vocab_size));
  return c;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return contents.str();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  PAGODA_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(model_dir + "/config.json"));
  PAGODA_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text));
  if (!config.eos_token_ids.empty()) return config;
  absl::StatusOr<std::string> generation = ReadFileToString(model_dir + "/generation_config.json");
  if (!generation.ok()) return config;  // optional file
  const Json json = Json::parse(*generation, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("generation_config.json: not a JSON object");
  }
  PAGODA_ASSIGN_OR_RETURN(config.eos_token_ids, EosTokenIds(json, config.vocab_size));
  return config;
}

}  // namespace pagoda::model

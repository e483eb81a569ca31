#include "model/model_config.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kLlama32_1B[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";

constexpr char kLlama31_8B[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
  "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

constexpr char kLlama2_7B[] = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "tie_word_embeddings": false, "torch_dtype": "float16", "vocab_size": 32000})";

constexpr char kTinyLlama[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 32000})";

constexpr char kSmolLM135M[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0,
  "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.02,
  "intermediate_size": 1536, "max_position_embeddings": 2048, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": true, "torch_dtype": "float32", "vocab_size": 49152})";

constexpr char kMistral7B[] = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 32000})";

constexpr char kQwen2_05B[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
  "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 131072,
  "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
  "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

TEST(ModelConfigTest, Llama32_1B) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama32_1B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->intermediate_size, 8192);
  EXPECT_EQ(c->num_layers, 16);
  EXPECT_EQ(c->num_heads, 32);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->type, "llama3");
  EXPECT_FLOAT_EQ(c->rope_scaling->factor, 32.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling->low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling->high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->sliding_window.has_value());
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c->NumParameters(), 1235814400);
}

TEST(ModelConfigTest, Llama31_8BAndLlama2) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama31_8B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);  // defaulted: 4096 / 32
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001));
  EXPECT_FLOAT_EQ(c->rope_scaling->factor, 8.0f);
  EXPECT_EQ(c->NumParameters(), 8030261248);

  c = ParseModelConfig(kLlama2_7B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 32);
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);  // absent: default
  EXPECT_FALSE(c->rope_scaling.has_value());
  EXPECT_EQ(c->NumParameters(), 6738415616);
}

TEST(ModelConfigTest, TinyLlamaAndSmolLM) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kTinyLlama);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->NumParameters(), 1100048384);

  c = ParseModelConfig(kSmolLM135M);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->bos_token_id, 0);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(0));
  EXPECT_EQ(c->NumParameters(), 134515008);
}

TEST(ModelConfigTest, Mistral7B) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kMistral7B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "MistralForCausalLM");
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_EQ(c->UniformWindow(), 4096);  // every layer
  EXPECT_EQ(c->LayerWindow(0), 4096);
  EXPECT_EQ(c->LayerWindow(31), 4096);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->NumParameters(), 7241732096);
}

TEST(ModelConfigTest, Qwen2HasAttentionBias) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kQwen2_05B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_FLOAT_EQ(c->rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-6f);
  EXPECT_FALSE(c->sliding_window.has_value());  // use_sliding_window: false
  EXPECT_EQ(c->NumParameters(), 494032768);
}

std::string Edit(std::string text, const std::string& from, const std::string& to);

TEST(ModelConfigTest, Qwen2WindowsTheLayersFromMaxWindowLayersOrAsLayerTypesSay) {
  std::string json =
      Edit(Edit(kQwen2_05B, R"("use_sliding_window": false)", R"("use_sliding_window": true)"),
           R"("sliding_window": 131072)", R"("sliding_window": 512)");
  json = Edit(json, R"("max_window_layers": 24)", R"("max_window_layers": 20)");
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 512);
  EXPECT_EQ(c->LayerWindow(19), 0);
  EXPECT_EQ(c->LayerWindow(20), 512);
  EXPECT_EQ(c->LayerWindow(23), 512);
  EXPECT_EQ(c->UniformWindow(), 0);  // mixed: memory is accounted as full attention

  // max_window_layers 24 = num_hidden_layers: no layer is windowed, so no window at all.
  c = ParseModelConfig(Edit(json, R"("max_window_layers": 20)", R"("max_window_layers": 24)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->sliding_window.has_value());

  // layer_types overrides max_window_layers.
  std::string types = R"("layer_types": [)";
  for (int i = 0; i < 24; ++i) {
    types += i % 2 == 0 ? R"("sliding_attention")" : R"("full_attention")";
    types += i < 23 ? "," : "],";
  }
  c = ParseModelConfig(Edit(json, R"("max_window_layers": 20,)", types));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->LayerWindow(0), 512);
  EXPECT_EQ(c->LayerWindow(1), 0);
  EXPECT_EQ(c->LayerWindow(22), 512);
  const absl::StatusOr<ModelConfig> bad =
      ParseModelConfig(Edit(json, R"("max_window_layers": 20,)", R"("layer_types": ["x"],)"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("layer_types"));
}

// Replaces the first occurrence of `from` in `text`.
std::string Edit(std::string text, const std::string& from, const std::string& to) {
  const size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

void ExpectInvalid(const std::string& json, const std::string& field) {
  const absl::StatusOr<ModelConfig> c = ParseModelConfig(json);
  ASSERT_FALSE(c.ok()) << field;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(field));
}

TEST(ModelConfigTest, InconsistentShapesNameTheField) {
  const std::string base = kTinyLlama;
  ExpectInvalid(Edit(base, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5"),
                "num_key_value_heads");
  ExpectInvalid(Edit(base, "\"hidden_size\": 2048", "\"hidden_size\": 2050"), "hidden_size");
  ExpectInvalid(Edit(base, "\"hidden_size\": 2048", "\"hidden_size\": 0"), "hidden_size");
  ExpectInvalid(Edit(base, "\"vocab_size\": 32000", "\"vocab_size\": -3"), "vocab_size");
  ExpectInvalid(Edit(base, "\"num_hidden_layers\": 22", "\"num_hidden_layers\": \"22\""),
                "num_hidden_layers");
  ExpectInvalid(Edit(base, "\"intermediate_size\": 5632,", ""), "intermediate_size");
  ExpectInvalid(Edit(base, "\"hidden_size\": 2048", "\"hidden_size\": 2048, \"head_dim\": 63"),
                "head_dim");
  ExpectInvalid(Edit(base, "\"bos_token_id\": 1", "\"bos_token_id\": 32000"), "bos_token_id");
  ExpectInvalid(Edit(base, "\"eos_token_id\": 2", "\"eos_token_id\": [2, \"x\"]"), "eos_token_id");
  ExpectInvalid(Edit(base, "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1"), "rms_norm_eps");
  ExpectInvalid(Edit(base, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""), "hidden_act");
  ExpectInvalid(Edit(base, "\"attention_bias\": false", "\"attention_bias\": true"),
                "attention_bias");
}

TEST(ModelConfigTest, ExplicitHeadDimMayDifferFromHiddenOverHeads) {
  // Like Gemma/Qwen3-style configs: q_dim = 32 * 128 != hidden_size 2048.
  absl::StatusOr<ModelConfig> c = ParseModelConfig(Edit(kTinyLlama, "\"hidden_size\": 2048",
                                                        "\"hidden_size\": 2048, "
                                                        "\"head_dim\": 128"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
}

TEST(ModelConfigTest, RopeScalingVariants) {
  // The older spelling "type" is accepted.
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(Edit(kLlama32_1B, "\"rope_type\": \"llama3\"", "\"type\": \"llama3\""));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling->type, "llama3");
  ExpectInvalid(Edit(kLlama32_1B, "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\""),
                "rope_scaling.rope_type");
  ExpectInvalid(Edit(kLlama32_1B, "\"factor\": 32.0,", ""), "rope_scaling");
  ExpectInvalid(Edit(kLlama32_1B, "\"original_max_position_embeddings\": 8192,", ""),
                "original_max_position_embeddings");
}

TEST(ModelConfigTest, RejectsUnknownArchitectureAndBadJson) {
  ExpectInvalid(Edit(kTinyLlama, "LlamaForCausalLM", "GPT2LMHeadModel"), "architectures");
  ExpectInvalid(Edit(kTinyLlama, "[\"LlamaForCausalLM\"]", "[]"), "architectures");
  ExpectInvalid("{\"architectures\": ", "JSON");
  ExpectInvalid("[1, 2]", "object");
  ExpectInvalid("", "JSON");
}

TEST(ModelConfigTest, Stories260K) {
  const std::string dir = std::string(PAGODA_SHARED_MODELS_DIR) + "/stories260K";
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << "no " << dir;
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c->NumParameters(), 260032);  // the README's count
}

TEST(ModelConfigTest, LoadMissingDirIsNotFound) {
  EXPECT_EQ(LoadModelConfig("/nonexistent/model").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pagoda::model

// The C++ forward pass against an independent NumPy implementation
// (tests/reference/llama_reference.py, run with Debian's /usr/bin/python3), on small random
// models written here in Hugging Face format, and on the trained stories260K model when
// ../shared/models is present.

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "model/testing/forward_batch_builder.h"
#include "nlohmann/json.hpp"
#include "tokenizer/tokenizer_loader.h"

namespace pagoda::model {
namespace {

constexpr int kBlockSize = 8;

bool ReferenceAvailable() {
  return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

// Runs the NumPy reference; returns its JSON output.
nlohmann::json RunReference(const std::string& model_dir, const std::vector<TokenId>& tokens,
                            const std::string& extra_args) {
  const std::string command =
      absl::StrCat("/usr/bin/python3 ", PAGODA_SOURCE_DIR, "/tests/reference/llama_reference.py ",
                   model_dir, " --tokens ", absl::StrJoin(tokens, ","), " ", extra_args);
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(pipe), 0) << command;
  return nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
}

// Runs `tokens` through the model in one prefill; returns logits of every position.
std::vector<std::vector<float>> Prefill(LlamaModel& model, const std::vector<TokenId>& tokens) {
  const int n = static_cast<int>(tokens.size());
  auto cache =
      CpuKvCache::Create(model.config(), (n + kBlockSize - 1) / kBlockSize, kBlockSize).value();
  std::vector<int32_t> blocks((n + kBlockSize - 1) / kBlockSize);
  std::iota(blocks.begin(), blocks.end(), 0);
  const testing::ForwardBatchBuilder builder(
      {{.tokens = tokens, .first = 0, .blocks = blocks, .all_logits = true}}, kBlockSize);
  std::vector<float> logits;
  const absl::Status s = model.Forward(builder.batch(), *cache, &logits);
  EXPECT_TRUE(s.ok()) << s;
  const int vocab = model.config().vocab_size;
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < n; ++i)
    rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
  return rows;
}

// Greedy generation with the paged cache: one prefill, then one decode step per token.
std::vector<TokenId> GreedyWithCache(LlamaModel& model, std::vector<TokenId> tokens, int steps) {
  const int max_len = static_cast<int>(tokens.size()) + steps;
  const int num_blocks = (max_len + kBlockSize - 1) / kBlockSize;
  auto cache = CpuKvCache::Create(model.config(), num_blocks, kBlockSize).value();
  std::vector<int32_t> table(num_blocks);
  std::iota(table.rbegin(), table.rend(), 0);  // reversed: only the table orders the context
  std::vector<TokenId> generated;
  int computed = 0;
  for (int step = 0; step < steps; ++step) {
    const testing::ForwardBatchBuilder builder(
        {{.tokens = tokens, .first = computed, .blocks = table}}, kBlockSize);
    std::vector<float> logits;
    const absl::Status s = model.Forward(builder.batch(), *cache, &logits);
    EXPECT_TRUE(s.ok()) << s;
    computed = static_cast<int>(tokens.size());
    const TokenId next =
        static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    tokens.push_back(next);
    generated.push_back(next);
  }
  return generated;
}

struct RandomModelSpec {
  std::string name;
  std::string config_json;
  bool attention_bias;
  bool tied;
  // FP8 KV scales as vLLM checkpoints carry them: k_scale a scalar, v_scale one per KV head.
  bool kv_scales = false;
};

// Writes config.json and model.safetensors of a random model; returns the directory, one per
// process (ctest runs tests in parallel processes, and two tests write the same spec: sharing
// the directory let one rewrite a checkpoint while the other was reading it).
std::string WriteRandomModel(const RandomModelSpec& spec) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           absl::StrCat("pagoda_ref_", spec.name, "_", getpid()))
                              .string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << spec.config_json;
  const ModelConfig c = ParseModelConfig(spec.config_json).value();
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 0.2f);
  SafetensorsWriter writer;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float offset = 0.0f) {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
    std::vector<float> values(n);
    for (float& v : values) v = offset + dist(rng);
    ASSERT_TRUE(writer.AddFloats(name, DType::kF32, shape, values).ok());
  };
  const int64_t q = int64_t{c.num_heads} * c.head_dim, kv = int64_t{c.num_kv_heads} * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "input_layernorm.weight", {c.hidden_size}, 1.0f);
    add(p + "post_attention_layernorm.weight", {c.hidden_size}, 1.0f);
    add(p + "self_attn.q_proj.weight", {q, c.hidden_size});
    add(p + "self_attn.k_proj.weight", {kv, c.hidden_size});
    add(p + "self_attn.v_proj.weight", {kv, c.hidden_size});
    add(p + "self_attn.o_proj.weight", {c.hidden_size, q});
    if (spec.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    add(p + "mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size});
    add(p + "mlp.up_proj.weight", {c.intermediate_size, c.hidden_size});
    add(p + "mlp.down_proj.weight", {c.hidden_size, c.intermediate_size});
    if (spec.kv_scales) {
      EXPECT_TRUE(writer.AddFloats(p + "self_attn.k_scale", DType::kF32, {}, {0.02f}).ok());
      std::vector<float> v_scale(c.num_kv_heads);
      for (int h = 0; h < c.num_kv_heads; ++h) v_scale[h] = 0.02f + 0.01f * h;
      EXPECT_TRUE(
          writer.AddFloats(p + "self_attn.v_scale", DType::kF32, {c.num_kv_heads}, v_scale).ok());
    }
  }
  add("model.norm.weight", {c.hidden_size}, 1.0f);
  if (!spec.tied) add("lm_head.weight", {c.vocab_size, c.hidden_size});
  EXPECT_TRUE(writer.WriteFile(dir + "/model.safetensors").ok());
  return dir;
}

std::vector<RandomModelSpec> Specs() {
  return {
      {"llama_gqa",
       R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":96,
           "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
           "vocab_size":100,"rms_norm_eps":1e-5,"rope_theta":10000.0,
           "max_position_embeddings":128,"tie_word_embeddings":false,
           "bos_token_id":1,"eos_token_id":2})",
       false, false},
      {"qwen2_bias_tied",
       R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,"intermediate_size":80,
           "num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,
           "vocab_size":90,"rms_norm_eps":1e-6,"rope_theta":1000000.0,
           "max_position_embeddings":128,"tie_word_embeddings":true,
           "bos_token_id":1,"eos_token_id":2})",
       true, true},
      {"llama3_rope_scaling",
       R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
           "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,
           "vocab_size":80,"rms_norm_eps":1e-5,"rope_theta":500000.0,
           "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
                           "high_freq_factor":4.0,"original_max_position_embeddings":32},
           "max_position_embeddings":256,"tie_word_embeddings":true,
           "bos_token_id":1,"eos_token_id":[2,3]})",
       false, true},
  };
}

TEST(LlamaReferenceTest, LogitsMatchNumpyOnRandomHfModels) {
  if (!ReferenceAvailable()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  for (const RandomModelSpec& spec : Specs()) {
    const std::string dir = WriteRandomModel(spec);
    auto model = LlamaModel::Create(LoadModelWeights(dir, {}).value(), {.num_threads = 2});
    ASSERT_TRUE(model.ok()) << spec.name << ": " << model.status();
    std::vector<TokenId> tokens(45);
    std::mt19937 rng(7);
    for (TokenId& t : tokens) t = static_cast<TokenId>(rng() % (*model)->config().vocab_size);
    const auto ours = Prefill(**model, tokens);
    const nlohmann::json ref = RunReference(dir, tokens, "");
    ASSERT_FALSE(ref.is_discarded()) << spec.name;
    ASSERT_EQ(ref["logits"].size(), tokens.size());
    // The reference computes in float64; ours in float32 over a few layers.
    double max_diff = 0;
    for (size_t p = 0; p < tokens.size(); ++p) {
      for (size_t v = 0; v < ours[p].size(); ++v) {
        max_diff = std::max(max_diff, std::fabs(ours[p][v] - ref["logits"][p][v].get<double>()));
      }
    }
    EXPECT_LT(max_diff, 1e-4) << spec.name;
    RecordProperty(spec.name + "_max_abs_diff", std::to_string(max_diff));
    std::filesystem::remove_all(dir);
  }
}

// Every position's logits with the paged cache, as serving computes them: a first chunk of
// `first_chunk` tokens, then one token per step; before each step the blocks no query of it can
// attend (under `window`) get null table entries, as the block manager frees them, so a read
// of a freed block fails validation or faults instead of passing silently.
std::vector<std::vector<float>> IncrementalLogits(LlamaModel& model,
                                                  const std::vector<TokenId>& tokens,
                                                  int block_size, common::AttentionWindow window,
                                                  int first_chunk) {
  const int n = static_cast<int>(tokens.size());
  const int num_blocks = (n + block_size - 1) / block_size;
  auto cache = CpuKvCache::Create(model.config(), num_blocks, block_size).value();
  std::vector<int32_t> table(num_blocks);
  std::iota(table.rbegin(), table.rend(), 0);
  std::vector<std::vector<float>> rows;
  const int vocab = model.config().vocab_size;
  for (int first = 0; first < n;) {
    const int end = first == 0 ? std::min(n, first_chunk) : first + 1;
    std::vector<int32_t> live = table;
    for (int b = 0; b < num_blocks; ++b) {
      if (window.IsDead(b * block_size, first) && window.IsDead((b + 1) * block_size - 1, first)) {
        live[b] = -1;
      }
    }
    live.resize((end + block_size - 1) / block_size);
    const std::vector<TokenId> prefix(tokens.begin(), tokens.begin() + end);
    const testing::ForwardBatchBuilder builder(
        {{.tokens = prefix, .first = first, .blocks = live, .all_logits = true}}, block_size);
    std::vector<float> logits;
    const absl::Status s = model.Forward(builder.batch(), *cache, &logits);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return rows;
    for (int i = 0; i < end - first; ++i) {
      rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
    }
    first = end;
  }
  return rows;
}

double MaxAbsDiff(const std::vector<std::vector<float>>& ours, const nlohmann::json& ref) {
  double max_diff = 0;
  EXPECT_EQ(ours.size(), ref["logits"].size());
  for (size_t p = 0; p < std::min(ours.size(), ref["logits"].size()); ++p) {
    for (size_t v = 0; v < ours[p].size(); ++v) {
      max_diff = std::max(max_diff, std::fabs(ours[p][v] - ref["logits"][p][v].get<double>()));
    }
  }
  return max_diff;
}

std::vector<TokenId> RandomTokens(int n, int vocab, uint32_t seed) {
  std::vector<TokenId> tokens(n);
  std::mt19937 rng(seed);
  for (TokenId& t : tokens) t = static_cast<TokenId>(rng() % vocab);
  return tokens;
}

// Sliding-window models against the NumPy reference's windowed attention: a Mistral-like model
// (every layer windowed) and a Qwen2-like one (max_window_layers: the second layer only), with
// windows smaller than a block, not a multiple of it, and larger; one prefill of the whole text,
// and the serving path (chunk, then decodes, dead blocks freed).
TEST(LlamaReferenceTest, SlidingWindowModelsMatchNumpyAcrossWindowsAndBlockSizes) {
  if (!ReferenceAvailable()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  for (const int window : {3, 6, 13}) {
    const std::string mistral = absl::StrCat(
        R"({"architectures":["MistralForCausalLM"],"hidden_size":64,"intermediate_size":96,
           "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
           "vocab_size":100,"rms_norm_eps":1e-5,"rope_theta":10000.0,"sliding_window":)",
        window, R"(,"max_position_embeddings":128,"bos_token_id":1,"eos_token_id":2})");
    const std::string qwen2 = absl::StrCat(
        R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":48,"intermediate_size":80,
           "num_hidden_layers":2,"num_attention_heads":6,"num_key_value_heads":2,
           "vocab_size":90,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"use_sliding_window":true,
           "max_window_layers":1,"sliding_window":)",
        window, R"(,"max_position_embeddings":128,"tie_word_embeddings":true})");
    for (const RandomModelSpec& spec :
         {RandomModelSpec{absl::StrCat("mistral_w", window), mistral, false, false},
          RandomModelSpec{absl::StrCat("qwen2_mixed_w", window), qwen2, true, true}}) {
      const std::string dir = WriteRandomModel(spec);
      auto model = LlamaModel::Create(LoadModelWeights(dir, {}).value(), {.num_threads = 2});
      ASSERT_TRUE(model.ok()) << spec.name << ": " << model.status();
      const std::vector<TokenId> tokens = RandomTokens(40, (*model)->config().vocab_size, 11);
      const nlohmann::json ref = RunReference(dir, tokens, "");
      ASSERT_FALSE(ref.is_discarded()) << spec.name;
      EXPECT_LT(MaxAbsDiff(Prefill(**model, tokens), ref), 1e-4) << spec.name;
      for (const int bs : {2, 4, 16}) {
        EXPECT_LT(MaxAbsDiff(IncrementalLogits(**model, tokens, bs, (*model)->KvWindow(), 9), ref),
                  1e-4)
            << spec.name << " block size " << bs;
      }
      EXPECT_EQ((*model)->KvWindow().sliding_window, spec.attention_bias ? 0 : window);
      std::filesystem::remove_all(dir);
    }
  }
}

// StreamingLLM against the reference's literal implementation (keys un-rotated, every key
// rotated per query at its cache position): ours caches keys rotated at their text positions
// and rotates a second copy of each query for the sinks. Through one prefill and through the
// serving path, well past sinks + window.
TEST(LlamaReferenceTest, AttentionSinksMatchNumpyStreamingLlm) {
  if (!ReferenceAvailable()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  const std::string dir = WriteRandomModel(Specs()[2]);  // llama3 rope scaling, GQA 4:1
  for (const auto& [sinks, window] : {std::pair{4, 12}, std::pair{1, 7}, std::pair{0, 10}}) {
    const common::AttentionWindow streaming{.sliding_window = window, .sink_tokens = sinks};
    auto model = LlamaModel::Create(LoadModelWeights(dir, {}).value(),
                                    {.num_threads = 2, .streaming = streaming});
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<TokenId> tokens = RandomTokens(60, (*model)->config().vocab_size, 5);
    const nlohmann::json ref =
        RunReference(dir, tokens, absl::StrCat("--sinks ", sinks, " --streaming-window ", window));
    ASSERT_FALSE(ref.is_discarded());
    const double prefill = MaxAbsDiff(Prefill(**model, tokens), ref);
    EXPECT_LT(prefill, 1e-4) << sinks << "+" << window;
    for (const int bs : {4, 8}) {
      EXPECT_LT(MaxAbsDiff(IncrementalLogits(**model, tokens, bs, streaming, 5), ref), 1e-4)
          << sinks << "+" << window << " block size " << bs;
    }
    RecordProperty(absl::StrCat("sinks", sinks, "_window", window, "_max_abs_diff"),
                   std::to_string(prefill));
  }
  std::filesystem::remove_all(dir);
}

// FP8 with a checkpoint's static KV scales (k_scale scalar, v_scale per head): loaded per KV
// head, no scale stored per token (exactly half of bf16's bytes per token), cached decode equal
// to one prefill over the same FP8 cache, and logits as near the float64 reference as with
// dynamic per-token scales.
TEST(LlamaReferenceTest, Fp8WithCheckpointKvScalesMatchesNumpy) {
  if (!ReferenceAvailable()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  RandomModelSpec spec = Specs()[0];  // llama_gqa: 2 KV heads
  spec.name = "llama_gqa_kv_scales";
  spec.kv_scales = true;
  const std::string dir = WriteRandomModel(spec);
  auto weights = LoadModelWeights(dir, {});
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE((*weights)->has_kv_scales());
  EXPECT_EQ((*weights)->layers()[1].k_scale, std::vector<float>({0.02f, 0.02f}));
  EXPECT_EQ((*weights)->layers()[1].v_scale, std::vector<float>({0.02f, 0.03f}));
  const ModelConfig config = (*weights)->config();
  EXPECT_EQ(KvBytesPerToken(config, DType::kFp8E4M3, /*per_token_scales=*/false) * 2,
            KvBytesPerToken(config, DType::kBF16));
  const StaticKvScales scales = CheckpointKvScales(**weights);
  auto model = LlamaModel::Create(*std::move(weights), {.num_threads = 2});
  ASSERT_TRUE(model.ok());
  const std::vector<TokenId> tokens = RandomTokens(30, config.vocab_size, 9);
  const nlohmann::json ref = RunReference(dir, tokens, "");
  ASSERT_FALSE(ref.is_discarded());
  const int n = static_cast<int>(tokens.size());
  const int vocab = config.vocab_size;
  std::vector<int32_t> blocks((n + kBlockSize - 1) / kBlockSize);
  std::iota(blocks.begin(), blocks.end(), 0);
  // The logits of one prefill over a cache of `dtype`, static or dynamic scales.
  const auto prefill = [&](DType dtype, StaticKvScales static_scales) {
    auto cache = CpuKvCache::Create(config, static_cast<int>(blocks.size()), kBlockSize, dtype,
                                    std::move(static_scales));
    EXPECT_TRUE(cache.ok()) << cache.status();
    const testing::ForwardBatchBuilder one_shot(
        {{.tokens = tokens, .first = 0, .blocks = blocks, .all_logits = true}}, kBlockSize);
    std::vector<float> logits;
    EXPECT_TRUE((*model)->Forward(one_shot.batch(), **cache, &logits).ok());
    return std::make_pair(std::move(logits), *std::move(cache));
  };
  const auto max_diff_to_reference = [&](const std::vector<float>& logits) {
    double max_diff = 0;
    for (int p = 0; p < n; ++p) {
      for (int v = 0; v < vocab; ++v) {
        max_diff = std::max(max_diff, std::fabs(logits[static_cast<size_t>(p) * vocab + v] -
                                                ref["logits"][p][v].get<double>()));
      }
    }
    return max_diff;
  };
  for (const DType dtype : {DType::kFp8E4M3, DType::kFp8E5M2}) {
    auto [logits, cache] = prefill(dtype, scales);
    ASSERT_TRUE(cache->static_scales());
    // The same cache, recomputed token by token from position 10 (its first 10 tokens are what
    // the prefill wrote, identically): cached decode equals recomputation.
    for (int p = 10; p < n; ++p) {
      const std::vector<TokenId> prefix(tokens.begin(), tokens.begin() + p + 1);
      const testing::ForwardBatchBuilder step({{.tokens = prefix, .first = p, .blocks = blocks}},
                                              kBlockSize);
      std::vector<float> row;
      ASSERT_TRUE((*model)->Forward(step.batch(), *cache, &row).ok());
      for (int v = 0; v < vocab; ++v) {
        ASSERT_NEAR(row[v], logits[static_cast<size_t>(p) * vocab + v], 1e-4)
            << DTypeName(dtype) << " position " << p;
      }
    }
    // Static scales with headroom (9x the values' std) keep FP8's relative precision, so they
    // err about as much as dynamic per-token scales do; both far from random-logit scale.
    const double static_diff = max_diff_to_reference(logits);
    const double dynamic_diff = max_diff_to_reference(prefill(dtype, {}).first);
    EXPECT_LT(static_diff, 2.0 * dynamic_diff + 0.05) << DTypeName(dtype);
    EXPECT_LT(static_diff, 2.0) << DTypeName(dtype);
    RecordProperty(std::string(DTypeName(dtype)) + "_static_max_abs_diff",
                   std::to_string(static_diff));
    RecordProperty(std::string(DTypeName(dtype)) + "_dynamic_max_abs_diff",
                   std::to_string(dynamic_diff));
  }
  std::filesystem::remove_all(dir);
}

TEST(LlamaReferenceTest, Stories260KGreedyMatchesNumpyTokenForToken) {
  const std::string dir = std::string(PAGODA_SHARED_MODELS_DIR) + "/stories260K";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    GTEST_SKIP() << dir << " is absent";
  }
  if (!ReferenceAvailable()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not installed";
  auto model = LlamaModel::Create(LoadModelWeights(dir, {}).value(), {.num_threads = 2}).value();
  auto tokenizer = tokenizer::LoadTokenizer(dir).value();
  const std::vector<TokenId> prompt =
      tokenizer->Encode("Once upon a time", tokenizer::AddSpecialTokens::kYes);
  constexpr int kSteps = 64;
  const std::vector<TokenId> ours = GreedyWithCache(*model, prompt, kSteps);
  const nlohmann::json ref =
      RunReference(dir, prompt, absl::StrCat("--greedy ", kSteps, " --last-only"));
  ASSERT_FALSE(ref.is_discarded());
  EXPECT_EQ(ours, ref["greedy"].get<std::vector<TokenId>>());
  const std::string text = tokenizer->Decode(ours, tokenizer::SkipSpecialTokens::kYes);
  // Sensible text: English words and spaces, no byte-fallback garbage.
  int letters = 0;
  for (char ch : text) letters += std::isalpha(static_cast<unsigned char>(ch)) ? 1 : 0;
  EXPECT_GT(letters, static_cast<int>(text.size()) * 2 / 3) << text;
  EXPECT_NE(text.find(" the "), std::string::npos) << text;
  RecordProperty("continuation", text);
}

}  // namespace
}  // namespace pagoda::model

#include "model/model_weights.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "model/tiled_matrices.h"

namespace pagoda::model {
namespace {

using ::testing::HasSubstr;

std::vector<float> ToFloats(const WeightTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.num_elements()));
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::kF32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = t.dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
    }
  }
  return out;
}

// What a value becomes when stored as `dtype` and read back as a float.
float Quantize(float value, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return value;
    case DType::kBF16:
      return Bf16ToF32(F32ToBf16(value));
    case DType::kF16:
      return F16ToF32(F32ToF16(value));
    case DType::kInt8:  // KV-cache types only: no weight test uses them
    case DType::kFp8E4M3:
    case DType::kFp8E5M2:
      break;
  }
  return value;
}

// The Hugging Face names of all tensors of `w`.
std::vector<std::pair<std::string, const WeightTensor*>> NamedTensors(const ModelWeights& w) {
  std::vector<std::pair<std::string, const WeightTensor*>> named = {
      {"model.embed_tokens.weight", &w.embed_tokens()}, {"model.norm.weight", &w.final_norm()}};
  if (!w.config().tie_word_embeddings) named.emplace_back("lm_head.weight", &w.lm_head());
  for (size_t i = 0; i < w.layers().size(); ++i) {
    const LayerWeights& l = w.layers()[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    named.insert(named.end(), {{p + "input_layernorm.weight", &l.input_norm},
                               {p + "self_attn.q_proj.weight", &l.q_proj},
                               {p + "self_attn.k_proj.weight", &l.k_proj},
                               {p + "self_attn.v_proj.weight", &l.v_proj},
                               {p + "self_attn.o_proj.weight", &l.o_proj},
                               {p + "post_attention_layernorm.weight", &l.post_attention_norm},
                               {p + "mlp.gate_proj.weight", &l.gate_proj},
                               {p + "mlp.up_proj.weight", &l.up_proj},
                               {p + "mlp.down_proj.weight", &l.down_proj}});
    if (l.q_bias.has_value()) {
      named.insert(named.end(), {{p + "self_attn.q_proj.bias", &*l.q_bias},
                                 {p + "self_attn.k_proj.bias", &*l.k_bias},
                                 {p + "self_attn.v_proj.bias", &*l.v_bias}});
    }
  }
  return named;
}

std::string ConfigJson(const ModelConfig& c) {
  return absl::StrCat(
      R"({"architectures": [")", c.architecture, R"("], "vocab_size": )", c.vocab_size,
      R"(, "hidden_size": )", c.hidden_size, R"(, "intermediate_size": )", c.intermediate_size,
      R"(, "num_hidden_layers": )", c.num_layers, R"(, "num_attention_heads": )", c.num_heads,
      R"(, "num_key_value_heads": )", c.num_kv_heads, R"(, "head_dim": )", c.head_dim,
      R"(, "max_position_embeddings": )", c.max_position_embeddings,
      R"(, "rms_norm_eps": 1e-05, "tie_word_embeddings": )",
      c.tie_word_embeddings ? "true" : "false", R"(, "bos_token_id": 1})");
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Writes `w` as a Hugging Face checkpoint in `dir`, tensors stored as `dtype`, spread
// round-robin over `num_shards` files (with an index when > 1). `extra` tensors are added too.
// Tensors a checkpoint may carry beside the weights: name -> (shape, values).
using ExtraTensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

void SaveCheckpoint(const ModelWeights& w, const std::string& dir, DType dtype, int num_shards,
                    const std::vector<std::string>& skip = {}, const ExtraTensors& extra = {}) {
  WriteText(dir + "/config.json", ConfigJson(w.config()));
  std::vector<SafetensorsWriter> writers(static_cast<size_t>(num_shards));
  std::vector<std::string> index_entries;
  int i = 0;
  for (const auto& [name, tensor] : NamedTensors(w)) {
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    const int shard = i++ % num_shards;
    ASSERT_TRUE(writers[shard].AddFloats(name, dtype, tensor->shape, ToFloats(*tensor)).ok());
    index_entries.push_back(absl::StrCat("\"", name, "\": \"model-", shard, ".safetensors\""));
  }
  for (const auto& [name, tensor] : extra) {
    ASSERT_TRUE(writers[0].AddFloats(name, DType::kF32, tensor.first, tensor.second).ok());
  }
  if (num_shards == 1) {
    ASSERT_TRUE(writers[0].WriteFile(dir + "/model.safetensors").ok());
    return;
  }
  for (int s = 0; s < num_shards; ++s) {
    ASSERT_TRUE(writers[s].WriteFile(absl::StrCat(dir, "/model-", s, ".safetensors")).ok());
  }
  WriteText(dir + "/model.safetensors.index.json",
            absl::StrCat(R"({"metadata": {"total_size": 0}, "weight_map": {)",
                         absl::StrJoin(index_entries, ", "), "}}"));
}

ModelConfig SmallConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  return c;
}

class ModelWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            absl::StrCat("model_weights_test_", ::getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::create_directories(dir_);
    auto source = MakeDummyWeights(SmallConfig(), 7, DType::kF32);
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Every tensor of `loaded` holds the source's values as stored in `stored`, then converted
  // to the tensor's dtype.
  void ExpectSameValues(const ModelWeights& loaded, DType stored) {
    const auto expected = NamedTensors(*source_);
    const auto actual = NamedTensors(loaded);
    ASSERT_EQ(expected.size(), actual.size());
    for (size_t t = 0; t < expected.size(); ++t) {
      ASSERT_EQ(expected[t].first, actual[t].first);
      ASSERT_EQ(expected[t].second->shape, actual[t].second->shape) << expected[t].first;
      const std::vector<float> want = ToFloats(*expected[t].second);
      const std::vector<float> got = ToFloats(*actual[t].second);
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_EQ(got[i], Quantize(Quantize(want[i], stored), actual[t].second->dtype))
            << expected[t].first << "[" << i << "]";
      }
    }
  }

  std::string dir_;
  std::unique_ptr<ModelWeights> source_;
};

TEST_F(ModelWeightsTest, RoundTripF32IsExactAndZeroCopy) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->matrix_dtype(), DType::kF32);
  ExpectSameValues(**w, DType::kF32);
  EXPECT_EQ((*w)->matrix_bytes(), source_->matrix_bytes());
  // 40*16 embedding + 40*16 lm_head + 2 layers * (16*16*2 + 8*16*2 + 24*16*3) floats.
  EXPECT_EQ((*w)->matrix_bytes(), 4 * (640 + 640 + 2 * (512 + 256 + 1152)));
}

// A checkpoint storing its matrices in mixed dtypes still loads with one matrix dtype, the
// embedding's (the CPU model's fused gate/up product relies on it).
TEST_F(ModelWeightsTest, MixedMatrixDtypesBecomeTheEmbeddingsOne) {
  const std::string up = "model.layers.0.mlp.up_proj.weight";
  const WeightTensor& source_up = source_->layers()[0].up_proj;
  SaveCheckpoint(*source_, dir_, DType::kBF16, 1, {up},
                 {{up, {source_up.shape, ToFloats(source_up)}}});  // this one stored as F32
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->matrix_dtype(), DType::kBF16);
  EXPECT_EQ((*w)->layers()[0].up_proj.dtype, DType::kBF16);
  EXPECT_EQ((*w)->layers()[0].gate_proj.dtype, DType::kBF16);
}

TEST_F(ModelWeightsTest, Bf16KeptAndNormsBecomeF32) {
  SaveCheckpoint(*source_, dir_, DType::kBF16, 1);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->matrix_dtype(), DType::kBF16);
  EXPECT_EQ((*w)->layers()[1].down_proj.dtype, DType::kBF16);
  EXPECT_EQ((*w)->final_norm().dtype, DType::kF32);
  EXPECT_EQ((*w)->layers()[0].input_norm.dtype, DType::kF32);
  ExpectSameValues(**w, DType::kBF16);
  EXPECT_EQ((*w)->matrix_bytes() * 2, source_->matrix_bytes());
}

TEST_F(ModelWeightsTest, F16BecomesF32) {
  SaveCheckpoint(*source_, dir_, DType::kF16, 1);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->matrix_dtype(), DType::kF32);
  ExpectSameValues(**w, DType::kF16);
}

TEST_F(ModelWeightsTest, MatrixDtypeConversion) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w =
      LoadModelWeights(dir_, {.matrix_dtype = DType::kBF16});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->lm_head().dtype, DType::kBF16);
  EXPECT_EQ((*w)->final_norm().dtype, DType::kF32);
  ExpectSameValues(**w, DType::kF32);

  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  SaveCheckpoint(*source_, dir_, DType::kF16, 1);
  w = LoadModelWeights(dir_, {.matrix_dtype = DType::kF32});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->embed_tokens().dtype, DType::kF32);
  ExpectSameValues(**w, DType::kF16);
  EXPECT_FALSE(LoadModelWeights(dir_, {.matrix_dtype = DType::kF16}).ok());
}

TEST_F(ModelWeightsTest, Sharded) {
  SaveCheckpoint(*source_, dir_, DType::kBF16, 3);
  ASSERT_FALSE(std::filesystem::exists(dir_ + "/model.safetensors"));
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectSameValues(**w, DType::kBF16);
}

TEST_F(ModelWeightsTest, ShardedIndexMustBeTruthful) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 2);
  const std::string index = dir_ + "/model.safetensors.index.json";
  std::ifstream in(index);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string from = R"("model.norm.weight": "model-1.safetensors")";
  ASSERT_NE(text.find(from), std::string::npos);
  WriteText(index, absl::StrCat(text.substr(0, text.find(from)),
                                R"("model.norm.weight": "model-0.safetensors")",
                                text.substr(text.find(from) + from.size())));
  absl::Status status = LoadModelWeights(dir_, {}).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("model.norm.weight"));
  WriteText(index, R"({"weight_map": {"model.norm.weight": "../model-0.safetensors"}})");
  status = LoadModelWeights(dir_, {}).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("not a file name"));
}

TEST_F(ModelWeightsTest, QwenBiasesAreLoaded) {
  ModelConfig c = SmallConfig();
  c.architecture = "Qwen2ForCausalLM";
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  auto source = MakeDummyWeights(c, 9, DType::kF32);
  ASSERT_TRUE(source.ok());
  source_ = *std::move(source);
  SaveCheckpoint(*source_, dir_, DType::kBF16, 1);
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->layers()[0].k_bias.has_value());
  EXPECT_EQ((*w)->layers()[0].k_bias->dtype, DType::kF32);
  EXPECT_EQ((*w)->layers()[0].k_bias->shape, std::vector<int64_t>{8});
  EXPECT_EQ(&(*w)->lm_head(), &(*w)->embed_tokens());
  ExpectSameValues(**w, DType::kBF16);
}

// FP8 KV scales (vLLM's self_attn.k_scale / v_scale): a scalar or one value per KV head, read
// per KV head; a layer without them leaves the model without static scales; a bad shape or value,
// or a k_scale without its v_scale, is refused naming the tensor.
TEST_F(ModelWeightsTest, KvScalesAreReadPerKvHeadAndCheckedNamingTheTensor) {
  ExtraTensors scales;
  for (int l = 0; l < 2; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".self_attn.");
    scales[p + "k_scale"] = {{}, {0.5f}};
    scales[p + "v_scale"] = {{2}, {0.25f, 0.75f}};
  }
  SaveCheckpoint(*source_, dir_, DType::kF32, 1, {}, scales);
  auto loaded = LoadModelWeights(dir_, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE((*loaded)->has_kv_scales());
  EXPECT_EQ((*loaded)->layers()[0].k_scale, std::vector<float>({0.5f, 0.5f}));
  EXPECT_EQ((*loaded)->layers()[1].v_scale, std::vector<float>({0.25f, 0.75f}));

  ExtraTensors first_layer_only = scales;
  first_layer_only.erase("model.layers.1.self_attn.k_scale");
  first_layer_only.erase("model.layers.1.self_attn.v_scale");
  SaveCheckpoint(*source_, dir_, DType::kF32, 1, {}, first_layer_only);
  loaded = LoadModelWeights(dir_, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE((*loaded)->has_kv_scales());

  const auto refused = [&](const ExtraTensors& bad, const std::string& message) {
    SaveCheckpoint(*source_, dir_, DType::kF32, 1, {}, bad);
    const absl::Status status = LoadModelWeights(dir_, {}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(message));
  };
  ExtraTensors bad = scales;
  bad["model.layers.1.self_attn.k_scale"] = {{3}, {1.0f, 1.0f, 1.0f}};
  refused(bad, "\"model.layers.1.self_attn.k_scale\" has shape [3]");
  bad = scales;
  bad["model.layers.0.self_attn.v_scale"] = {{2}, {0.25f, -1.0f}};
  refused(bad, "\"model.layers.0.self_attn.v_scale\": a KV scale must be finite and > 0");
  bad = scales;
  bad.erase("model.layers.0.self_attn.v_scale");
  refused(bad, "one of k_scale and v_scale but not the other");
}

TEST_F(ModelWeightsTest, MissingTensorsAreNamed) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1, {"lm_head.weight"});
  absl::Status status = LoadModelWeights(dir_, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("lm_head.weight"));
  SaveCheckpoint(*source_, dir_, DType::kF32, 1, {"model.layers.1.mlp.up_proj.weight"});
  status = LoadModelWeights(dir_, {}).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("model.layers.1.mlp.up_proj.weight"));
}

TEST_F(ModelWeightsTest, WrongShapeNamesTensorAndBothShapes) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1);
  ModelConfig wrong = SmallConfig();
  wrong.intermediate_size = 20;
  WriteText(dir_ + "/config.json", ConfigJson(wrong));
  const absl::Status status = LoadModelWeights(dir_, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("\"model.layers.0.mlp.gate_proj.weight\" has shape [24, 16], "
                        "config.json implies [20, 16]"));
}

TEST_F(ModelWeightsTest, MalformedFilesGiveErrors) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1);
  const std::string path = dir_ + "/model.safetensors";
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Truncated inside the header, and inside the data.
  WriteText(path, bytes.substr(0, 100));
  EXPECT_THAT(std::string(LoadModelWeights(dir_, {}).status().message()),
              HasSubstr("header length"));
  WriteText(path, bytes.substr(0, bytes.size() - 3));
  EXPECT_THAT(std::string(LoadModelWeights(dir_, {}).status().message()),
              HasSubstr("data_offsets"));
  // An unsupported dtype of the same width, so the header keeps its length.
  std::string i32 = bytes;
  const size_t pos = i32.find("\"F32\"");
  i32.replace(pos, 5, "\"I32\"");
  WriteText(path, i32);
  EXPECT_THAT(std::string(LoadModelWeights(dir_, {}).status().message()),
              HasSubstr("unsupported dtype \"I32\""));
  // Bad offsets: begin past end.
  std::string offsets = bytes;
  const size_t at = offsets.find("\"data_offsets\":[0,");
  ASSERT_NE(at, std::string::npos);
  offsets[at + 16] = '9';
  WriteText(path, offsets);
  EXPECT_FALSE(LoadModelWeights(dir_, {}).ok());
}

TEST_F(ModelWeightsTest, UnknownTensorsAreIgnoredAndEosFallsBackToGenerationConfig) {
  SaveCheckpoint(*source_, dir_, DType::kF32, 1);
  SafetensorsWriter writer;
  for (const auto& [name, tensor] : NamedTensors(*source_)) {
    ASSERT_TRUE(writer.AddFloats(name, DType::kF32, tensor->shape, ToFloats(*tensor)).ok());
  }
  ASSERT_TRUE(writer
                  .AddFloats("model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {2},
                             {{1.0f, 0.5f}})
                  .ok());
  ASSERT_TRUE(writer.WriteFile(dir_ + "/model.safetensors").ok());
  WriteText(dir_ + "/generation_config.json", R"({"eos_token_id": [3, 4]})");
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir_, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->config().eos_token_ids, (std::vector<TokenId>{3, 4}));
}

// TileMatrices: every bf16 matrix the tiles layout takes is repacked (element (j, c) where
// kernels/cpu/matmul.h's formula puts it) and marked tiled; the embedding, f32 weights and
// shapes the layout cannot take are left alone; owned buffers are replaced, not added to,
// and matrices mapped from a checkpoint get buffers of their own.
std::vector<uint16_t> Bf16Values(const WeightTensor& t) {
  const auto* data = static_cast<const uint16_t*>(t.data);
  return std::vector<uint16_t>(data, data + t.num_elements());
}

void ExpectTiledCopy(const WeightTensor& tiled, const std::vector<uint16_t>& rows,
                     const std::string& what) {
  ASSERT_TRUE(tiled.tiled) << what;
  const int64_t n = tiled.shape[0], k = tiled.shape[1];
  const std::vector<uint16_t> values = Bf16Values(tiled);
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t c = 0; c < k; ++c) {
      const int64_t at =
          ((j / 16) * (k / 32) + c / 32) * 512 + (c % 32) / 2 * 32 + (j % 16) * 2 + c % 2;
      ASSERT_EQ(values[at], rows[j * k + c]) << what << " (" << j << ", " << c << ")";
    }
  }
}

TEST_F(ModelWeightsTest, TileMatricesRepacksOwnedAndMappedBf16Matrices) {
  ModelConfig config = DummyPresetConfig("tiny").value();
  config.intermediate_size = 200;  // gate/up [200, 64] and down [64, 200] do not fit the tiles
  kernels::cpu::ThreadPool pool(2);
  for (const bool mapped : {false, true}) {
    std::unique_ptr<ModelWeights> weights = MakeDummyWeights(config, 3, DType::kBF16).value();
    if (mapped) {
      SaveCheckpoint(*weights, dir_, DType::kBF16, 1);
      weights = LoadModelWeights(dir_, {}).value();
    }
    const std::vector<uint16_t> q = Bf16Values(weights->layers()[1].q_proj);
    const std::vector<uint16_t> lm_head = Bf16Values(weights->lm_head());
    const void* embedding = weights->embed_tokens().data;
    const std::vector<uint16_t> embedding_values = Bf16Values(weights->embed_tokens());
    const void* gate = weights->layers()[0].gate_proj.data;
    const WeightTensor q_rows = weights->layers()[1].q_proj;
    ModelWeightsParts parts = std::move(*weights).ReleaseParts();
    // Only a mapped matrix's pages are dropped after packing; owned memory is never advised.
    EXPECT_EQ(
        parts.checkpoint != nullptr && parts.checkpoint->Maps(q_rows.data, q_rows.size_bytes()),
        mapped);
    const size_t buffers = parts.buffers.size();
    ASSERT_TRUE(TileMatrices(parts, pool).ok());
    // Owned: q, k, v, o of each layer and lm_head replaced in place; mapped: a buffer each.
    const size_t tiled_matrices = 4 * config.num_layers + 1;
    EXPECT_EQ(parts.buffers.size(), buffers + (mapped ? tiled_matrices : 0));
    const ModelWeights tiled(std::move(parts));
    const std::string what = mapped ? "mapped" : "owned";
    EXPECT_EQ(NumTiledMatrices(tiled), static_cast<int>(tiled_matrices)) << what;
    ExpectTiledCopy(tiled.layers()[1].q_proj, q, what + " q_proj");
    ExpectTiledCopy(tiled.lm_head(), lm_head, what + " lm_head");
    for (const LayerWeights& layer : tiled.layers()) {
      EXPECT_TRUE(layer.k_proj.tiled && layer.v_proj.tiled && layer.o_proj.tiled) << what;
      EXPECT_FALSE(layer.gate_proj.tiled || layer.up_proj.tiled || layer.down_proj.tiled);
    }
    EXPECT_FALSE(tiled.embed_tokens().tiled);
    EXPECT_EQ(tiled.embed_tokens().data, embedding);
    // Mapped: the packed matrices' pages left the resident set; the embedding beside them in
    // the file still reads the same.
    EXPECT_EQ(Bf16Values(tiled.embed_tokens()), embedding_values) << what;
    EXPECT_EQ(tiled.layers()[0].gate_proj.data, gate);
    EXPECT_EQ(tiled.matrix_bytes(),
              MakeDummyWeights(config, 3, DType::kBF16).value()->matrix_bytes());
  }
  // Tied: the embedding, which is the lm_head, is packed (once).
  config.tie_word_embeddings = true;
  ModelWeightsParts tied =
      std::move(*MakeDummyWeights(config, 3, DType::kBF16).value()).ReleaseParts();
  const std::vector<uint16_t> embedding_rows = Bf16Values(tied.embed_tokens);
  const size_t tied_buffers = tied.buffers.size();
  ASSERT_TRUE(TileMatrices(tied, pool).ok());
  EXPECT_FALSE(tied.lm_head.has_value());
  ExpectTiledCopy(tied.embed_tokens, embedding_rows, "tied embedding");
  EXPECT_EQ(tied.buffers.size(), tied_buffers);
  // F32 matrices stay as they are.
  ModelWeightsParts f32 =
      std::move(*MakeDummyWeights(config, 3, DType::kF32).value()).ReleaseParts();
  ASSERT_TRUE(TileMatrices(f32, pool).ok());
  EXPECT_FALSE(f32.layers[0].q_proj.tiled);
}

TEST(ModelWeightsStoriesTest, Stories260K) {
  const std::string dir = std::string(PAGODA_SHARED_MODELS_DIR) + "/stories260K";
  if (!std::filesystem::exists(dir + "/model.safetensors")) GTEST_SKIP() << "no " << dir;
  absl::StatusOr<std::unique_ptr<ModelWeights>> w = LoadModelWeights(dir, {});
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelWeights& m = **w;
  EXPECT_EQ(m.layers().size(), 5u);
  EXPECT_EQ(&m.lm_head(), &m.embed_tokens());  // tied, no lm_head.weight in the file
  EXPECT_EQ(m.embed_tokens().shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(m.layers()[0].k_proj.shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(m.layers()[4].down_proj.shape, (std::vector<int64_t>{64, 172}));
  EXPECT_FALSE(m.layers()[0].q_bias.has_value());
  // 260032 parameters minus the 5*2+1 norms of 64: all matrices, F32, embedding counted once.
  EXPECT_EQ(m.matrix_bytes(), 4 * (260032 - 11 * 64));
  double sum_squares = 0;
  for (const float v : ToFloats(m.embed_tokens())) {
    ASSERT_TRUE(std::isfinite(v));
    sum_squares += double{v} * v;
  }
  EXPECT_GT(sum_squares, 1.0);  // trained, not zeros
  for (const float v : ToFloats(m.final_norm())) EXPECT_TRUE(std::isfinite(v));
  // BF16 conversion of a real checkpoint keeps every value within bf16 rounding.
  absl::StatusOr<std::unique_ptr<ModelWeights>> bf16 =
      LoadModelWeights(dir, {.matrix_dtype = DType::kBF16});
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  const std::vector<float> f32_values = ToFloats(m.layers()[2].gate_proj);
  const std::vector<float> bf16_values = ToFloats((*bf16)->layers()[2].gate_proj);
  for (size_t i = 0; i < f32_values.size(); ++i) {
    EXPECT_NEAR(bf16_values[i], f32_values[i], std::fabs(f32_values[i]) / 256 + 1e-30);
  }
}

}  // namespace
}  // namespace pagoda::model

#pragma once

// The weights of a Llama-family model: loaded from a Hugging Face checkpoint (config.json plus
// safetensors, memory-mapped) or generated deterministically ("dummy" weights for benchmarks and
// tests that need no checkpoint).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/dtype.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace pagoda::model {

// A non-owning view of one weight tensor: row-major (unless `tiled`), little-endian, `data`
// aligned to at least DTypeSize(dtype). Matrices use the Hugging Face layout [out_features,
// in_features].
struct WeightTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // owned by the ModelWeights this tensor belongs to
  // A bf16 matrix repacked for the CPU's AMX products (model/tiled_matrices.h: the layout of
  // kernels::cpu::WeightLayout::kTiles, not row-major); only the CPU model's own weights.
  bool tiled = false;

  int64_t num_elements() const;
  int64_t size_bytes() const { return num_elements() * DTypeSize(dtype); }
};

// The weights of one decoder layer. Norms and biases are always F32; the projections have the
// matrix dtype of the model. With q_dim = num_heads * head_dim, kv_dim = num_kv_heads * head_dim:
struct LayerWeights {
  WeightTensor input_norm;                             // [hidden_size]
  WeightTensor q_proj;                                 // [q_dim, hidden_size]
  WeightTensor k_proj;                                 // [kv_dim, hidden_size]
  WeightTensor v_proj;                                 // [kv_dim, hidden_size]
  WeightTensor o_proj;                                 // [hidden_size, q_dim]
  WeightTensor post_attention_norm;                    // [hidden_size]
  WeightTensor gate_proj;                              // [intermediate_size, hidden_size]
  WeightTensor up_proj;                                // [intermediate_size, hidden_size]
  WeightTensor down_proj;                              // [hidden_size, intermediate_size]
  std::optional<WeightTensor> q_bias, k_bias, v_bias;  // [q_dim], [kv_dim], [kv_dim]; set iff
                                                       // config.attention_bias
  // The checkpoint's FP8 KV-cache scales (self_attn.k_scale / v_scale, as vLLM and llm-compressor
  // write them: a scalar per layer, or one per KV head), [num_kv_heads] each; empty when the
  // checkpoint has none. A cached element is fp8(x / scale), read back as value * scale.
  std::vector<float> k_scale, v_scale;
};

// Heap memory for weights that are not mapped from a file: 64-byte aligned, freed on
// destruction. Move-only.
class WeightBuffer {
 public:
  // ResourceExhausted when the memory cannot be had.
  static absl::StatusOr<WeightBuffer> Allocate(int64_t size_bytes);

  void* data() const { return data_.get(); }
  int64_t size_bytes() const { return size_bytes_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  int64_t size_bytes_ = 0;
};

// What a ModelWeights is made of; the loaders fill it. Every WeightTensor's data points into
// `checkpoint` or one of `buffers`.
struct ModelWeightsParts {
  ModelConfig config;
  WeightTensor embed_tokens;  // [vocab_size, hidden_size]
  std::vector<LayerWeights> layers;
  WeightTensor final_norm;              // [hidden_size], F32
  std::optional<WeightTensor> lm_head;  // [vocab_size, hidden_size]; nullopt iff tied
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;
  std::vector<WeightBuffer> buffers;
};

// All weights of a model and the storage behind them (mapped files and/or owned buffers).
// Immutable: safe to read from any thread. The tensors' data live as long as this object.
class ModelWeights {
 public:
  explicit ModelWeights(ModelWeightsParts parts);
  ModelWeights(const ModelWeights&) = delete;
  ModelWeights& operator=(const ModelWeights&) = delete;

  const ModelConfig& config() const { return parts_.config; }
  const WeightTensor& embed_tokens() const { return parts_.embed_tokens; }
  // Whether every layer has the checkpoint's K and V scales (LayerWeights::k_scale).
  bool has_kv_scales() const;
  const std::vector<LayerWeights>& layers() const { return parts_.layers; }
  const WeightTensor& final_norm() const { return parts_.final_norm; }
  // [vocab_size, hidden_size]; the same object as embed_tokens() when the embeddings are tied.
  const WeightTensor& lm_head() const {
    return parts_.lm_head.has_value() ? *parts_.lm_head : parts_.embed_tokens;
  }
  // The matrix dtype (that of embed_tokens and every projection).
  DType matrix_dtype() const { return parts_.embed_tokens.dtype; }
  // Bytes of the distinct matrices as stored: embedding, all projections, and lm_head unless
  // tied. A decode step reads about this much (all of it but one embedding row).
  int64_t matrix_bytes() const { return matrix_bytes_; }

  // Gives the parts back (the tensors keep pointing into the storage that moves with them), for
  // building a variant: a test adds the FP8 KV scales a checkpoint would carry, for instance.
  ModelWeightsParts ReleaseParts() && { return std::move(parts_); }

 private:
  ModelWeightsParts parts_;
  int64_t matrix_bytes_ = 0;
};

struct WeightLoadOptions {
  // Unset: matrices keep F32 or BF16 as stored and F16 becomes F32. kF32 or kBF16: matrices
  // (embedding, projections, lm_head) are converted to it. kF16 is not a valid request.
  std::optional<DType> matrix_dtype;
};

// Loads `model_dir`: config.json (LoadModelConfig) plus model.safetensors or the shards of
// model.safetensors.index.json. Every tensor the config implies must exist with that shape (an
// InvalidArgument error names the tensor and both shapes); lm_head.weight may be absent iff
// tie_word_embeddings (when tied, a stored lm_head.weight is ignored, as transformers does).
// Tensors the model does not use (rotary_emb.inv_freq, ...) are ignored. Tensors kept in their
// stored dtype point into the mapped files (zero copy); converted ones (norms and biases to F32,
// matrices per `options`) and misaligned ones live in owned buffers.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const std::string& model_dir,
                                                               const WeightLoadOptions& options);

// Generates weights for `config`: a pure function of (config, seed, matrix_dtype), so the same
// seed gives identical bytes whatever the thread count (it runs on all hardware threads), and
// different seeds give different weights. Matrices are uniform with standard deviation
// 1/sqrt(in_features) (embedding and lm_head: 1/sqrt(hidden_size)), norms 1 + U(-0.05, 0.05),
// biases U with standard deviation 0.02: activations stay finite through many layers.
// matrix_dtype is kF32 or kBF16 (kF16 also works). Only the sizes of `config` are checked
// (> 0). Allocates about config.NumParameters() * DTypeSize(matrix_dtype) bytes (llama-3.1-8b in
// BF16: 16 GB); ResourceExhausted when that memory cannot be had.
absl::StatusOr<std::unique_ptr<ModelWeights>> MakeDummyWeights(const ModelConfig& config,
                                                               uint64_t seed, DType matrix_dtype);

// The config of a named dummy model: "tiny" (the built-in default; hidden 64, 2 layers, 4 heads,
// 2 kv heads, vocab 512, untied), "llama-110m" (llama2.c stories110M shape), "tinyllama-1.1b",
// "llama-3.2-1b", "llama-3.1-8b" (the published Hugging Face configs). An unknown name is an
// InvalidArgument error that lists the known ones.
absl::StatusOr<ModelConfig> DummyPresetConfig(std::string_view name);
std::vector<std::string> DummyPresetNames();

}  // namespace pagoda::model

// MakeDummyWeights and DummyPresetConfig (declared in model/model_weights.h).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "model/model_weights.h"

namespace pagoda::model {
namespace {

// splitmix64's finalizer: a bijective mix whose output passes BigCrush when fed a counter.
uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// How one tensor's values are drawn: value(i) = offset + scale * U[-1, 1)(hash(seed, id, i)).
// A counter-based generator makes every element a pure function of its index, so any split of
// the work across threads gives the same bytes.
struct FillSpec {
  uint64_t stream = 0;  // Mix(seed, tensor id)
  float offset = 0.0f;
  float scale = 0.0f;
  DType dtype = DType::kF32;
  uint8_t* data = nullptr;
  int64_t num_elements = 0;
};

// The dtype is a template parameter so that the loop has no branch and can be vectorized.
template <DType kDType>
void FillRangeAs(const FillSpec& spec, int64_t begin, int64_t end) {
  constexpr float kTwoPowMinus23 = 1.0f / 8388608.0f;
  for (int64_t i = begin; i < end; ++i) {
    const uint64_t bits = Mix(spec.stream + static_cast<uint64_t>(i));
    const float uniform = static_cast<float>(bits >> 40) * kTwoPowMinus23 - 1.0f;  // [-1, 1)
    const float value = spec.offset + spec.scale * uniform;
    if constexpr (kDType == DType::kF32) {
      std::memcpy(spec.data + 4 * i, &value, 4);
    } else {
      const uint16_t half = kDType == DType::kBF16 ? F32ToBf16(value) : F32ToF16(value);
      std::memcpy(spec.data + 2 * i, &half, 2);
    }
  }
}

void FillRange(const FillSpec& spec, int64_t begin, int64_t end) {
  switch (spec.dtype) {
    case DType::kF32:
      return FillRangeAs<DType::kF32>(spec, begin, end);
    case DType::kBF16:
      return FillRangeAs<DType::kBF16>(spec, begin, end);
    case DType::kF16:
      return FillRangeAs<DType::kF16>(spec, begin, end);
    case DType::kInt8:  // KV-cache types only; weight dtypes come from FromFlags/checkpoints
    case DType::kFp8E4M3:
    case DType::kFp8E5M2:
      PAGODA_CHECK(false) << "8-bit weights";
  }
}

// Fills all tensors on all hardware threads; chunks are handed out by an atomic counter.
void FillAll(const std::vector<FillSpec>& specs) {
  constexpr int64_t kChunk = int64_t{1} << 18;
  std::vector<std::pair<int, int64_t>> chunks;  // (spec, first element)
  for (int s = 0; s < static_cast<int>(specs.size()); ++s) {
    for (int64_t i = 0; i < specs[s].num_elements; i += kChunk) chunks.emplace_back(s, i);
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t c = next++; c < chunks.size(); c = next++) {
      const FillSpec& spec = specs[chunks[c].first];
      FillRange(spec, chunks[c].second, std::min(spec.num_elements, chunks[c].second + kChunk));
    }
  };
  const size_t num_threads =
      std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), chunks.size());
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) {
    // Fewer threads only make it slower: the chunks, hence the bytes, stay the same.
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;
    }
  }
  work();
  for (std::thread& thread : threads) thread.join();
}

// Allocates the tensors of a model and records how to fill them.
class DummyBuilder {
 public:
  DummyBuilder(uint64_t seed, DType matrix_dtype, ModelWeightsParts& parts)
      : seed_(seed), matrix_dtype_(matrix_dtype), parts_(parts) {}

  // `id` names the tensor's random stream; it must be unique within the model and stable.
  absl::StatusOr<WeightTensor> Matrix(uint64_t id, int64_t rows, int64_t cols, float stddev) {
    return Make(id, {rows, cols}, matrix_dtype_, 0.0f, stddev * std::sqrt(3.0f));
  }
  absl::StatusOr<WeightTensor> Norm(uint64_t id, int64_t size) {
    return Make(id, {size}, DType::kF32, 1.0f, 0.05f);
  }
  absl::StatusOr<WeightTensor> Bias(uint64_t id, int64_t size) {
    return Make(id, {size}, DType::kF32, 0.0f, 0.02f * std::sqrt(3.0f));
  }
  const std::vector<FillSpec>& specs() const { return specs_; }

 private:
  absl::StatusOr<WeightTensor> Make(uint64_t id, std::vector<int64_t> shape, DType dtype,
                                    float offset, float scale) {
    WeightTensor tensor{dtype, std::move(shape), nullptr};
    PAGODA_ASSIGN_OR_RETURN(WeightBuffer buffer, WeightBuffer::Allocate(tensor.size_bytes()));
    tensor.data = buffer.data();
    specs_.push_back(FillSpec{Mix(Mix(seed_) ^ (id * 0x9e3779b97f4a7c15ULL)), offset, scale, dtype,
                              static_cast<uint8_t*>(buffer.data()), tensor.num_elements()});
    parts_.buffers.push_back(std::move(buffer));
    return tensor;
  }

  uint64_t seed_;
  DType matrix_dtype_;
  ModelWeightsParts& parts_;
  std::vector<FillSpec> specs_;
};

absl::StatusOr<LayerWeights> MakeLayer(const ModelConfig& c, int layer, DummyBuilder& b) {
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  const int64_t inter = c.intermediate_size;
  const float hidden_std = 1.0f / std::sqrt(static_cast<float>(hidden));
  const uint64_t id = 16 * (static_cast<uint64_t>(layer) + 1);
  LayerWeights w;
  PAGODA_ASSIGN_OR_RETURN(w.input_norm, b.Norm(id + 0, hidden));
  PAGODA_ASSIGN_OR_RETURN(w.q_proj, b.Matrix(id + 1, q_dim, hidden, hidden_std));
  PAGODA_ASSIGN_OR_RETURN(w.k_proj, b.Matrix(id + 2, kv_dim, hidden, hidden_std));
  PAGODA_ASSIGN_OR_RETURN(w.v_proj, b.Matrix(id + 3, kv_dim, hidden, hidden_std));
  PAGODA_ASSIGN_OR_RETURN(
      w.o_proj, b.Matrix(id + 4, hidden, q_dim, 1.0f / std::sqrt(static_cast<float>(q_dim))));
  PAGODA_ASSIGN_OR_RETURN(w.post_attention_norm, b.Norm(id + 5, hidden));
  PAGODA_ASSIGN_OR_RETURN(w.gate_proj, b.Matrix(id + 6, inter, hidden, hidden_std));
  PAGODA_ASSIGN_OR_RETURN(w.up_proj, b.Matrix(id + 7, inter, hidden, hidden_std));
  PAGODA_ASSIGN_OR_RETURN(
      w.down_proj, b.Matrix(id + 8, hidden, inter, 1.0f / std::sqrt(static_cast<float>(inter))));
  if (c.attention_bias) {
    PAGODA_ASSIGN_OR_RETURN(w.q_bias, b.Bias(id + 9, q_dim));
    PAGODA_ASSIGN_OR_RETURN(w.k_bias, b.Bias(id + 10, kv_dim));
    PAGODA_ASSIGN_OR_RETURN(w.v_bias, b.Bias(id + 11, kv_dim));
  }
  return w;
}

absl::Status CheckDummyConfig(const ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError("MakeDummyWeights: every size in the config must be > 0");
  }
  return absl::OkStatus();
}

ModelConfig LlamaBase(int vocab, int hidden, int intermediate, int layers, int heads,
                      int kv_heads) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig Llama3Base(int hidden, int intermediate, int layers, int heads) {
  ModelConfig c = LlamaBase(128256, hidden, intermediate, layers, heads, 8);
  c.rope_theta = 500000.0f;
  c.rope_scaling = RopeScaling{"llama3", 0.0f, 1.0f, 4.0f, 8192};
  c.max_position_embeddings = 131072;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> MakeDummyWeights(const ModelConfig& config,
                                                               uint64_t seed, DType matrix_dtype) {
  PAGODA_RETURN_IF_ERROR(CheckDummyConfig(config));
  ModelWeightsParts parts;
  parts.config = config;
  DummyBuilder b(seed, matrix_dtype, parts);
  const int64_t vocab = config.vocab_size;
  const int64_t hidden = config.hidden_size;
  const float hidden_std = 1.0f / std::sqrt(static_cast<float>(hidden));
  PAGODA_ASSIGN_OR_RETURN(parts.embed_tokens, b.Matrix(0, vocab, hidden, hidden_std));
  for (int layer = 0; layer < config.num_layers; ++layer) {
    PAGODA_ASSIGN_OR_RETURN(LayerWeights weights, MakeLayer(config, layer, b));
    parts.layers.push_back(std::move(weights));
  }
  const uint64_t tail_id = 16 * (static_cast<uint64_t>(config.num_layers) + 1);
  PAGODA_ASSIGN_OR_RETURN(parts.final_norm, b.Norm(tail_id, hidden));
  if (!config.tie_word_embeddings) {
    PAGODA_ASSIGN_OR_RETURN(parts.lm_head, b.Matrix(tail_id + 1, vocab, hidden, hidden_std));
  }
  FillAll(b.specs());
  return std::make_unique<ModelWeights>(std::move(parts));
}

std::vector<std::string> DummyPresetNames() {
  return {"tiny",         "llama-110m",   "tinyllama-1.1b", "llama-3.2-1b",
          "llama-3.1-8b", "mistral-tiny", "qwen2-tiny"};
}

absl::StatusOr<ModelConfig> DummyPresetConfig(std::string_view name) {
  if (name == "tiny") {
    ModelConfig c = LlamaBase(512, 64, 192, 2, 4, 2);  // GQA: 2 query heads per kv head
    c.max_position_embeddings = 512;
    return c;
  }
  if (name == "mistral-tiny") {  // tiny's shape, every layer windowed as in Mistral 7B v0.1
    ModelConfig c = LlamaBase(512, 64, 192, 2, 4, 2);
    c.architecture = "MistralForCausalLM";
    c.max_position_embeddings = 512;
    c.sliding_window = 64;
    c.windowed_layers = {true, true};
    return c;
  }
  if (name == "qwen2-tiny") {  // tiny's shape as Qwen2 with max_window_layers 1: mixed layers
    ModelConfig c = LlamaBase(512, 64, 192, 2, 4, 2);
    c.architecture = "Qwen2ForCausalLM";
    c.attention_bias = true;
    c.max_position_embeddings = 512;
    c.sliding_window = 48;
    c.windowed_layers = {false, true};
    return c;
  }
  if (name == "llama-110m") {  // llama2.c stories110M
    ModelConfig c = LlamaBase(32000, 768, 2048, 12, 12, 12);
    c.max_position_embeddings = 1024;
    c.tie_word_embeddings = true;
    return c;
  }
  if (name == "tinyllama-1.1b") {  // TinyLlama/TinyLlama-1.1B-Chat-v1.0
    ModelConfig c = LlamaBase(32000, 2048, 5632, 22, 32, 4);
    c.max_position_embeddings = 2048;
    return c;
  }
  if (name == "llama-3.2-1b") {  // meta-llama/Llama-3.2-1B
    ModelConfig c = Llama3Base(2048, 8192, 16, 32);
    c.rope_scaling->factor = 32.0f;
    c.tie_word_embeddings = true;
    return c;
  }
  if (name == "llama-3.1-8b") {  // meta-llama/Llama-3.1-8B
    ModelConfig c = Llama3Base(4096, 14336, 32, 32);
    c.rope_scaling->factor = 8.0f;
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dummy model \"", std::string(name),
                   "\" (known: ", absl::StrJoin(DummyPresetNames(), ", "), ")"));
}

}  // namespace pagoda::model

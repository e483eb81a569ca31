#include "model/model_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace pagoda::model {
namespace {

constexpr int64_t kBufferAlignment = 64;  // a cache line; also enough for any SIMD load

template <DType kDType>
float LoadAsFloat(const uint8_t* src, int64_t i) {
  if constexpr (kDType == DType::kF32) {
    float value;
    std::memcpy(&value, src + 4 * i, 4);
    return value;
  } else {
    uint16_t half;
    std::memcpy(&half, src + 2 * i, 2);
    return kDType == DType::kBF16 ? Bf16ToF32(half) : F16ToF32(half);
  }
}

template <DType kDType>
void StoreFloat(float value, uint8_t* dst, int64_t i) {
  if constexpr (kDType == DType::kF32) {
    std::memcpy(dst + 4 * i, &value, 4);
  } else {
    const uint16_t half = kDType == DType::kBF16 ? F32ToBf16(value) : F32ToF16(value);
    std::memcpy(dst + 2 * i, &half, 2);
  }
}

// Both dtypes are template parameters so that each of the loops is branch-free.
template <DType kFrom, DType kTo>
void ConvertAs(const uint8_t* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) StoreFloat<kTo>(LoadAsFloat<kFrom>(src, i), dst, i);
}

template <DType kFrom>
void ConvertFrom(const uint8_t* src, DType to, uint8_t* dst, int64_t n) {
  switch (to) {
    case DType::kF32:
      return ConvertAs<kFrom, DType::kF32>(src, dst, n);
    case DType::kBF16:
      return ConvertAs<kFrom, DType::kBF16>(src, dst, n);
    case DType::kF16:
      return ConvertAs<kFrom, DType::kF16>(src, dst, n);
    case DType::kInt8:  // KV-cache types only: never a weight's
    case DType::kFp8E4M3:
    case DType::kFp8E5M2:
      PAGODA_CHECK(false) << "8-bit weights";
  }
}

// Converts `n` elements; src and dst need no alignment.
void Convert(const uint8_t* src, DType from, uint8_t* dst, DType to, int64_t n) {
  switch (from) {
    case DType::kF32:
      return ConvertFrom<DType::kF32>(src, to, dst, n);
    case DType::kBF16:
      return ConvertFrom<DType::kBF16>(src, to, dst, n);
    case DType::kF16:
      return ConvertFrom<DType::kF16>(src, to, dst, n);
    case DType::kInt8:  // KV-cache types only: never a weight's
    case DType::kFp8E4M3:
    case DType::kFp8E5M2:
      PAGODA_CHECK(false) << "8-bit weights";
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

enum class TensorKind { kMatrix, kVector };  // vectors (norms, biases) are always F32

// Turns checkpoint tensors into WeightTensors, checking shapes and converting dtypes.
class TensorLoader {
 public:
  TensorLoader(const SafetensorsCheckpoint& checkpoint, const WeightLoadOptions& options,
               std::vector<WeightBuffer>& buffers)
      : checkpoint_(checkpoint), matrix_dtype_(options.matrix_dtype), buffers_(buffers) {}

  // Unless the options chose one, every matrix takes the dtype the first one loaded took (the
  // embedding's), so that a checkpoint storing its matrices in mixed dtypes still gives the
  // model one matrix dtype (ModelWeights::matrix_dtype()).
  void SettleMatrixDType(DType dtype) {
    if (!matrix_dtype_.has_value()) matrix_dtype_ = dtype;
  }

  // An optional KV-cache scale: absent (empty), a scalar or a one-element tensor (broadcast to
  // every KV head), or one per KV head; finite and positive.
  absl::StatusOr<std::vector<float>> LoadKvScale(const std::string& name, int num_kv_heads) {
    const TensorInfo* info = checkpoint_.Find(name);
    if (info == nullptr) return std::vector<float>();
    int64_t n = 1;
    for (const int64_t dim : info->shape) n *= dim;
    if (info->shape.size() > 1 || (n != 1 && n != num_kv_heads)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" has shape ", ShapeString(info->shape),
                       "; a KV scale is a scalar or one per KV head (", num_kv_heads, ")"));
    }
    std::vector<float> values(static_cast<size_t>(n));
    Convert(info->data, info->dtype, reinterpret_cast<uint8_t*>(values.data()), DType::kF32, n);
    for (const float v : values) {
      if (!(std::isfinite(v) && v > 0.0f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", name, "\": a KV scale must be finite and > 0, got ", v));
      }
    }
    if (n == 1) values.assign(static_cast<size_t>(num_kv_heads), values[0]);
    return values;
  }

  absl::StatusOr<WeightTensor> Load(const std::string& name, std::vector<int64_t> shape,
                                    TensorKind kind) {
    const TensorInfo* info = checkpoint_.Find(name);
    if (info == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint has no tensor \"", name, "\" (expected shape ", ShapeString(shape), ")"));
    }
    if (info->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ",
                                                     ShapeString(info->shape),
                                                     ", config.json implies ", ShapeString(shape)));
    }
    const DType target = TargetDType(info->dtype, kind);
    WeightTensor tensor{target, std::move(shape), info->data};
    const bool aligned = reinterpret_cast<uintptr_t>(info->data) % DTypeSize(target) == 0;
    if (target == info->dtype && aligned) return tensor;  // zero copy: point into the mapping
    PAGODA_ASSIGN_OR_RETURN(WeightBuffer buffer, WeightBuffer::Allocate(tensor.size_bytes()));
    Convert(info->data, info->dtype, static_cast<uint8_t*>(buffer.data()), target,
            tensor.num_elements());
    tensor.data = buffer.data();
    buffers_.push_back(std::move(buffer));
    return tensor;
  }

 private:
  DType TargetDType(DType stored, TensorKind kind) const {
    if (kind == TensorKind::kVector) return DType::kF32;
    if (matrix_dtype_.has_value()) return *matrix_dtype_;
    return stored == DType::kF16 ? DType::kF32 : stored;
  }

  const SafetensorsCheckpoint& checkpoint_;
  std::optional<DType> matrix_dtype_;
  std::vector<WeightBuffer>& buffers_;
};

absl::StatusOr<LayerWeights> LoadLayer(const ModelConfig& c, int layer, TensorLoader& loader) {
  const std::string prefix = absl::StrCat("model.layers.", layer, ".");
  const int64_t hidden = c.hidden_size;
  const int64_t q_dim = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  const int64_t inter = c.intermediate_size;
  constexpr TensorKind kMatrix = TensorKind::kMatrix;
  constexpr TensorKind kVector = TensorKind::kVector;
  LayerWeights w;
  PAGODA_ASSIGN_OR_RETURN(w.input_norm,
                          loader.Load(prefix + "input_layernorm.weight", {hidden}, kVector));
  PAGODA_ASSIGN_OR_RETURN(
      w.q_proj, loader.Load(prefix + "self_attn.q_proj.weight", {q_dim, hidden}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(
      w.k_proj, loader.Load(prefix + "self_attn.k_proj.weight", {kv_dim, hidden}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(
      w.v_proj, loader.Load(prefix + "self_attn.v_proj.weight", {kv_dim, hidden}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(
      w.o_proj, loader.Load(prefix + "self_attn.o_proj.weight", {hidden, q_dim}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(
      w.post_attention_norm,
      loader.Load(prefix + "post_attention_layernorm.weight", {hidden}, kVector));
  PAGODA_ASSIGN_OR_RETURN(w.gate_proj,
                          loader.Load(prefix + "mlp.gate_proj.weight", {inter, hidden}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(w.up_proj,
                          loader.Load(prefix + "mlp.up_proj.weight", {inter, hidden}, kMatrix));
  PAGODA_ASSIGN_OR_RETURN(w.down_proj,
                          loader.Load(prefix + "mlp.down_proj.weight", {hidden, inter}, kMatrix));
  if (c.attention_bias) {
    PAGODA_ASSIGN_OR_RETURN(w.q_bias,
                            loader.Load(prefix + "self_attn.q_proj.bias", {q_dim}, kVector));
    PAGODA_ASSIGN_OR_RETURN(w.k_bias,
                            loader.Load(prefix + "self_attn.k_proj.bias", {kv_dim}, kVector));
    PAGODA_ASSIGN_OR_RETURN(w.v_bias,
                            loader.Load(prefix + "self_attn.v_proj.bias", {kv_dim}, kVector));
  }
  PAGODA_ASSIGN_OR_RETURN(w.k_scale,
                          loader.LoadKvScale(prefix + "self_attn.k_scale", c.num_kv_heads));
  PAGODA_ASSIGN_OR_RETURN(w.v_scale,
                          loader.LoadKvScale(prefix + "self_attn.v_scale", c.num_kv_heads));
  if (w.k_scale.empty() != w.v_scale.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "self_attn: the checkpoint has one of k_scale and v_scale but not the other"));
  }
  return w;
}

int64_t LayerMatrixBytes(const LayerWeights& w) {
  return w.q_proj.size_bytes() + w.k_proj.size_bytes() + w.v_proj.size_bytes() +
         w.o_proj.size_bytes() + w.gate_proj.size_bytes() + w.up_proj.size_bytes() +
         w.down_proj.size_bytes();
}

}  // namespace

bool ModelWeights::has_kv_scales() const {
  if (parts_.layers.empty()) return false;
  for (const LayerWeights& layer : parts_.layers) {
    if (layer.k_scale.empty()) return false;
  }
  return true;
}

int64_t WeightTensor::num_elements() const {
  int64_t n = 1;
  for (const int64_t dim : shape) n *= dim;
  return n;
}

absl::StatusOr<WeightBuffer> WeightBuffer::Allocate(int64_t size_bytes) {
  if (size_bytes < 0) return absl::InvalidArgumentError("WeightBuffer: negative size");
  // aligned_alloc wants a multiple of the alignment; never ask for 0 bytes.
  const int64_t rounded = std::max<int64_t>(
      kBufferAlignment, (size_bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment);
  void* data = std::aligned_alloc(kBufferAlignment, static_cast<size_t>(rounded));
  if (data == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", size_bytes, " bytes for weights"));
  }
  WeightBuffer buffer;
  buffer.data_.reset(data);
  buffer.size_bytes_ = size_bytes;
  return buffer;
}

ModelWeights::ModelWeights(ModelWeightsParts parts) : parts_(std::move(parts)) {
  matrix_bytes_ = parts_.embed_tokens.size_bytes();
  for (const LayerWeights& layer : parts_.layers) matrix_bytes_ += LayerMatrixBytes(layer);
  if (parts_.lm_head.has_value()) matrix_bytes_ += parts_.lm_head->size_bytes();
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const std::string& model_dir,
                                                               const WeightLoadOptions& options) {
  if (options.matrix_dtype == DType::kF16) {
    return absl::InvalidArgumentError("WeightLoadOptions.matrix_dtype: F16 is not supported");
  }
  ModelWeightsParts parts;
  PAGODA_ASSIGN_OR_RETURN(parts.config, LoadModelConfig(model_dir));
  PAGODA_ASSIGN_OR_RETURN(parts.checkpoint, SafetensorsCheckpoint::Open(model_dir));
  const ModelConfig& c = parts.config;
  TensorLoader loader(*parts.checkpoint, options, parts.buffers);
  const int64_t vocab = c.vocab_size;
  const int64_t hidden = c.hidden_size;
  PAGODA_ASSIGN_OR_RETURN(parts.embed_tokens, loader.Load("model.embed_tokens.weight",
                                                          {vocab, hidden}, TensorKind::kMatrix));
  loader.SettleMatrixDType(parts.embed_tokens.dtype);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    PAGODA_ASSIGN_OR_RETURN(LayerWeights weights, LoadLayer(c, layer, loader));
    parts.layers.push_back(std::move(weights));
  }
  PAGODA_ASSIGN_OR_RETURN(parts.final_norm,
                          loader.Load("model.norm.weight", {hidden}, TensorKind::kVector));
  if (!c.tie_word_embeddings) {
    PAGODA_ASSIGN_OR_RETURN(parts.lm_head,
                            loader.Load("lm_head.weight", {vocab, hidden}, TensorKind::kMatrix));
  }
  return std::make_unique<ModelWeights>(std::move(parts));
}

}  // namespace pagoda::model

#include "model/llama_model.h"

#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cpu/rope.h"
#include "model/tiled_matrices.h"

namespace pagoda::model {
namespace {

using kernels::cpu::MatMul;
using kernels::cpu::MatMulArgs;
using kernels::cpu::WeightLayout;
using kernels::cpu::WeightType;

WeightType ToWeightType(DType dtype) {
  PAGODA_CHECK(dtype != DType::kF16) << "F16 matrices are converted at load";
  return dtype == DType::kF32 ? WeightType::kF32 : WeightType::kBF16;
}

WeightLayout LayoutOf(const WeightTensor& t) {
  return t.tiled ? WeightLayout::kTiles : WeightLayout::kRows;
}

const float* F32Data(const WeightTensor& t) {
  PAGODA_CHECK(t.dtype == DType::kF32) << "norms and biases are F32";
  return static_cast<const float*>(t.data);
}

// y[m, out] = x[m, in] * W^T (+ bias); with `accumulate`, y += that (the residual).
void Linear(const float* x, int64_t m, const WeightTensor& w,
            const std::optional<WeightTensor>& bias, float* y, kernels::cpu::ThreadPool& pool,
            bool accumulate = false) {
  MatMul(MatMulArgs{.x = x,
                    .w = w.data,
                    .w_type = ToWeightType(w.dtype),
                    .w_layout = LayoutOf(w),
                    .bias = bias.has_value() ? F32Data(*bias) : nullptr,
                    .y = y,
                    .m = m,
                    .n = w.shape[0],
                    .k = w.shape[1],
                    .accumulate = accumulate},
         pool);
}

}  // namespace

CpuKvCache::CpuKvCache(const ModelConfig& config, int num_blocks, int block_size, DType dtype,
                       StaticKvScales static_scales)
    : dtype_(dtype),
      num_blocks_(num_blocks),
      block_size_(block_size),
      num_layers_(config.num_layers),
      num_kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      layer_elements_(static_cast<int64_t>(num_blocks) * config.num_kv_heads * block_size *
                      config.head_dim),
      static_scales_(std::move(static_scales)) {
  const size_t total = static_cast<size_t>(layer_elements_) * config.num_layers;
  if (dtype == DType::kF32) {
    key_f32_.resize(total);
    value_f32_.resize(total);
  } else if (IsScaledKvType(dtype)) {
    if (dtype == DType::kInt8) {
      key_int8_.resize(total);
      value_int8_.resize(total);
    } else if (dtype == DType::kFp8E4M3) {
      key_e4m3_.resize(total);
      value_e4m3_.resize(total);
    } else {
      key_e5m2_.resize(total);
      value_e5m2_.resize(total);
    }
    if (static_scales_.empty()) {
      key_scale_.resize(total / static_cast<size_t>(config.head_dim));
      value_scale_.resize(total / static_cast<size_t>(config.head_dim));
    }
  } else {
    key_bf16_.resize(total);
    value_bf16_.resize(total);
  }
}

absl::StatusOr<std::unique_ptr<CpuKvCache>> CpuKvCache::Create(const ModelConfig& config,
                                                               int num_blocks, int block_size,
                                                               DType dtype,
                                                               StaticKvScales static_scales) {
  if (num_blocks <= 0 || block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache needs blocks: num_blocks=", num_blocks, " block_size=", block_size));
  }
  if (dtype != DType::kF32 && dtype != DType::kBF16 && !IsScaledKvType(dtype)) {
    return absl::InvalidArgumentError("the CPU KV cache holds F32, BF16, Int8, FP8 E4M3 or E5M2");
  }
  if (!static_scales.empty()) {
    if (dtype != DType::kFp8E4M3 && dtype != DType::kFp8E5M2) {
      return absl::InvalidArgumentError("static KV scales are for FP8 caches only");
    }
    if (static_cast<int>(static_scales.size()) != config.num_layers) {
      return absl::InvalidArgumentError("static KV scales: one entry per layer");
    }
    for (const std::vector<float>& layer : static_scales) {
      if (static_cast<int>(layer.size()) != 2 * config.num_kv_heads) {
        return absl::InvalidArgumentError("static KV scales: K and V scales per KV head");
      }
    }
  }
  return std::unique_ptr<CpuKvCache>(
      new CpuKvCache(config, num_blocks, block_size, dtype, std::move(static_scales)));
}

std::pair<char*, char*> CpuKvCache::LayerBytes(int index) const {
  const auto at = [&](const auto& key, const auto& value) {
    using T = typename std::decay_t<decltype(key)>::value_type;
    return std::pair<char*, char*>(
        reinterpret_cast<char*>(const_cast<T*>(key.data() + index * layer_elements_)),
        reinterpret_cast<char*>(const_cast<T*>(value.data() + index * layer_elements_)));
  };
  switch (dtype_) {
    case DType::kF32:
      return at(key_f32_, value_f32_);
    case DType::kInt8:
      return at(key_int8_, value_int8_);
    case DType::kFp8E4M3:
      return at(key_e4m3_, value_e4m3_);
    case DType::kFp8E5M2:
      return at(key_e5m2_, value_e5m2_);
    default:
      return at(key_bf16_, value_bf16_);
  }
}

int64_t CpuKvCache::block_bytes() const {
  const int64_t tile = static_cast<int64_t>(num_kv_heads_) * block_size_;
  const int64_t per_layer =
      2 * tile *
      (head_dim_ * DTypeSize(dtype_) + (key_scale_.empty() ? 0 : int64_t{sizeof(uint16_t)}));
  return per_layer * num_layers_;
}

void CpuKvCache::CopyBlockOut(int block, char* out) const {
  PAGODA_CHECK(block >= 0 && block < num_blocks_);
  const int64_t tile = static_cast<int64_t>(num_kv_heads_) * block_size_;
  const int64_t tile_bytes = tile * head_dim_ * DTypeSize(dtype_);
  const int64_t scales = layer_elements_ / head_dim_;
  for (int layer = 0; layer < num_layers_; ++layer) {
    const auto [key, value] = LayerBytes(layer);
    std::memcpy(out, key + block * tile_bytes, tile_bytes);
    std::memcpy(out + tile_bytes, value + block * tile_bytes, tile_bytes);
    out += 2 * tile_bytes;
    if (key_scale_.empty()) continue;
    const size_t at = static_cast<size_t>(layer * scales + block * tile);
    std::memcpy(out, key_scale_.data() + at, tile * sizeof(uint16_t));
    std::memcpy(out + tile * sizeof(uint16_t), value_scale_.data() + at, tile * sizeof(uint16_t));
    out += 2 * tile * sizeof(uint16_t);
  }
}

void CpuKvCache::CopyBlockIn(int block, const char* in) {
  PAGODA_CHECK(block >= 0 && block < num_blocks_);
  const int64_t tile = static_cast<int64_t>(num_kv_heads_) * block_size_;
  const int64_t tile_bytes = tile * head_dim_ * DTypeSize(dtype_);
  const int64_t scales = layer_elements_ / head_dim_;
  for (int layer = 0; layer < num_layers_; ++layer) {
    const auto [key, value] = LayerBytes(layer);
    std::memcpy(key + block * tile_bytes, in, tile_bytes);
    std::memcpy(value + block * tile_bytes, in + tile_bytes, tile_bytes);
    in += 2 * tile_bytes;
    if (key_scale_.empty()) continue;
    const size_t at = static_cast<size_t>(layer * scales + block * tile);
    std::memcpy(key_scale_.data() + at, in, tile * sizeof(uint16_t));
    std::memcpy(value_scale_.data() + at, in + tile * sizeof(uint16_t), tile * sizeof(uint16_t));
    in += 2 * tile * sizeof(uint16_t);
  }
}

int64_t CpuKvCache::BytesPerBlock(const ModelConfig& config, int block_size, DType dtype,
                                  bool per_token_scales) {
  return KvBytesPerToken(config, dtype, per_token_scales) * block_size;
}

StaticKvScales CheckpointKvScales(const ModelWeights& weights) {
  if (!weights.has_kv_scales()) return {};
  StaticKvScales scales;
  for (const LayerWeights& layer : weights.layers()) {
    std::vector<float> kv = layer.k_scale;
    kv.insert(kv.end(), layer.v_scale.begin(), layer.v_scale.end());
    scales.push_back(std::move(kv));
  }
  return scales;
}

int64_t KvBytesPerToken(const ModelConfig& config, DType dtype, bool per_token_scales) {
  // The 8-bit types add one bf16 scale per token and head, for K and for V, unless static.
  const int64_t per_head =
      config.head_dim * DTypeSize(dtype) + (IsScaledKvType(dtype) && per_token_scales ? 2 : 0);
  return 2LL * config.num_layers * config.num_kv_heads * per_head;
}

template <typename T>
kernels::PagedKvCacheView<T> CpuKvCache::ScaledLayer(std::vector<T>& key, std::vector<T>& value,
                                                     int index) {
  kernels::PagedKvCacheView<T> view{key.data() + index * layer_elements_,
                                    value.data() + index * layer_elements_,
                                    num_blocks_,
                                    num_kv_heads_,
                                    block_size_,
                                    head_dim_};
  if (static_scales()) {
    view.head_key_scale = static_scales_[index].data();
    view.head_value_scale = static_scales_[index].data() + num_kv_heads_;
  } else {
    const int64_t scales = layer_elements_ / head_dim_;
    view.key_scale = key_scale_.data() + index * scales;
    view.value_scale = value_scale_.data() + index * scales;
  }
  return view;
}

kernels::PagedKvCacheView<int8_t> CpuKvCache::layer_int8(int index) {
  PAGODA_CHECK(dtype_ == DType::kInt8);
  return ScaledLayer(key_int8_, value_int8_, index);
}

kernels::PagedKvCacheView<kernels::cpu::Fp8E4M3> CpuKvCache::layer_fp8_e4m3(int index) {
  PAGODA_CHECK(dtype_ == DType::kFp8E4M3);
  return ScaledLayer(key_e4m3_, value_e4m3_, index);
}

kernels::PagedKvCacheView<kernels::cpu::Fp8E5M2> CpuKvCache::layer_fp8_e5m2(int index) {
  PAGODA_CHECK(dtype_ == DType::kFp8E5M2);
  return ScaledLayer(key_e5m2_, value_e5m2_, index);
}

kernels::PagedKvCacheView<float> CpuKvCache::layer_f32(int index) {
  PAGODA_CHECK(dtype_ == DType::kF32);
  return {key_f32_.data() + index * layer_elements_,
          value_f32_.data() + index * layer_elements_,
          num_blocks_,
          num_kv_heads_,
          block_size_,
          head_dim_};
}

kernels::PagedKvCacheView<kernels::cpu::Bf16> CpuKvCache::layer_bf16(int index) {
  PAGODA_CHECK(dtype_ == DType::kBF16);
  return {key_bf16_.data() + index * layer_elements_,
          value_bf16_.data() + index * layer_elements_,
          num_blocks_,
          num_kv_heads_,
          block_size_,
          head_dim_};
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  std::optional<kernels::cpu::Llama3RopeScaling> scaling;
  if (c.rope_scaling.has_value()) {
    scaling = kernels::cpu::Llama3RopeScaling{
        .factor = c.rope_scaling->factor,
        .low_freq_factor = c.rope_scaling->low_freq_factor,
        .high_freq_factor = c.rope_scaling->high_freq_factor,
        .original_max_position_embeddings = c.rope_scaling->original_max_position_embeddings};
  }
  return kernels::cpu::RopeInverseFrequencies(c.head_dim, c.rope_theta, scaling);
}

LlamaModel::LlamaModel(std::unique_ptr<ModelWeights> weights, const Options& options)
    : weights_(std::move(weights)),
      pool_(options.num_threads),
      inv_freq_(RopeInverseFrequencies(weights_->config())),
      streaming_(options.streaming) {}

common::AttentionWindow LlamaModel::LayerWindow(int layer) const {
  if (!streaming_.full()) return streaming_;
  return {.sliding_window = config().LayerWindow(layer)};
}

common::AttentionWindow LlamaModel::KvWindow() const {
  if (!streaming_.full()) return streaming_;
  return {.sliding_window = config().UniformWindow()};
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    std::unique_ptr<ModelWeights> weights, const Options& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("no weights");
  if (options.num_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads must be >= 1, got ", options.num_threads));
  }
  if (weights->matrix_dtype() == DType::kF16) {
    return absl::InvalidArgumentError("F16 matrices must be converted to F32 or BF16 at load");
  }
  const ModelConfig& c = weights->config();
  const common::AttentionWindow& streaming = options.streaming;
  if (streaming.sliding_window < 0 || streaming.sink_tokens < 0 ||
      (streaming.sink_tokens > 0 && streaming.sliding_window == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("streaming attention needs a window > 0 and sinks >= 0, got window ",
                     streaming.sliding_window, ", sinks ", streaming.sink_tokens));
  }
  if (!streaming.full() && c.sliding_window.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has sliding-window layers (window ", *c.sliding_window,
        "); attention sinks and a streaming window apply to full-attention models only"));
  }
  if (c.rope_scaling.has_value() && c.rope_scaling->type != "llama3") {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling type ", c.rope_scaling->type, " is not supported"));
  }
  const bool tile = options.tile_matrices && weights->matrix_dtype() == DType::kBF16 &&
                    kernels::cpu::TilesLayoutPays();
  std::unique_ptr<LlamaModel> model(new LlamaModel(std::move(weights), options));
  if (tile) {  // on the model's own pool
    ModelWeightsParts parts = std::move(*model->weights_).ReleaseParts();
    PAGODA_RETURN_IF_ERROR(TileMatrices(parts, model->pool_));
    model->weights_ = std::make_unique<ModelWeights>(std::move(parts));
  }
  return model;
}

void LlamaModel::Layer(int index, const ForwardBatch& batch, CpuKvCache& cache,
                       int64_t num_tokens) {
  const ModelConfig& c = config();
  const LayerWeights& w = weights_->layers()[index];
  const int64_t hidden = c.hidden_size;
  // Elementwise work is split over the pool too: at batch 16 the SiLU alone is ~400k exps.
  const auto norm = [&](const WeightTensor& weight) {
    pool_.ParallelFor(num_tokens, 1, [&](int64_t b, int64_t e) {
      kernels::cpu::RmsNorm(hidden_.data() + b * hidden, F32Data(weight), e - b, hidden,
                            c.rms_norm_eps, normed_.data() + b * hidden);
    });
  };

  norm(w.input_norm);
  Linear(normed_.data(), num_tokens, w.q_proj, w.q_bias, q_.data(), pool_);
  Linear(normed_.data(), num_tokens, w.k_proj, w.k_bias, k_.data(), pool_);
  Linear(normed_.data(), num_tokens, w.v_proj, w.v_bias, v_.data(), pool_);
  const int half = c.head_dim / 2;
  if (streaming_.sink_tokens > 0) {
    // The sink queries: the same queries rotated at their cache positions.
    sink_q_.assign(q_.begin(), q_.begin() + num_tokens * c.num_heads * c.head_dim);
    kernels::cpu::ApplyRope(sink_q_.data(), num_tokens, c.num_heads, c.head_dim,
                            sink_rope_.cos.data(), sink_rope_.sin.data());
  }
  pool_.ParallelFor(num_tokens, 1, [&](int64_t b, int64_t e) {
    const float* cos = rope_.cos.data() + b * half;
    const float* sin = rope_.sin.data() + b * half;
    kernels::cpu::ApplyRope(q_.data() + b * c.num_heads * c.head_dim, e - b, c.num_heads,
                            c.head_dim, cos, sin);
    kernels::cpu::ApplyRope(k_.data() + b * c.num_kv_heads * c.head_dim, e - b, c.num_kv_heads,
                            c.head_dim, cos, sin);
  });

  if (cache.dtype() == DType::kF32) {
    Attention(batch, cache.layer_f32(index), index);
  } else if (cache.dtype() == DType::kInt8) {
    Attention(batch, cache.layer_int8(index), index);
  } else if (cache.dtype() == DType::kFp8E4M3) {
    Attention(batch, cache.layer_fp8_e4m3(index), index);
  } else if (cache.dtype() == DType::kFp8E5M2) {
    Attention(batch, cache.layer_fp8_e5m2(index), index);
  } else {
    Attention(batch, cache.layer_bf16(index), index);
  }
  // The residual adds are the output projections' epilogues, and the SwiGLU activation the
  // gate and up products' (on AMX): no pass over the products follows them.
  Linear(attn_.data(), num_tokens, w.o_proj, std::nullopt, hidden_.data(), pool_,
         /*accumulate=*/true);

  norm(w.post_attention_norm);
  kernels::cpu::GatedMatMul(
      {.x = normed_.data(),
       .w_gate = w.gate_proj.data,
       .w_up = w.up_proj.data,
       .w_type = ToWeightType(weights_->matrix_dtype()),
       .w_layout = LayoutOf(w.gate_proj),  // up_proj has its shape, so its layout
       .y = gate_.data(),
       .scratch = up_.data(),
       .m = num_tokens,
       .n = c.intermediate_size,
       .k = hidden},
      pool_);
  Linear(gate_.data(), num_tokens, w.down_proj, std::nullopt, hidden_.data(), pool_,
         /*accumulate=*/true);
}

template <typename T>
void LlamaModel::Attention(const ForwardBatch& batch, const kernels::PagedKvCacheView<T>& view,
                           int layer) {
  const ModelConfig& c = config();
  // On the pool: a prompt's tokens are many, and each writes its own slots.
  const int64_t kv_row = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  pool_.ParallelFor(static_cast<int64_t>(batch.slot_mapping.size()), 64, [&](int64_t b, int64_t e) {
    kernels::cpu::ReshapeAndCache(k_.data() + b * kv_row, v_.data() + b * kv_row,
                                  batch.slot_mapping.subspan(b, e - b), view);
  });
  kernels::cpu::PagedAttention(
      kernels::cpu::PagedAttentionArgs<T>{
          .query = q_.data(),
          .output = attn_.data(),
          .num_heads = c.num_heads,
          .cache = view,
          .query_start = batch.query_start,
          .context_lens = batch.context_lens,
          .block_tables = batch.block_tables,
          .max_blocks_per_request = batch.max_blocks_per_request,
          .scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim)),
          .window = LayerWindow(layer),
          .sink_query = streaming_.sink_tokens > 0 ? sink_q_.data() : nullptr},
      pool_);
}

absl::Status LlamaModel::Forward(const ForwardBatch& batch, CpuKvCache& cache,
                                 std::vector<float>* logits) {
  if (absl::Status s = ValidateForwardBatch(batch, config().vocab_size, cache.num_blocks(),
                                            cache.block_size(), KvWindow());
      !s.ok()) {
    return s;
  }
  const ModelConfig& c = config();
  const int64_t t = static_cast<int64_t>(batch.token_ids.size());
  const int64_t hidden = c.hidden_size;
  hidden_.resize(t * hidden);
  normed_.resize(t * hidden);
  q_.resize(t * c.num_heads * c.head_dim);
  attn_.resize(q_.size());
  k_.resize(t * c.num_kv_heads * c.head_dim);
  v_.resize(k_.size());
  gate_.resize(t * c.intermediate_size);
  up_.resize(gate_.size());

  const WeightTensor& embed = weights_->embed_tokens();
  kernels::cpu::Embedding(batch.token_ids, embed.data, ToWeightType(embed.dtype), hidden,
                          hidden_.data(), LayoutOf(embed));
  // Past the model's context (StreamingLLM only) the angles are computed in double.
  kernels::cpu::ComputeRopeAngles(batch.positions, inv_freq_, &rope_, c.max_position_embeddings);
  if (streaming_.sink_tokens > 0) {
    // Past S + W - 1 the cache holds S sinks and W window tokens, the query the last of them.
    const int32_t last_cache_position = streaming_.sink_tokens + streaming_.sliding_window - 1;
    sink_positions_.resize(batch.positions.size());
    for (size_t i = 0; i < batch.positions.size(); ++i) {
      sink_positions_[i] = std::min(batch.positions[i], last_cache_position);
    }
    kernels::cpu::ComputeRopeAngles(sink_positions_, inv_freq_, &sink_rope_);
  }
  for (int l = 0; l < c.num_layers; ++l) Layer(l, batch, cache, t);

  // Only the rows that need logits go through the final norm and the lm_head.
  const int64_t rows = static_cast<int64_t>(batch.logits_indices.size());
  std::vector<float> last(rows * hidden);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(hidden_.data() + batch.logits_indices[r] * hidden, hidden,
                last.data() + r * hidden);
  }
  kernels::cpu::RmsNorm(last.data(), F32Data(weights_->final_norm()), rows, hidden, c.rms_norm_eps,
                        last.data());
  logits->resize(rows * c.vocab_size);
  Linear(last.data(), rows, weights_->lm_head(), std::nullopt, logits->data(), pool_);
  return absl::OkStatus();
}

}  // namespace pagoda::model

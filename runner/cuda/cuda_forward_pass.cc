// The kernels of one forward pass of the CUDA model runner (runner/cuda/README.md, "One step"):
// what CudaModelRunnerImpl::EnqueueForward enqueues on the runner's stream, eagerly or under
// CUDA-graph capture.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>

#include "common/status_macros.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/paged_attention_prefill.h"
#include "kernels/cuda/reshape_and_cache.h"
#include "kernels/cuda/rope.h"
#include "runner/cuda/cuda_model_runner_impl.h"

namespace pagoda::runner::cuda::internal {

template <typename T, typename C>
kernels::PagedKvCacheView<C> CudaModelRunnerImpl<T, C>::LayerCache(int layer) const {
  kernels::PagedKvCacheView<C> view{.key = nullptr,
                                    .value = nullptr,
                                    .num_blocks = num_blocks_,
                                    .num_kv_heads = config_.num_kv_heads,
                                    .block_size = options_.block_size,
                                    .head_dim = config_.head_dim};
  const int64_t pool = view.num_elements();
  C* const values = static_cast<C*>(kv_pool_.data());
  view.key = values + 2 * layer * pool;
  view.value = view.key + pool;
  if (kv_static_scales()) {
    const float* const scales = static_cast<const float*>(head_scales_.data());
    view.head_key_scale = scales + 2 * layer * config_.num_kv_heads;
    view.head_value_scale = view.head_key_scale + config_.num_kv_heads;
  } else if (ScaleBytes() > 0) {
    const int64_t rows = pool / config_.head_dim;  // one scale per token and KV head
    uint16_t* const scales = reinterpret_cast<uint16_t*>(values + 2 * config_.num_layers * pool);
    view.key_scale = scales + 2 * layer * rows;
    view.value_scale = view.key_scale + rows;
  }
  return view;
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::EnqueueAttentionBlock(int index, const DeviceStep& s) {
  const DeviceLayer& w = weights_.layers[index];
  cudaStream_t stream = stream_.get();
  const int32_t n = s.shape.num_tokens;  // rows computed, padding included
  const kernels::PagedKvCacheView<C> cache = LayerCache(index);
  T* qkv = Ptr(qkv_);
  T* const k = qkv + dims_.q_dim;
  T* const v = k + dims_.kv_dim;

  PAGODA_RETURN_IF_ERROR(kc::RmsNorm<T>({.x = Ptr(hidden_),
                                         .weight = Ptr(w.input_norm),
                                         .out = Ptr(normed_),
                                         .rows = n,
                                         .dim = static_cast<int32_t>(dims_.hidden),
                                         .eps = config_.rms_norm_eps},
                                        stream));
  PAGODA_RETURN_IF_ERROR(gemm_->Run<T>({.x = Ptr(normed_),
                                        .w = Ptr(w.qkv),
                                        .bias = w.qkv_bias.data() ? Ptr(w.qkv_bias) : nullptr,
                                        .y = qkv,
                                        .m = n,
                                        .n = dims_.qkv_dim,
                                        .k = dims_.hidden},
                                       stream));
  PAGODA_RETURN_IF_ERROR(
      kc::ApplyRope<T>({.query = qkv,
                        .query_token_stride = dims_.qkv_dim,
                        .key = k,
                        .key_token_stride = dims_.qkv_dim,
                        .positions = s.At<int32_t>(s.layout.positions),
                        .inv_freq = static_cast<const float*>(weights_.inv_freq.data()),
                        .num_tokens = n,
                        .num_heads = config_.num_heads,
                        .num_kv_heads = config_.num_kv_heads,
                        .head_dim = config_.head_dim},
                       stream));
  PAGODA_RETURN_IF_ERROR(
      (kc::ReshapeAndCache<T, C>({.key = k,
                                  .key_token_stride = dims_.qkv_dim,
                                  .value = v,
                                  .value_token_stride = dims_.qkv_dim,
                                  .slot_mapping = s.At<int64_t>(s.layout.slot_mapping),
                                  .num_tokens = n,
                                  .cache = cache},
                                 stream)));
  PAGODA_RETURN_IF_ERROR(EnqueuePagedAttention(cache, index, s));
  return gemm_->Run<T>({.x = Ptr(attn_),
                        .w = Ptr(w.o_proj),
                        .y = Ptr(hidden_),
                        .m = n,
                        .n = dims_.hidden,
                        .k = dims_.q_dim,
                        .output = kc::GemmOutput::kAccumulate},
                       stream);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::EnqueuePagedAttention(
    const kernels::PagedKvCacheView<C>& cache, int layer, const DeviceStep& s) {
  const common::AttentionWindow window{.sliding_window = config_.LayerWindow(layer)};
  cudaStream_t stream = stream_.get();
  T* const qkv = Ptr(qkv_);
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  if (s.shape.num_decode_requests > 0) {
    PAGODA_RETURN_IF_ERROR((kc::PagedAttentionDecode<T, C>(
        {.query = qkv,
         .query_token_stride = dims_.qkv_dim,
         .output = Ptr(attn_),
         .output_token_stride = dims_.q_dim,
         .num_requests = s.shape.num_decode_requests,
         .num_heads = config_.num_heads,
         .cache = cache,
         .query_start = s.At<int32_t>(s.layout.decode_rows),
         .context_lens = s.At<int32_t>(s.layout.decode_context_lens),
         .block_tables = s.At<int32_t>(s.layout.decode_block_tables),
         .max_blocks_per_request = s.shape.table_width,
         .scale = scale,
         .window = window,
         .plan = s.plan,
         .workspace = decode_workspace_.data(),
         .workspace_bytes = static_cast<int64_t>(decode_workspace_.size_bytes())},
        stream)));
  }
  if (s.shape.num_prefill_requests > 0) {
    PAGODA_RETURN_IF_ERROR((kc::PagedAttentionPrefill<T, C>(
        {.query = qkv,
         .query_token_stride = dims_.qkv_dim,
         .output = Ptr(attn_),
         .output_token_stride = dims_.q_dim,
         .num_requests = s.shape.num_prefill_requests,
         .num_query_tokens = s.num_prefill_tokens,
         .num_heads = config_.num_heads,
         .cache = cache,
         .query_start = s.At<int32_t>(s.layout.prefill_query_start),
         .context_lens = s.At<int32_t>(s.layout.prefill_context_lens),
         .block_tables = s.At<int32_t>(s.layout.prefill_block_tables),
         .max_blocks_per_request = s.shape.table_width,
         .scale = scale,
         .window = window,
         .workspace = prefill_workspace_.data(),
         .workspace_bytes = static_cast<int64_t>(prefill_workspace_.size_bytes())},
        stream)));
  }
  return absl::OkStatus();
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::EnqueueMlpBlock(int index, const DeviceStep& s) {
  const DeviceLayer& w = weights_.layers[index];
  cudaStream_t stream = stream_.get();
  const int32_t n = s.shape.num_tokens;
  PAGODA_RETURN_IF_ERROR(kc::RmsNorm<T>({.x = Ptr(hidden_),
                                         .weight = Ptr(w.post_norm),
                                         .out = Ptr(normed_),
                                         .rows = n,
                                         .dim = static_cast<int32_t>(dims_.hidden),
                                         .eps = config_.rms_norm_eps},
                                        stream));
  PAGODA_RETURN_IF_ERROR(gemm_->Run<T>({.x = Ptr(normed_),
                                        .w = Ptr(w.gate_up),
                                        .y = Ptr(gate_up_),
                                        .m = n,
                                        .n = 2 * dims_.intermediate,
                                        .k = dims_.hidden},
                                       stream));
  PAGODA_RETURN_IF_ERROR(kc::SiluAndMul<T>({.gate = Ptr(gate_up_),
                                            .gate_row_stride = 2 * dims_.intermediate,
                                            .up = Ptr(gate_up_) + dims_.intermediate,
                                            .up_row_stride = 2 * dims_.intermediate,
                                            .out = Ptr(act_),
                                            .out_row_stride = dims_.intermediate,
                                            .rows = n,
                                            .dim = static_cast<int32_t>(dims_.intermediate)},
                                           stream));
  return gemm_->Run<T>({.x = Ptr(act_),
                        .w = Ptr(w.down),
                        .y = Ptr(hidden_),
                        .m = n,
                        .n = dims_.hidden,
                        .k = dims_.intermediate,
                        .output = kc::GemmOutput::kAccumulate},
                       stream);
}

template <typename T, typename C>
absl::Status CudaModelRunnerImpl<T, C>::EnqueueForward(const DeviceStep& s) {
  cudaStream_t stream = stream_.get();
  const int32_t hidden = static_cast<int32_t>(dims_.hidden);
  PAGODA_RETURN_IF_ERROR(kc::Embedding<T>({.token_ids = s.At<int32_t>(s.layout.token_ids),
                                           .table = Ptr(weights_.embed),
                                           .vocab_size = dims_.vocab,
                                           .dim = hidden,
                                           .num_tokens = s.shape.num_tokens,
                                           .out = Ptr(hidden_)},
                                          stream));
  for (int l = 0; l < config_.num_layers; ++l) {
    PAGODA_RETURN_IF_ERROR(EnqueueAttentionBlock(l, s));
    PAGODA_RETURN_IF_ERROR(EnqueueMlpBlock(l, s));
  }
  // Only the rows whose logits are wanted go through the final norm and the lm_head: gathered
  // with the embedding kernel, the hidden states as its table.
  PAGODA_RETURN_IF_ERROR(kc::Embedding<T>({.token_ids = s.At<int32_t>(s.layout.logits_indices),
                                           .table = Ptr(hidden_),
                                           .vocab_size = s.shape.num_tokens,
                                           .dim = hidden,
                                           .num_tokens = s.shape.num_logits,
                                           .out = Ptr(last_)},
                                          stream));
  PAGODA_RETURN_IF_ERROR(kc::RmsNorm<T>({.x = Ptr(last_),
                                         .weight = Ptr(weights_.final_norm),
                                         .out = Ptr(last_),
                                         .rows = s.shape.num_logits,
                                         .dim = hidden,
                                         .eps = config_.rms_norm_eps},
                                        stream));
  return gemm_->Run<T>(
      {.x = Ptr(last_),
       .w = Ptr(weights_.lm_head.data() != nullptr ? weights_.lm_head : weights_.embed),
       .y = Ptr(logits_),
       .m = s.shape.num_logits,
       .n = dims_.vocab_padded,
       .k = dims_.hidden},
      stream);
}

#define PAGODA_INSTANTIATE_FORWARD(T, C) \
  template absl::Status CudaModelRunnerImpl<T, C>::EnqueueForward(const DeviceStep&);
PAGODA_INSTANTIATE_FORWARD(__nv_bfloat16, __nv_bfloat16)
PAGODA_INSTANTIATE_FORWARD(__half, __half)
PAGODA_INSTANTIATE_FORWARD(__nv_bfloat16, int8_t)
PAGODA_INSTANTIATE_FORWARD(__nv_bfloat16, __nv_fp8_e4m3)
PAGODA_INSTANTIATE_FORWARD(__nv_bfloat16, __nv_fp8_e5m2)
#undef PAGODA_INSTANTIATE_FORWARD

}  // namespace pagoda::runner::cuda::internal

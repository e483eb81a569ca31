#pragma once

// Internal to engine/cuda: the CUDA model runner's class, shared by cuda_model_runner.cc (set-up,
// pool sizing, graphs, steps, logits) and cuda_forward_pass.cc (the kernels of one forward pass).
// Everything else uses CudaModelRunner (cuda_model_runner.h).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/paged_attention_decode.h"
#include "kernels/cuda/pinned_host_buffer.h"
#include "kernels/paged_kv_cache.h"
#include "model/dtype.h"
#include "model/llama_model.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "runner/cuda/cuda_model_runner.h"
#include "runner/cuda/device_weights.h"
#include "runner/cuda/step_layout.h"
#include "runner/model_runner.h"

namespace pagoda::runner::cuda::internal {

namespace kc = kernels::cuda;

template <typename T>
constexpr model::DType DTypeOf() {
  if constexpr (std::is_same_v<T, int8_t>) {
    return model::DType::kInt8;
  } else if constexpr (std::is_same_v<T, __nv_fp8_e4m3>) {
    return model::DType::kFp8E4M3;
  } else if constexpr (std::is_same_v<T, __nv_fp8_e5m2>) {
    return model::DType::kFp8E5M2;
  } else {
    return std::is_same_v<T, __nv_bfloat16> ? model::DType::kBF16 : model::DType::kF16;
  }
}

// Device pointers and sizes of one step, read from the packed metadata on the device.
struct DeviceStep {
  StepShape shape;
  const std::byte* meta = nullptr;  // the packed arrays (StepLayout)
  StepLayout layout;
  int32_t num_prefill_tokens = 0;
  kc::PagedDecodePlan plan;

  template <typename U>
  const U* At(int64_t offset) const {
    return reinterpret_cast<const U*>(meta + offset);
  }
};

// T computes (activations, weights); C is the KV cache's element type: T, or an 8-bit type with
// a bf16 scale per token and KV head (kernels/paged_kv_cache.h).
template <typename T, typename C = T>
class CudaModelRunnerImpl final : public CudaModelRunner {
 public:
  CudaModelRunnerImpl(const model::ModelConfig& config, const CudaModelRunnerOptions& options)
      : config_(config), options_(options), dims_(config) {}

  absl::Status Init(std::unique_ptr<model::ModelWeights> weights);

  const model::ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return options_.block_size; }
  model::DType kv_dtype() const override { return DTypeOf<C>(); }
  model::DType weight_dtype() const override { return DTypeOf<T>(); }
  const CudaRunnerReport& report() const override { return report_; }
  std::string Describe() const override;
  int64_t graph_replays() const override { return graph_replays_; }
  int64_t device_argmax_rows() const override { return device_argmax_rows_; }

  // KV offload: per layer the block's K tile, then its V tile (kv_heads * block_size * head_dim
  // elements each), then for an 8-bit cache its K and V scale tiles (kv_heads * block_size bf16
  // each): the CPU runner's layout. Copied on the runner's stream and waited for.
  int64_t kv_block_bytes() const override { return BytesPerBlock(); }
  bool kv_static_scales() const override { return head_scales_.data() != nullptr; }
  absl::Status ReadKvBlock(BlockId block, char* out) override;
  absl::Status WriteKvBlock(BlockId block, const char* in) override;
  char* AllocateHostMemory(int64_t bytes) override;
  void FreeHostMemory(char* memory) override;

  absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) override;
  absl::Status ExecuteStep(const model::ForwardBatch& batch, absl::Span<const SamplingRow> rows,
                           std::vector<absl::StatusOr<TokenId>>* tokens) override;

 private:
  struct Graph {
    kc::CudaGraph graph;
    DeviceStep step;
  };
  // What a step sends back to the host, in logits-row order.
  struct HostRows {
    std::vector<int32_t> argmax_tokens;  // of the argmax rows (-1: no samplable token)
    std::vector<float> logits;           // of the other rows: [count, vocab]
  };

  // Copies one block of every layer between the pool and host memory.
  absl::Status CopyKvBlock(BlockId block, char* host, bool to_host);
  absl::Status AllocateBuffers();
  absl::Status AllocateKvPool(int64_t num_blocks);
  absl::Status ProfileAndSizePool();
  absl::Status CaptureGraphs();
  // Runs the step; logits row i comes back as its argmax when greedy_rows[i] != 0 (empty: no
  // row), else as its logits.
  absl::Status RunStep(const model::ForwardBatch& batch, absl::Span<const uint8_t> greedy_rows,
                       HostRows* out);
  absl::Status RunEager(const model::ForwardBatch& batch, const AttentionSplit& split,
                        absl::Span<const uint8_t> greedy_rows, HostRows* out);
  absl::Status RunGraph(const Graph& graph, const model::ForwardBatch& batch,
                        const AttentionSplit& split, absl::Span<const uint8_t> greedy_rows,
                        HostRows* out);
  // Copies the step PackStep packed into packed_bytes_ to the device metadata buffer (through
  // pinned memory).
  absl::Status UploadStep(const PackedStep& packed);
  // Enqueues the forward pass of `step` on the stream; the logits of its logits rows land in
  // logits_ ([num_logits, vocab_padded]).
  // (cuda_forward_pass.cc, with the three below.)
  absl::Status EnqueueForward(const DeviceStep& step);
  // RMSNorm, the fused QKV GEMM, RoPE, the K/V write to the cache, attention, and o_proj
  // accumulating into hidden_.
  absl::Status EnqueueAttentionBlock(int layer, const DeviceStep& step);
  // The decode kernel for the step's decode requests, the prefill kernel for its prefill range.
  absl::Status EnqueuePagedAttention(const kernels::PagedKvCacheView<C>& cache, int layer,
                                     const DeviceStep& step);
  // RMSNorm, the fused gate_up GEMM, SiLU-and-mul, and down accumulating into hidden_.
  absl::Status EnqueueMlpBlock(int layer, const DeviceStep& step);
  // Answers the step's logits rows from logits_ rows [0, rows), waits, and fills `out`: row i
  // is device row pick[i], answered with its argmax when greedy_rows[i] (empty: none), else
  // with its logits. Only what is answered crosses to the host.
  absl::Status DownloadLogits(int32_t rows, absl::Span<const int32_t> pick,
                              absl::Span<const uint8_t> greedy_rows, HostRows* out);
  kernels::PagedKvCacheView<C> LayerCache(int layer) const;
  // An FP8 cache takes the checkpoint's static per-head K/V scales when it has them
  // (model::CheckpointKvScales): uploads them to head_scales_.
  absl::Status UploadStaticKvScales(const model::ModelWeights& weights);
  // Bytes of the per-token scale of one KV head: 2 (bf16) for an 8-bit cache without static
  // scales, else 0.
  int64_t ScaleBytes() const { return sizeof(C) == 1 && !kv_static_scales() ? 2 : 0; }
  // The pool's bytes per block (values, and per-token scales unless static), all layers.
  int64_t BytesPerBlock() const {
    return model::CpuKvCache::BytesPerBlock(config_, options_.block_size, DTypeOf<C>(),
                                            /*per_token_scales=*/!kv_static_scales());
  }
  // The decode split for `num_requests` requests of at most `max_context_len` tokens; a pure
  // function of the shape once decode_resident_blocks_ is known (no device query per step).
  kc::PagedDecodePlan DecodePlan(int32_t num_requests, int32_t max_context_len) const {
    return kc::PlanPagedDecodeFor({.num_requests = num_requests,
                                   .num_heads = config_.num_heads,
                                   .num_kv_heads = config_.num_kv_heads,
                                   .head_dim = config_.head_dim,
                                   .max_context_len = max_context_len},
                                  decode_resident_blocks_);
  }

  T* Ptr(const kc::DeviceBuffer& b) const { return static_cast<T*>(b.data()); }

  const model::ModelConfig config_;
  const CudaModelRunnerOptions options_;
  const DeviceDims dims_;
  int max_model_len_ = 0;
  int32_t table_width_ = 0;  // ceil(max_model_len / block_size)
  int32_t max_tokens_ = 0;   // rows of the activation buffers
  int32_t max_requests_ = 0;
  int32_t max_logits_ = 0;
  int64_t decode_resident_blocks_ = 0;  // kc::PagedDecodeResidentBlocks, queried once

  kc::CudaStream stream_;
  std::unique_ptr<kc::Gemm> gemm_;

  DeviceWeights weights_;

  // Activations, [max_tokens_, ...] each.
  kc::DeviceBuffer hidden_, normed_, qkv_, attn_, gate_up_, act_;
  kc::DeviceBuffer last_;    // [max_logits_, hidden]
  kc::DeviceBuffer logits_;  // [max_logits_, vocab_padded]
  kc::DeviceBuffer decode_workspace_, prefill_workspace_;
  kc::DeviceBuffer meta_;  // the packed step
  kc::PinnedHostBuffer meta_staging_;
  kc::PinnedHostBuffer logits_staging_;  // [max_logits_, vocab_padded] T bits
  kc::DeviceBuffer argmax_;              // int32 [max_logits_]: greedy tokens
  kc::PinnedHostBuffer argmax_staging_;  // int32 [max_logits_]
  std::vector<std::byte> packed_bytes_;  // PackStep's output (step_layout.h)
  std::vector<uint8_t> argmax_rows_;     // ExecuteStep's per-row choice, reused
  HostRows host_rows_;                   // reused

  // [layers][K, V][num_blocks, kv_heads, block_size, head_dim] of C, then for an 8-bit cache
  // with per-token scales [layers][K, V][num_blocks, kv_heads, block_size] bf16 scales.
  kc::DeviceBuffer kv_pool_;
  // FP8 with the checkpoint's scales: float [layers][K, V][kv_heads]; else empty.
  kc::DeviceBuffer head_scales_;
  // Page-locked memory lent to the KV offload host tier (AllocateHostMemory).
  std::map<char*, kc::PinnedHostBuffer> host_memory_;
  int num_blocks_ = 0;

  std::map<int, Graph> graphs_;  // by batch size
  int max_graph_size_ = 0;
  int64_t graph_replays_ = 0;
  int64_t device_argmax_rows_ = 0;
  CudaRunnerReport report_;
};

}  // namespace pagoda::runner::cuda::internal

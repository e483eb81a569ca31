#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/fp8.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/paged_kv_cache.h"
#include "model/forward_batch.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace pagoda::model {

// The CPU KV cache of every layer: one K and one V pool per layer, each
// [num_blocks, num_kv_heads, block_size, head_dim], indexed by the same block ids. Elements are
// F32 (exact), BF16 (half the memory and the bandwidth attention reads; K/V rounded to bf16) or
// Int8 (about a quarter of F32's, with a bf16 scale per token and head for K and for V).
// KV-cache bytes per token across all layers, K and V, with int8's per-token scales (the
// layout of kernels/paged_kv_cache.h, on the CPU and the GPU alike).
// `per_token_scales`: whether an 8-bit type stores a bf16 scale per token and head (FP8 with a
// checkpoint's static scales does not).
int64_t KvBytesPerToken(const ModelConfig& config, DType dtype, bool per_token_scales = true);

// FP8 with static scales: [num_layers] of the layer's K scales then V scales, num_kv_heads each.
using StaticKvScales = std::vector<std::vector<float>>;
// The checkpoint's k_scale/v_scale in that layout; empty when some layer has none.
StaticKvScales CheckpointKvScales(const ModelWeights& weights);

class CpuKvCache {
 public:
  // `dtype` is DType::kF32, kBF16, or an 8-bit type: kInt8, kFp8E4M3, kFp8E5M2.
  // With `static_scales` (FP8 types only, CheckpointKvScales' layout) the cache keeps those
  // per-head scales instead of a scale per token.
  static absl::StatusOr<std::unique_ptr<CpuKvCache>> Create(const ModelConfig& config,
                                                            int num_blocks, int block_size,
                                                            DType dtype = DType::kF32,
                                                            StaticKvScales static_scales = {});
  // Bytes one block takes across all layers, K and V.
  static int64_t BytesPerBlock(const ModelConfig& config, int block_size, DType dtype,
                               bool per_token_scales = true);
  bool static_scales() const { return !static_scales_.empty(); }

  DType dtype() const { return dtype_; }
  // The view of layer `index`; call the one that matches dtype().
  kernels::PagedKvCacheView<float> layer_f32(int index);
  kernels::PagedKvCacheView<kernels::cpu::Bf16> layer_bf16(int index);
  kernels::PagedKvCacheView<int8_t> layer_int8(int index);
  kernels::PagedKvCacheView<kernels::cpu::Fp8E4M3> layer_fp8_e4m3(int index);
  kernels::PagedKvCacheView<kernels::cpu::Fp8E5M2> layer_fp8_e5m2(int index);
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }

  // One block's K/V of every layer as bytes, for the tiers below the pool: per layer its K
  // tile, V tile ([num_kv_heads, block_size, head_dim] each), then the per-token K and V scales
  // of the 8-bit types ([num_kv_heads, block_size] bf16 each).
  int64_t block_bytes() const;
  void CopyBlockOut(int block, char* out) const;
  void CopyBlockIn(int block, const char* in);

 private:
  // The K and V storage of layer `index` as bytes.
  std::pair<char*, char*> LayerBytes(int index) const;
  CpuKvCache(const ModelConfig& config, int num_blocks, int block_size, DType dtype,
             StaticKvScales static_scales);
  template <typename T>
  kernels::PagedKvCacheView<T> ScaledLayer(std::vector<T>& key, std::vector<T>& value, int index);

  DType dtype_;
  int num_blocks_;
  int block_size_;
  int num_layers_;
  int num_kv_heads_;
  int head_dim_;
  int64_t layer_elements_;
  // [num_layers, layer_elements_] each; only the pair of dtype_ is allocated.
  std::vector<float> key_f32_, value_f32_;
  std::vector<kernels::cpu::Bf16> key_bf16_, value_bf16_;
  std::vector<int8_t> key_int8_, value_int8_;
  std::vector<kernels::cpu::Fp8E4M3> key_e4m3_, value_e4m3_;
  std::vector<kernels::cpu::Fp8E5M2> key_e5m2_, value_e5m2_;
  // FP8 with static scales: CheckpointKvScales' layout; the per-token arrays are then empty.
  StaticKvScales static_scales_;
  // The 8-bit types: [num_layers, num_blocks * num_kv_heads * block_size] bf16 scales each.
  std::vector<uint16_t> key_scale_, value_scale_;
};

// A Llama-family decoder (Llama 2/3, Mistral, Qwen2) running on the CPU over the paged KV
// cache. Weights may be F32 or BF16 (computed in F32). Not thread-safe: one Forward at a time,
// from the engine thread; it parallelizes internally over its own thread pool.
// The model's RoPE inverse frequencies ([head_dim / 2]): rope_theta, with Llama 3's frequency
// scaling when the config has rope_scaling. Shared by the CPU model and the CUDA runner.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

class LlamaModel {
 public:
  struct Options {
    int num_threads = 2;
    // StreamingLLM for a model with full attention: every layer attends the first
    // streaming.sink_tokens positions and the last streaming.sliding_window ones, scoring the
    // sinks at their position in the cache (PagedAttentionArgs::sink_query). Default: off.
    common::AttentionWindow streaming;
    // Where the CPU has AMX tiles (kernels::cpu::TilesLayoutPays), Create repacks the bf16
    // matrices into the tiles' operand layout (model/tiled_matrices.h): the same sums on the
    // tiles, bit for bit, and faster products (docs/benchmarks.md); steps of fewer than 4
    // tokens sum in another order (f32 either way). false keeps the checkpoint's layout.
    bool tile_matrices = true;
  };

  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(std::unique_ptr<ModelWeights> weights,
                                                            const Options& options);

  const ModelConfig& config() const { return weights_->config(); }
  const ModelWeights& weights() const { return *weights_; }
  // What layer `layer` attends: the streaming window when on, else the config's window.
  common::AttentionWindow LayerWindow(int layer) const;
  // The window every layer shares, by which a request's dead KV blocks can be freed (the
  // streaming one, or the config's when all layers are windowed); full() when none.
  common::AttentionWindow KvWindow() const;

  // Runs every layer over `batch`, writing the new tokens' K/V into `cache`, and returns the
  // logits of batch.logits_indices: [logits_indices.size(), vocab_size] row-major.
  absl::Status Forward(const ForwardBatch& batch, CpuKvCache& cache, std::vector<float>* logits);

 private:
  LlamaModel(std::unique_ptr<ModelWeights> weights, const Options& options);
  void Layer(int index, const ForwardBatch& batch, CpuKvCache& cache, int64_t num_tokens);
  // Writes the layer's new K/V and runs paged attention on a cache of element type T.
  template <typename T>
  void Attention(const ForwardBatch& batch, const kernels::PagedKvCacheView<T>& view, int layer);

  std::unique_ptr<ModelWeights> weights_;
  kernels::cpu::ThreadPool pool_;
  std::vector<float> inv_freq_;
  kernels::cpu::RopeAngles rope_;  // this step's rotation angles, shared by every layer
  const common::AttentionWindow streaming_;
  // Streaming with sinks: each token's position in the cache (min(position, S + W - 1)), the
  // angles of those positions and the queries rotated by them.
  std::vector<int32_t> sink_positions_;
  kernels::cpu::RopeAngles sink_rope_;
  std::vector<float> sink_q_;
  // Scratch activations, grown to the largest batch seen.
  std::vector<float> hidden_, normed_, q_, k_, v_, attn_, gate_, up_;
};

}  // namespace pagoda::model

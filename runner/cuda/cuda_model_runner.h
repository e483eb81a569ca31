#pragma once

// The CUDA model runner: a Llama-family model on one NVIDIA GPU over a paged KV pool in device
// memory. This header has no CUDA types, so code built without CUDA can name it; the
// implementation is compiled only when CMake finds nvcc (PAGODA_WITH_CUDA).

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "model/dtype.h"
#include "model/model_weights.h"
#include "runner/cuda/kv_cache_budget.h"
#include "runner/model_runner.h"

namespace pagoda::runner::cuda {

struct CudaModelRunnerOptions {
  int device = 0;  // CUDA device ordinal (--device cuda:N)
  int block_size = 16;
  // Activations, weights and KV cache: kBF16 or kF16. Weights are converted to it at load.
  model::DType dtype = model::DType::kBF16;
  // The KV cache's type when it is not `dtype`: kInt8, kFp8E4M3 or kFp8E5M2, with a bf16 scale
  // per token and KV head computed as each token is written (kernels/paged_kv_cache.h).
  std::optional<model::DType> kv_dtype;
  // The pool's size: gpu_memory_utilization x device memory minus the runner's own memory
  // (kv_cache_budget.h), or exactly kv_cache_memory_bytes when > 0.
  double gpu_memory_utilization = 0.9;
  int64_t kv_cache_memory_bytes = 0;
  // The largest step the runner must run: it sizes the activation buffers for these and
  // profiles a forward pass of max_num_batched_tokens.
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 64;
  int max_model_len = 0;  // 0 = the model's max_position_embeddings
  // false: decode-only steps of up to max_cuda_graph_batch_size requests replay a CUDA graph
  // captured for the next larger size in cuda_graph_batch_sizes (padded); other steps run eagerly.
  bool enforce_eager = false;
  int max_cuda_graph_batch_size = 256;
};

// The CUDA devices this process can use (0 without a driver or device), and the memory of the
// current one: what callers above the runner (the engine's tests and benchmarks) ask before
// they build a runner, without the kernels' headers.
int VisibleCudaDeviceCount();
struct CudaDeviceMemory {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
absl::StatusOr<CudaDeviceMemory> CurrentCudaDeviceMemory();

// The decode batch sizes that get a CUDA graph, ascending: 1, 2, 4, 8, every multiple of 8 up
// to `max_size`, and `max_size` itself (vLLM's choice: padding wastes at most 7 rows).
std::vector<int> CudaGraphBatchSizes(int max_size);

// What Create measured and decided (for the start-up log and tests).
struct CudaRunnerReport {
  int device = 0;
  int compute_capability = 0;
  int64_t weight_bytes = 0;      // weights on the device (fused and padded)
  int64_t activation_bytes = 0;  // activation buffers and workspaces
  GpuMemoryProfile memory;       // readings of the profiling pass
  KvCacheBudget kv;              // the pool
  std::vector<int> graph_batch_sizes;
  double graph_capture_seconds = 0;
};

// Runs Llama-family models (model::LlamaModel's semantics) with the kernels of kernels/cuda:
// cuBLASLt for the projections, paged decode and varlen prefill attention reading the pool
// through the block tables. Created on any thread; Execute on one thread at a time (the engine
// thread), which the runner makes use its device.
class CudaModelRunner : public ModelRunner {
 public:
  // Uploads `weights` (the host copy is released), allocates the buffers, runs the profiling
  // pass, sizes and allocates the KV pool, and captures the CUDA graphs. UNAVAILABLE without a
  // device; INVALID_ARGUMENT for a model the kernels do not support (the error names the
  // setting: head_dim, hidden_size, rope_scaling); RESOURCE_EXHAUSTED when it does not fit.
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Create(
      std::unique_ptr<model::ModelWeights> weights, const CudaModelRunnerOptions& options);

  const char* backend_name() const override { return "cuda"; }
  // Sliding-window models: every layer's window (dead blocks are never read by the kernels).
  // Attention sinks are CPU-only.
  common::AttentionWindow kv_window() const override {
    return {.sliding_window = config().UniformWindow()};
  }

  virtual const CudaRunnerReport& report() const = 0;
  // Steps run through a CUDA graph so far.
  virtual int64_t graph_replays() const = 0;
  // Logits rows ExecuteStep answered with the argmax computed on the device so far.
  virtual int64_t device_argmax_rows() const = 0;
};

}  // namespace pagoda::runner::cuda

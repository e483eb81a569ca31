#pragma once

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pagoda::kernels::cuda {

// An instantiated CUDA graph (cudaGraphExec_t): a recorded sequence of kernel launches and
// copies replayed with one launch, which removes the per-kernel CPU launch cost of small decode
// batches. A replay reads and writes the device addresses recorded at capture, so the caller
// updates inputs in place before Launch. Move-only; the device current at Capture must be current
// for Launch and destruction.
class CudaGraph {
 public:
  // Records what `enqueue` puts on `stream` (which must not be the legacy default stream) and
  // instantiates it. Nothing runs during capture. `enqueue` must only enqueue work: no
  // synchronization, no cudaMalloc. Returns `enqueue`'s error, or INTERNAL when capture fails.
  static absl::StatusOr<CudaGraph> Capture(cudaStream_t stream,
                                           absl::FunctionRef<absl::Status()> enqueue);

  CudaGraph() = default;
  CudaGraph(CudaGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& other) noexcept {
    if (this != &other) {
      Reset();
      exec_ = std::exchange(other.exec_, nullptr);
    }
    return *this;
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  ~CudaGraph() { Reset(); }

  // Enqueues one replay on `stream`.
  absl::Status Launch(cudaStream_t stream) const;

 private:
  explicit CudaGraph(cudaGraphExec_t exec) : exec_(exec) {}
  void Reset();

  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace pagoda::kernels::cuda

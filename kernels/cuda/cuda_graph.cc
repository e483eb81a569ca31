#include "kernels/cuda/cuda_graph.h"

#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda {

absl::StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream,
                                             absl::FunctionRef<absl::Status()> enqueue) {
  // Thread-local mode: other threads' CUDA calls (e.g. a test's) do not invalidate the capture.
  absl::Status status = CudaStatus(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                                   "cudaStreamBeginCapture");
  if (!status.ok()) return status;
  const absl::Status enqueued = enqueue();
  cudaGraph_t graph = nullptr;
  // Capture must always be ended, also after a failed enqueue, or the stream stays capturing.
  status = CudaStatus(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  if (!enqueued.ok() || !status.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return enqueued.ok() ? status : enqueued;
  }
  cudaGraphExec_t exec = nullptr;
  status = CudaStatus(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  if (!status.ok()) return status;
  return CudaGraph(exec);
}

void CudaGraph::Reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
}

absl::Status CudaGraph::Launch(cudaStream_t stream) const {
  return CudaStatus(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
}

}  // namespace pagoda::kernels::cuda

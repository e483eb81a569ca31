#include "kernels/cuda/cuda_stream.h"

#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda {

absl::StatusOr<CudaStream> CudaStream::Create() {
  cudaStream_t stream = nullptr;
  absl::Status status =
      CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (!status.ok()) return status;
  return CudaStream(stream);
}

void CudaStream::Reset() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
}

absl::Status CudaStream::Synchronize() const {
  return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

absl::Status CopyAsync(void* dst, const void* src, size_t size_bytes, cudaStream_t stream) {
  return CudaStatus(cudaMemcpyAsync(dst, src, size_bytes, cudaMemcpyDefault, stream),
                    "cudaMemcpyAsync");
}

absl::Status CopyRowsAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                           size_t row_bytes, size_t rows, cudaStream_t stream) {
  if (rows == 0 || row_bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows,
                                      cudaMemcpyDefault, stream),
                    "cudaMemcpy2DAsync");
}

absl::StatusOr<CudaEvent> CudaEvent::Create() {
  cudaEvent_t event = nullptr;
  absl::Status status = CudaStatus(cudaEventCreate(&event), "cudaEventCreate");
  if (!status.ok()) return status;
  return CudaEvent(event);
}

void CudaEvent::Reset() {
  if (event_ != nullptr) cudaEventDestroy(event_);
  event_ = nullptr;
}

absl::Status CudaEvent::Record(cudaStream_t stream) {
  return CudaStatus(cudaEventRecord(event_, stream), "cudaEventRecord");
}

absl::Status CudaEvent::Synchronize() const {
  return CudaStatus(cudaEventSynchronize(event_), "cudaEventSynchronize");
}

absl::StatusOr<float> CudaEvent::ElapsedMs(const CudaEvent& start, const CudaEvent& end) {
  float ms = 0.0f;
  absl::Status status =
      CudaStatus(cudaEventElapsedTime(&ms, start.event_, end.event_), "cudaEventElapsedTime");
  if (!status.ok()) return status;
  return ms;
}

}  // namespace pagoda::kernels::cuda

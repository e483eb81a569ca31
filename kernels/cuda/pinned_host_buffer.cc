#include "kernels/cuda/pinned_host_buffer.h"

#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda {

absl::StatusOr<PinnedHostBuffer> PinnedHostBuffer::Create(size_t size_bytes) {
  void* data = nullptr;
  if (size_bytes > 0) {
    absl::Status s = CudaStatus(cudaMallocHost(&data, size_bytes), "cudaMallocHost");
    if (!s.ok()) return s;
  }
  return PinnedHostBuffer(data, size_bytes);
}

void PinnedHostBuffer::Reset() {
  if (data_ != nullptr) cudaFreeHost(data_);
  data_ = nullptr;
  size_bytes_ = 0;
}

}  // namespace pagoda::kernels::cuda

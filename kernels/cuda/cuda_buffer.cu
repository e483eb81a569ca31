#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda {
namespace {

__global__ void FillKernel(uint8_t* data, size_t n, uint8_t value) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    data[i] = value;
  }
}

}  // namespace

int VisibleDeviceCount() {
  int count = 0;
  // Without a driver this returns cudaErrorInsufficientDriver or cudaErrorNoDevice: zero devices.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error for later calls
    return 0;
  }
  return count;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Create(size_t size_bytes) {
  void* data = nullptr;
  if (size_bytes > 0) {
    absl::Status s = CudaStatus(cudaMalloc(&data, size_bytes), "cudaMalloc");
    if (!s.ok()) return s;
  }
  return DeviceBuffer(data, size_bytes);
}




void DeviceBuffer::Reset() {
  if (data_ != nullptr) cudaFree(data_);
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t size_bytes) {
  if (size_bytes > size_bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  return CudaStatus(cudaMemcpy(data_, src, size_bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t size_bytes) const {
  if (size_bytes > size_bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  return CudaStatus(cudaMemcpy(dst, data_, size_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

absl::Status DeviceBuffer::Fill(uint8_t value) {
  if (size_bytes_ == 0) return absl::OkStatus();
  constexpr int kThreads = 256;
  const int blocks =
      static_cast<int>(std::min<size_t>((size_bytes_ + kThreads - 1) / kThreads, 1024));
  FillKernel<<<blocks, kThreads>>>(static_cast<uint8_t*>(data_), size_bytes_, value);
  absl::Status s = CudaStatus(cudaGetLastError(), "FillKernel launch");
  if (!s.ok()) return s;
  return CudaStatus(cudaDeviceSynchronize(), "FillKernel");
}

}  // namespace pagoda::kernels::cuda

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "common/status_macros.h"
#include "kernels/cuda/testing/benchmark_kernels.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"

namespace pagoda::kernels::cuda::testing {
namespace {

__device__ uint32_t Hash(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

__global__ void FillUniformBf16Kernel(__nv_bfloat16* data, size_t count, uint32_t seed,
                                      float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float u = Hash(i * 0x9e3779b97f4a7c15ull + seed) * (1.0f / 4294967296.0f);
    data[i] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
  }
}

constexpr int kReadThreads = 512;
constexpr int kReadUnroll = 4;

// Each thread keeps kReadUnroll independent 16-byte loads in flight; the XOR of everything read
// is stored only if it equals an unlikely value, so the loads cannot be optimized away.
__global__ void __launch_bounds__(kReadThreads)
    ReadKernel(const uint4* data, size_t num_vecs, uint32_t* sink) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (kReadUnroll - 1) * stride < num_vecs; i += kReadUnroll * stride) {
    uint4 v[kReadUnroll];
#pragma unroll
    for (int u = 0; u < kReadUnroll; ++u) v[u] = data[i + u * stride];
#pragma unroll
    for (int u = 0; u < kReadUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < num_vecs; i += stride) acc ^= data[i].x ^ data[i].y ^ data[i].z ^ data[i].w;
  if (acc == 0x9e3779b9u) *sink = acc;
}

}  // namespace

absl::Status FillUniformBf16(void* data, size_t count, uint32_t seed, float scale,
                             cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  FillUniformBf16Kernel<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count, seed,
                                                  scale);
  return LaunchStatus("FillUniformBf16Kernel");
}

absl::Status FlushL2(DeviceBuffer& scratch, cudaStream_t stream) {
  return CudaStatus(cudaMemsetAsync(scratch.data(), 0, scratch.size_bytes(), stream),
                    "cudaMemsetAsync");
}

absl::StatusOr<double> MeasureReadBandwidth(const DeviceBuffer& buffer, int repetitions,
                                            cudaStream_t stream) {
  PAGODA_ASSIGN_OR_RETURN(const DeviceProperties device, CurrentDeviceProperties());
  PAGODA_ASSIGN_OR_RETURN(DeviceBuffer sink, DeviceBuffer::Create(sizeof(uint32_t)));
  PAGODA_ASSIGN_OR_RETURN(CudaEvent start, CudaEvent::Create());
  PAGODA_ASSIGN_OR_RETURN(CudaEvent stop, CudaEvent::Create());
  int blocks_per_sm = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, ReadKernel, kReadThreads, 0),
      "occupancy"));
  const int grid = std::max(1, blocks_per_sm) * device.multiprocessor_count;
  const size_t num_vecs = buffer.size_bytes() / sizeof(uint4);
  double best_seconds = 0.0;
  for (int r = 0; r < repetitions + 1; ++r) {  // the first run warms up
    PAGODA_RETURN_IF_ERROR(start.Record(stream));
    ReadKernel<<<grid, kReadThreads, 0, stream>>>(static_cast<const uint4*>(buffer.data()),
                                                  num_vecs, static_cast<uint32_t*>(sink.data()));
    PAGODA_RETURN_IF_ERROR(LaunchStatus("ReadKernel"));
    PAGODA_RETURN_IF_ERROR(stop.Record(stream));
    PAGODA_RETURN_IF_ERROR(stop.Synchronize());
    PAGODA_ASSIGN_OR_RETURN(const float ms, CudaEvent::ElapsedMs(start, stop));
    if (r > 0 && (best_seconds == 0.0 || ms * 1e-3 < best_seconds)) best_seconds = ms * 1e-3;
  }
  return static_cast<double>(num_vecs * sizeof(uint4)) / best_seconds / 1e9;
}

}  // namespace pagoda::kernels::cuda::testing

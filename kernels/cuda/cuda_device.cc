#include "kernels/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda {
namespace {

absl::StatusOr<DeviceProperties> Query(int device) {
  DeviceProperties p;
  p.device = device;
  int major = 0, minor = 0, sms = 0, l2 = 0, smem = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "attribute"));
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "attribute"));
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "attribute"));
  PAGODA_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device), "attribute"));
  PAGODA_RETURN_IF_ERROR(CudaStatus(
      cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "attribute"));
  size_t free_bytes = 0, total_bytes = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  p.compute_capability = major * 10 + minor;
  p.multiprocessor_count = sms;
  p.l2_cache_bytes = l2;
  p.max_shared_memory_per_block_bytes = smem;
  p.total_memory_bytes = static_cast<int64_t>(total_bytes);
  return p;
}

}  // namespace

absl::StatusOr<DeviceMemoryInfo> CurrentDeviceMemoryInfo() {
  size_t free_bytes = 0, total_bytes = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  return DeviceMemoryInfo{.free_bytes = static_cast<int64_t>(free_bytes),
                          .total_bytes = static_cast<int64_t>(total_bytes)};
}

absl::Status SetCurrentDevice(int device) {
  int count = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " visible)"));
  }
  return CudaStatus(cudaSetDevice(device), "cudaSetDevice");
}

absl::StatusOr<DeviceProperties> CurrentDeviceProperties() {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new std::map<int, DeviceProperties>();  // never destroyed
  int device = 0;
  PAGODA_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  {
    absl::MutexLock lock(&mu);
    if (auto it = cache->find(device); it != cache->end()) return it->second;
  }
  // Queried outside the lock: two first callers may both query, and they get the same answer.
  PAGODA_ASSIGN_OR_RETURN(DeviceProperties p, Query(device));
  absl::MutexLock lock(&mu);
  cache->emplace(device, p);
  return p;
}

}  // namespace pagoda::kernels::cuda

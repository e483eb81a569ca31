#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace pagoda::kernels::cuda {

// What the kernels' launch planning needs to know about a device.
struct DeviceProperties {
  int device = 0;
  int compute_capability = 0;  // major * 10 + minor, e.g. 90 for H100
  int multiprocessor_count = 0;
  int64_t l2_cache_bytes = 0;
  int64_t max_shared_memory_per_block_bytes = 0;  // with the opt-in (cudaFuncSetAttribute)
  int64_t total_memory_bytes = 0;
};

// Free and total memory of the current device (cudaMemGetInfo), in bytes. Other processes'
// allocations count as used.
struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};
absl::StatusOr<DeviceMemoryInfo> CurrentDeviceMemoryInfo();

// Makes `device` current for the calling thread (cudaSetDevice). INVALID_ARGUMENT names the
// device when it does not exist; UNAVAILABLE without a driver or device.
absl::Status SetCurrentDevice(int device);

// Properties of the current device (cudaGetDevice). UNAVAILABLE without a device. Cached per
// device after the first call; thread-safe.
absl::StatusOr<DeviceProperties> CurrentDeviceProperties();

}  // namespace pagoda::kernels::cuda

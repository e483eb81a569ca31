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

// Properties of the current device (cudaGetDevice). UNAVAILABLE without a device. Cached per
// device after the first call; thread-safe.
absl::StatusOr<DeviceProperties> CurrentDeviceProperties();

}  // namespace pagoda::kernels::cuda

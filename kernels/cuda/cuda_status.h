#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace pagoda::kernels::cuda {

// Maps a CUDA runtime result to a Status: OK for cudaSuccess, RESOURCE_EXHAUSTED when device
// memory ran out, UNAVAILABLE when there is no usable device or driver, INVALID_ARGUMENT for a
// launch configuration the device refuses, INTERNAL otherwise. `what` names the failed call.
absl::Status CudaStatus(cudaError_t error, const char* what);

// The status of the last kernel launch on this thread (cudaGetLastError, which also clears a
// non-sticky error). Call right after a <<<...>>> launch.
absl::Status LaunchStatus(const char* kernel_name);

}  // namespace pagoda::kernels::cuda

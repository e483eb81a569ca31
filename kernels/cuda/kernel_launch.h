#pragma once

// How the launch wrappers (the .cu files) start kernels: with <<<...>>> on the GPU, or on the CPU
// emulator (kernel_emulation.h) when an emulation build compiles a .cu file as host code. Either
// way the same wrapper code runs (parameter checks, dispatch, grid sizes), so an emulated model
// runner exercises the wrappers the GPU runs. Internal to kernels/cuda.

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace pagoda::kernels::cuda::internal {

// Enqueues kernel<<<grid, block, shared_bytes, stream>>>(args...) and returns the launch's
// status, naming `name` when it fails (INVALID_ARGUMENT for a configuration the device refuses,
// such as an empty grid or too much shared memory; the emulator checks the same limits).
template <typename... Params, typename... Args>
absl::Status LaunchKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                          size_t shared_bytes, cudaStream_t stream, const Args&... args) {
#ifdef PAGODA_KERNEL_EMULATION_INCLUDED
  const std::string error =
      emulation::CheckLaunch(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes);
  if (!error.empty()) {
    return absl::InvalidArgumentError(std::string(name) +
                                      ": invalid configuration argument: " + error);
  }
  emulation::Enqueue(stream,
                     [=] { emulation::Launch(grid, block, shared_bytes, kernel, args...); });
  return absl::OkStatus();
#else
  // A .h is formatted as C++, which would split the launch chevrons.
  // clang-format off
  kernel<<<grid, block, shared_bytes, stream>>>(args...);
  // clang-format on
  return LaunchStatus(name);
#endif
}

// Lets `kernel` use `bytes` of dynamic shared memory (the opt-in above 48 KiB).
template <typename... Params>
absl::Status AllowDynamicSharedMemory(void (*kernel)(Params...), int bytes, const char* name) {
#ifdef PAGODA_KERNEL_EMULATION_INCLUDED
  const std::string error =
      emulation::AllowDynamicShared(reinterpret_cast<const void*>(kernel), bytes);
  if (!error.empty()) return absl::InvalidArgumentError(std::string(name) + ": " + error);
  return absl::OkStatus();
#else
  return CudaStatus(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), name);
#endif
}

// How many blocks of `kernel` one multiprocessor holds at once (the emulator says 2).
template <typename... Params>
absl::StatusOr<int> ResidentBlocksPerMultiprocessor(void (*kernel)(Params...), int threads,
                                                    size_t shared_bytes) {
#ifdef PAGODA_KERNEL_EMULATION_INCLUDED
  (void)kernel;
  (void)threads;
  (void)shared_bytes;
  return 2;
#else
  int blocks = 0;
  absl::Status status = CudaStatus(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, shared_bytes),
      "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  if (!status.ok()) return status;
  return blocks;
#endif
}

}  // namespace pagoda::kernels::cuda::internal

#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pagoda::kernels::cuda {

// Number of CUDA devices usable by this process. A machine without a driver or a GPU answers 0,
// never an error, so callers (and GPU tests) can fall back or skip.
int VisibleDeviceCount();

// Owns one allocation of device memory (cudaMalloc/cudaFree). Move-only. Not thread-safe; the
// device that was current at Create() must be current when it is destroyed.
class DeviceBuffer {
 public:
  // Allocates `size_bytes` on the current device. Fails with RESOURCE_EXHAUSTED when the device
  // is out of memory and UNAVAILABLE when there is no usable device.
  static absl::StatusOr<DeviceBuffer> Create(size_t size_bytes);

  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_bytes_(std::exchange(other.size_bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      size_bytes_ = std::exchange(other.size_bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }

  void* data() const { return data_; }
  size_t size_bytes() const { return size_bytes_; }

  // Synchronous copies; `size_bytes` must not exceed size_bytes().
  absl::Status CopyFromHost(const void* src, size_t size_bytes);
  absl::Status CopyToHost(void* dst, size_t size_bytes) const;
  // Sets every byte to `value` with a device kernel (not cudaMemset), so the toolchain's
  // device code path is exercised.
  absl::Status Fill(uint8_t value);

 private:
  DeviceBuffer(void* data, size_t size_bytes) : data_(data), size_bytes_(size_bytes) {}
  void Reset();

  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

}  // namespace pagoda::kernels::cuda

#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/cuda/cuda_buffer.h"

namespace pagoda::kernels::cuda::testing {

// A typed DeviceBuffer: `size` elements of T in device memory (256-byte aligned, as cudaMalloc
// returns). Move-only; same thread and device rules as DeviceBuffer. Copies are synchronous.
template <typename T>
class DeviceArray {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  static absl::StatusOr<DeviceArray> Create(size_t size) {
    absl::StatusOr<DeviceBuffer> buffer = DeviceBuffer::Create(size * sizeof(T));
    if (!buffer.ok()) return buffer.status();
    return DeviceArray(std::move(*buffer), size);
  }
  static absl::StatusOr<DeviceArray> FromHost(absl::Span<const T> host) {
    absl::StatusOr<DeviceArray> array = Create(host.size());
    if (!array.ok()) return array.status();
    absl::Status status = array->CopyFromHost(host);
    if (!status.ok()) return status;
    return array;
  }

  DeviceArray() = default;

  T* data() const { return static_cast<T*>(buffer_.data()); }
  size_t size() const { return size_; }

  absl::Status CopyFromHost(absl::Span<const T> host) {
    return buffer_.CopyFromHost(host.data(), host.size() * sizeof(T));
  }
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(size_);
    absl::Status status = buffer_.CopyToHost(host.data(), host.size() * sizeof(T));
    if (!status.ok()) return status;
    return host;
  }

 private:
  DeviceArray(DeviceBuffer buffer, size_t size) : buffer_(std::move(buffer)), size_(size) {}

  DeviceBuffer buffer_;
  size_t size_ = 0;
};

}  // namespace pagoda::kernels::cuda::testing

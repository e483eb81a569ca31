#pragma once

#include <cstddef>
#include <utility>

#include "absl/status/statusor.h"

namespace pagoda::kernels::cuda {

// Owns page-locked host memory (cudaMallocHost/cudaFreeHost): the staging area of asynchronous
// host<->device copies, which from pageable memory would be synchronous. Move-only. Not
// thread-safe.
class PinnedHostBuffer {
 public:
  // RESOURCE_EXHAUSTED when the memory cannot be pinned, UNAVAILABLE without a device.
  static absl::StatusOr<PinnedHostBuffer> Create(size_t size_bytes);

  PinnedHostBuffer() = default;
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_bytes_(std::exchange(other.size_bytes_, 0)) {}
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      size_bytes_ = std::exchange(other.size_bytes_, 0);
    }
    return *this;
  }
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  ~PinnedHostBuffer() { Reset(); }

  void* data() const { return data_; }
  size_t size_bytes() const { return size_bytes_; }

 private:
  PinnedHostBuffer(void* data, size_t size_bytes) : data_(data), size_bytes_(size_bytes) {}
  void Reset();

  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

}  // namespace pagoda::kernels::cuda

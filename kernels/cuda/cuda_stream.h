#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pagoda::kernels::cuda {

// Owns a CUDA stream (cudaStreamCreateWithFlags, non-blocking: it does not synchronize with the
// legacy default stream). Move-only. The device that was current at Create() must be current
// when it is destroyed; destruction does not wait for queued work (the driver finishes it).
class CudaStream {
 public:
  static absl::StatusOr<CudaStream> Create();

  CudaStream() = default;
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept {
    if (this != &other) {
      Reset();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() { Reset(); }

  cudaStream_t get() const { return stream_; }
  // Blocks the calling thread until all work queued so far has finished; returns the first
  // asynchronous error of that work.
  absl::Status Synchronize() const;

 private:
  explicit CudaStream(cudaStream_t stream) : stream_(stream) {}
  void Reset();

  cudaStream_t stream_ = nullptr;
};

// Enqueues a copy of `size_bytes` from `src` to `dst` on `stream` (cudaMemcpyAsync; either may
// be device or pinned host memory: the direction follows from the addresses). Asynchronous with
// respect to the host when the host side is pinned.
absl::Status CopyAsync(void* dst, const void* src, size_t size_bytes, cudaStream_t stream);

// Enqueues a copy of `rows` rows of `row_bytes` each, `src_pitch` bytes apart at `src`, to rows
// `dst_pitch` bytes apart at `dst` (cudaMemcpy2DAsync; same memory rules as CopyAsync). Both
// pitches must be at least row_bytes. Copies nothing when rows or row_bytes is 0.
absl::Status CopyRowsAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                           size_t row_bytes, size_t rows, cudaStream_t stream);

// Owns a CUDA event with timing enabled. Move-only; same device rule as CudaStream.
class CudaEvent {
 public:
  static absl::StatusOr<CudaEvent> Create();

  CudaEvent() = default;
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& other) noexcept {
    if (this != &other) {
      Reset();
      event_ = std::exchange(other.event_, nullptr);
    }
    return *this;
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  ~CudaEvent() { Reset(); }

  cudaEvent_t get() const { return event_; }
  absl::Status Record(cudaStream_t stream);
  absl::Status Synchronize() const;
  // Milliseconds between two recorded, completed events (`start` recorded first).
  static absl::StatusOr<float> ElapsedMs(const CudaEvent& start, const CudaEvent& end);

 private:
  explicit CudaEvent(cudaEvent_t event) : event_(event) {}
  void Reset();

  cudaEvent_t event_ = nullptr;
};

}  // namespace pagoda::kernels::cuda

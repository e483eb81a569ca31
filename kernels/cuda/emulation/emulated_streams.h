#pragma once

// The emulator's streams, graph capture and launch limits (internal to kernels/cuda; used through
// kernel_emulation.h by the emulated launch wrappers and emulated_runtime.cc). Tests only.
//
// A stream's work runs as late as a GPU may run it: when the host waits for that stream (its
// Synchronize), or for the whole device (a free). Host code that rewrites memory its enqueued
// work still reads, or reads results before waiting, therefore sees the wrong data here, as it
// may on a GPU, instead of the right data by luck. Work on the legacy default stream (null) runs
// at once: the runner's stream is non-blocking, so nothing orders the two.
//
// A capture (the emulated CudaGraph::Capture) records the work of one stream. As under
// cudaStreamCaptureModeThreadLocal, the capturing thread may not make the calls that could
// synchronize (cudaMalloc, cudaFree, synchronous copies, synchronizing the captured stream):
// CapturingOnThisThread() lets the emulated runtime refuse them as the driver does.
//
// A launch is checked against the limits of the emulated device (an H100): at most 1024 threads
// a block and 64 in z, a grid of at most 2^31-1 x 65535 x 65535 blocks, none of them zero, and
// dynamic shared memory above 48 KiB only after the kernel's opt-in (cudaFuncSetAttribute) for
// at least that much, which may not exceed 227 KiB.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pagoda::kernels::cuda::emulation {

inline constexpr size_t kDefaultDynamicSharedBytes = 48 << 10;
inline constexpr size_t kMaxDynamicSharedOptInBytes = 227 << 10;
// DynamicShared() (mma_primitives.cuh) declares the dynamic shared memory as uint4[], so nvcc may
// read a whole 16-byte element where the code reads its first floats: a launch must give whole
// elements. (On an H200, compute-sanitizer caught MergePartitionsKernel reading 12 bytes past a
// 24-byte allocation; the hardware rounds allocations up, so only the sanitizer saw it.)
inline constexpr size_t kDynamicSharedGranuleBytes = 16;

using WorkList = std::vector<std::function<void()>>;

struct StreamState {
  std::mutex mu;
  std::map<cudaStream_t, std::deque<std::function<void()>>> pending;
  // The capture under way, if any: the stream, where its work goes, and the capturing thread.
  cudaStream_t capture_stream = nullptr;
  WorkList* capture = nullptr;
  std::thread::id capture_thread;
  // Per kernel: the dynamic shared memory it opted into.
  std::map<const void*, size_t> shared_opt_in;
};

inline StreamState& Streams() {
  static StreamState state;
  return state;
}

// Enqueues `work` on `stream` (or on the capture recording it).
inline void Enqueue(cudaStream_t stream, std::function<void()> work) {
  StreamState& s = Streams();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.capture != nullptr && stream == s.capture_stream) {
      s.capture->push_back(std::move(work));
      return;
    }
    if (stream != nullptr) {
      s.pending[stream].push_back(std::move(work));
      return;
    }
  }
  work();  // the legacy default stream
}

// Runs the work pending on `stream`, in order.
inline void Drain(cudaStream_t stream) {
  StreamState& s = Streams();
  for (;;) {
    std::function<void()> work;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      auto it = s.pending.find(stream);
      if (it == s.pending.end() || it->second.empty()) return;
      work = std::move(it->second.front());
      it->second.pop_front();
    }
    work();
  }
}

// Runs the work pending on every stream (what cudaDeviceSynchronize and cudaFree wait for).
inline void DrainAll() {
  std::vector<cudaStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(Streams().mu);
    for (const auto& [stream, work] : Streams().pending) streams.push_back(stream);
  }
  for (cudaStream_t stream : streams) Drain(stream);
}

inline bool CapturingOnThisThread() {
  StreamState& s = Streams();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.capture != nullptr && s.capture_thread == std::this_thread::get_id();
}

inline bool IsCapturing(cudaStream_t stream) {
  StreamState& s = Streams();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.capture != nullptr && s.capture_stream == stream;
}

// Starts recording `stream`'s work into `list`; false if a capture is already under way.
inline bool BeginCapture(cudaStream_t stream, WorkList* list) {
  StreamState& s = Streams();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.capture != nullptr) return false;
  s.capture_stream = stream;
  s.capture = list;
  s.capture_thread = std::this_thread::get_id();
  return true;
}

inline void EndCapture() {
  StreamState& s = Streams();
  std::lock_guard<std::mutex> lock(s.mu);
  s.capture_stream = nullptr;
  s.capture = nullptr;
}

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes). Returns an
// error message, or an empty string.
inline std::string AllowDynamicShared(const void* kernel, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kMaxDynamicSharedOptInBytes) {
    return "emulated cudaFuncSetAttribute: " + std::to_string(bytes) +
           " bytes of dynamic shared memory exceeds the device's " +
           std::to_string(kMaxDynamicSharedOptInBytes);
  }
  StreamState& s = Streams();
  std::lock_guard<std::mutex> lock(s.mu);
  s.shared_opt_in[kernel] = static_cast<size_t>(bytes);
  return "";
}

// What a launch of `kernel` with this configuration fails with on the emulated device (the
// driver's cudaErrorInvalidConfiguration), or an empty string.
inline std::string CheckLaunch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64) {
    return "block of " + std::to_string(block.x) + "x" + std::to_string(block.y) + "x" +
           std::to_string(block.z) + " threads (at most 1024, and 64 in z)";
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535) {
    return "grid of " + std::to_string(grid.x) + "x" + std::to_string(grid.y) + "x" +
           std::to_string(grid.z) + " blocks (none zero, y and z at most 65535)";
  }
  if (shared_bytes % kDynamicSharedGranuleBytes != 0) {
    return std::to_string(shared_bytes) + " bytes of dynamic shared memory, not a multiple of " +
           std::to_string(kDynamicSharedGranuleBytes) + " (DynamicShared() is uint4[])";
  }
  size_t allowed = kDefaultDynamicSharedBytes;
  {
    StreamState& s = Streams();
    std::lock_guard<std::mutex> lock(s.mu);
    const auto it = s.shared_opt_in.find(kernel);
    if (it != s.shared_opt_in.end()) allowed = std::max(allowed, it->second);
  }
  if (shared_bytes > allowed) {
    return std::to_string(shared_bytes) + " bytes of dynamic shared memory, but the kernel " +
           "allows " + std::to_string(allowed) + " (cudaFuncSetAttribute first)";
  }
  return "";
}

}  // namespace pagoda::kernels::cuda::emulation

// The CUDA runtime pieces of kernels/cuda on the host, for the emulated kernels library
// (pagoda_kernels_cuda_emulated): device memory is host memory, a stream's work runs when the host
// waits for it (emulated_streams.h; or is recorded while a CudaGraph captures), the GEMM is a
// plain loop with fp32 sums, and the device is a made-up Hopper with 4 GiB. Lets code above the
// kernels (the CUDA model runner) run its real host logic in CI without a GPU. Tests only.
//
// The calls that synchronize behave as the CUDA runtime's: a synchronous copy or fill runs at
// once (on the legacy default stream, which a non-blocking stream does not wait for), a free
// first waits for every stream, and each of them fails while the calling thread captures a graph.

#define PAGODA_CUDA_EMULATION
// clang-format off
#include "kernels/cuda/emulation/kernel_emulation.h"  // first: it defines what the CUDA headers keep
// clang-format on

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/pinned_host_buffer.h"

namespace pagoda::kernels::cuda {
namespace {

constexpr int64_t kEmulatedDeviceBytes = int64_t{4} << 30;
std::atomic<int64_t> allocated_bytes{0};

void* AllocateAligned(size_t size_bytes) {
  // cudaMalloc's alignment; the size rounded up as aligned_alloc requires.
  return std::aligned_alloc(256, (size_bytes + 255) / 256 * 256);
}

using emulation::WorkList;

// What the driver answers a call that could synchronize while this thread captures a graph
// (cudaErrorStreamCaptureUnsupported under cudaStreamCaptureModeThreadLocal).
absl::Status RefuseDuringCapture(const char* call) {
  if (!emulation::CapturingOnThisThread()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(call, ": operation not permitted when stream is capturing (emulated)"));
}

}  // namespace

int VisibleDeviceCount() { return 1; }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Create(size_t size_bytes) {
  if (size_bytes == 0) return DeviceBuffer();
  if (absl::Status s = RefuseDuringCapture("cudaMalloc"); !s.ok()) return s;
  if (allocated_bytes.load() + static_cast<int64_t>(size_bytes) > kEmulatedDeviceBytes) {
    return absl::ResourceExhaustedError("emulated device: out of memory");
  }
  void* data = AllocateAligned(size_bytes);
  if (data == nullptr) return absl::ResourceExhaustedError("emulated device: no host memory");
  std::memset(data, 0xff, size_bytes);  // like fresh device memory: nobody should read it
  allocated_bytes += static_cast<int64_t>(size_bytes);
  return DeviceBuffer(data, size_bytes);
}

void DeviceBuffer::Reset() {
  if (data_ != nullptr) {
    if (emulation::CapturingOnThisThread()) {
      std::fprintf(stderr, "emulation: cudaFree while this thread captures a graph\n");
      std::abort();
    }
    emulation::DrainAll();  // cudaFree waits for the device
    std::free(data_);
    allocated_bytes -= static_cast<int64_t>(size_bytes_);
  }
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t size_bytes) {
  if (size_bytes > size_bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  if (absl::Status s = RefuseDuringCapture("cudaMemcpy H2D"); !s.ok()) return s;
  std::memcpy(data_, src, size_bytes);
  return absl::OkStatus();
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t size_bytes) const {
  if (size_bytes > size_bytes_) return absl::OutOfRangeError("copy larger than the buffer");
  if (absl::Status s = RefuseDuringCapture("cudaMemcpy D2H"); !s.ok()) return s;
  std::memcpy(dst, data_, size_bytes);
  return absl::OkStatus();
}

absl::Status DeviceBuffer::Fill(uint8_t value) {
  if (absl::Status s = RefuseDuringCapture("FillKernel"); !s.ok()) return s;
  emulation::DrainAll();  // the real Fill ends with cudaDeviceSynchronize
  std::memset(data_, value, size_bytes_);
  return absl::OkStatus();
}

absl::StatusOr<PinnedHostBuffer> PinnedHostBuffer::Create(size_t size_bytes) {
  if (size_bytes == 0) return PinnedHostBuffer();
  return PinnedHostBuffer(AllocateAligned(size_bytes), size_bytes);
}

void PinnedHostBuffer::Reset() {
  std::free(data_);
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::StatusOr<CudaStream> CudaStream::Create() {
  // A distinct non-null handle per stream: the address of a byte nobody reads.
  return CudaStream(reinterpret_cast<cudaStream_t>(new char));
}

void CudaStream::Reset() {
  if (stream_ != nullptr) {
    emulation::Drain(stream_);  // cudaStreamDestroy lets enqueued work finish
    delete reinterpret_cast<char*>(stream_);
  }
  stream_ = nullptr;
}

absl::Status CudaStream::Synchronize() const {
  if (emulation::IsCapturing(stream_)) {
    return absl::InternalError(
        "cudaStreamSynchronize: operation not permitted when stream is capturing (emulated)");
  }
  emulation::Drain(stream_);
  return absl::OkStatus();
}

absl::Status CopyAsync(void* dst, const void* src, size_t size_bytes, cudaStream_t stream) {
  emulation::Enqueue(stream, [=] { std::memcpy(dst, src, size_bytes); });
  return absl::OkStatus();
}

absl::Status CopyRowsAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                           size_t row_bytes, size_t rows, cudaStream_t stream) {
  if (rows == 0 || row_bytes == 0) return absl::OkStatus();
  if (dst_pitch < row_bytes || src_pitch < row_bytes) {
    return absl::InvalidArgumentError("cudaMemcpy2DAsync: invalid pitch argument (emulated)");
  }
  emulation::Enqueue(stream, [=] {
    for (size_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch,
                  static_cast<const char*>(src) + r * src_pitch, row_bytes);
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream,
                                             absl::FunctionRef<absl::Status()> enqueue) {
  auto* work = new WorkList;
  if (!emulation::BeginCapture(stream, work)) {
    delete work;
    return absl::InternalError("cudaStreamBeginCapture: a capture is already under way (emulated)");
  }
  const absl::Status status = enqueue();
  emulation::EndCapture();
  if (!status.ok()) {
    delete work;
    return status;
  }
  return CudaGraph(reinterpret_cast<cudaGraphExec_t>(work));
}

void CudaGraph::Reset() {
  delete reinterpret_cast<WorkList*>(exec_);
  exec_ = nullptr;
}

absl::Status CudaGraph::Launch(cudaStream_t stream) const {
  for (const std::function<void()>& work : *reinterpret_cast<WorkList*>(exec_)) {
    emulation::Enqueue(stream, work);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceMemoryInfo> CurrentDeviceMemoryInfo() {
  return DeviceMemoryInfo{.free_bytes = kEmulatedDeviceBytes - allocated_bytes.load(),
                          .total_bytes = kEmulatedDeviceBytes};
}

absl::Status SetCurrentDevice(int device) {
  if (device != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (1 visible)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceProperties> CurrentDeviceProperties() {
  return DeviceProperties{.device = 0,
                          .compute_capability = 90,
                          .multiprocessor_count = 132,
                          .l2_cache_bytes = int64_t{50} << 20,
                          .max_shared_memory_per_block_bytes = 227 << 10,
                          .total_memory_bytes = kEmulatedDeviceBytes};
}

struct Gemm::Plan {};

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create(const Options& options) {
  (void)options;
  return std::unique_ptr<Gemm>(new Gemm(nullptr, DeviceBuffer()));
}

Gemm::Gemm(cublasLtContext* handle, DeviceBuffer workspace)
    : handle_(handle), workspace_(std::move(workspace)) {}

Gemm::~Gemm() = default;

template <typename T>
absl::Status Gemm::Run(const GemmParams<T>& p, cudaStream_t stream) {
  if (absl::Status s = CheckGemmParams(p); !s.ok() || p.m == 0) return s;
  emulation::Enqueue(stream, [p] {
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j) {
        float sum = 0;
        for (int64_t l = 0; l < p.k; ++l) {
          sum += ToFloatHost(p.x[i * p.k + l]) * ToFloatHost(p.w[j * p.k + l]);
        }
        if (p.bias != nullptr) sum += ToFloatHost(p.bias[j]);
        if (p.output == GemmOutput::kAccumulate) sum += ToFloatHost(p.y[i * p.n + j]);
        p.y[i * p.n + j] = FromFloatHost<T>(sum);
      }
    }
  });
  return absl::OkStatus();
}

template absl::Status Gemm::Run<__nv_bfloat16>(const GemmParams<__nv_bfloat16>&, cudaStream_t);
template absl::Status Gemm::Run<__half>(const GemmParams<__half>&, cudaStream_t);

}  // namespace pagoda::kernels::cuda

// The CUDA runtime pieces of kernels/cuda on the host, for the emulated kernels library
// (pagoda_kernels_cuda_emulated): device memory is host memory, a stream runs its work at once
// (or records it while a CudaGraph captures), the GEMM is a plain loop with fp32 sums, and the
// device is a made-up Hopper with 4 GiB. Lets code above the kernels (the CUDA model runner)
// run its real host logic in CI without a GPU. Tests only.

#define PAGODA_CUDA_EMULATION
// clang-format off
#include "kernels/cuda/kernel_emulation.h"  // first: it defines what the CUDA headers keep
// clang-format on

#include <atomic>
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

using WorkList = std::vector<std::function<void()>>;

}  // namespace

int VisibleDeviceCount() { return 1; }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Create(size_t size_bytes) {
  if (size_bytes == 0) return DeviceBuffer();
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
    std::free(data_);
    allocated_bytes -= static_cast<int64_t>(size_bytes_);
  }
  data_ = nullptr;
  size_bytes_ = 0;
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t size_bytes) {
  if (size_bytes > size_bytes_) return absl::InvalidArgumentError("copy larger than the buffer");
  std::memcpy(data_, src, size_bytes);
  return absl::OkStatus();
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t size_bytes) const {
  if (size_bytes > size_bytes_) return absl::InvalidArgumentError("copy larger than the buffer");
  std::memcpy(dst, data_, size_bytes);
  return absl::OkStatus();
}

absl::Status DeviceBuffer::Fill(uint8_t value) {
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
  static int token = 0;  // any non-null handle: work runs at once, whatever the stream
  return CudaStream(reinterpret_cast<cudaStream_t>(&token));
}

void CudaStream::Reset() { stream_ = nullptr; }

absl::Status CudaStream::Synchronize() const { return absl::OkStatus(); }

absl::Status CopyAsync(void* dst, const void* src, size_t size_bytes, cudaStream_t stream) {
  (void)stream;
  emulation::Enqueue([=] { std::memcpy(dst, src, size_bytes); });
  return absl::OkStatus();
}

absl::StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream,
                                             absl::FunctionRef<absl::Status()> enqueue) {
  (void)stream;
  auto* work = new WorkList;
  emulation::CaptureList() = work;
  const absl::Status status = enqueue();
  emulation::CaptureList() = nullptr;
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
  (void)stream;
  for (const std::function<void()>& work : *reinterpret_cast<WorkList*>(exec_)) {
    emulation::Enqueue(work);
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
  (void)stream;
  if (p.m < 0 || p.n <= 0 || p.k <= 0 || p.n % 8 != 0 || p.k % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemm: need n, k multiples of 8; m=", p.m, " n=", p.n, " k=", p.k));
  }
  emulation::Enqueue([p] {
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

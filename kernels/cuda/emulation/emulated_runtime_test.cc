// The emulated CUDA runtime (emulated_runtime.cc, emulated_streams.h) behaves as the real one
// where the CUDA model runner could get it wrong: a stream's work runs only when the host waits
// for it, a capture refuses the calls that would synchronize, and a launch the device would refuse
// is refused. Without these the runner's emulation test would pass code that fails on a GPU.

#define PAGODA_CUDA_EMULATION 1
// clang-format off
#include "kernels/cuda/emulation/kernel_emulation.h"  // first: it defines the emulated CUDA built-ins
// clang-format on

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/kernel_launch.h"
#include "kernels/cuda/pinned_host_buffer.h"

namespace pagoda::kernels::cuda {
namespace {

__global__ void AddOneKernel(int32_t* data, int32_t n) {
  const int32_t i = static_cast<int32_t>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] += 1;
}

absl::Status AddOne(int32_t* data, int32_t n, cudaStream_t stream, size_t shared_bytes = 0) {
  const unsigned blocks = static_cast<unsigned>((n + 31) / 32);
  return internal::LaunchKernel("AddOneKernel", &AddOneKernel, blocks, 32, shared_bytes, stream,
                                data, n);
}

std::vector<int32_t> Read(const DeviceBuffer& buffer, int32_t n) {
  std::vector<int32_t> out(n);
  EXPECT_TRUE(buffer.CopyToHost(out.data(), n * sizeof(int32_t)).ok());
  return out;
}

TEST(EmulatedRuntimeTest, StreamWorkRunsWhenTheHostWaitsForIt) {
  auto stream = CudaStream::Create();
  ASSERT_TRUE(stream.ok());
  auto device = DeviceBuffer::Create(4 * sizeof(int32_t));
  auto staging = PinnedHostBuffer::Create(4 * sizeof(int32_t));
  ASSERT_TRUE(device.ok() && staging.ok());
  auto* host = static_cast<int32_t*>(staging->data());
  for (int i = 0; i < 4; ++i) host[i] = 10 * i;
  ASSERT_TRUE(CopyAsync(device->data(), host, 4 * sizeof(int32_t), stream->get()).ok());
  ASSERT_TRUE(AddOne(static_cast<int32_t*>(device->data()), 4, stream->get()).ok());
  // A host that rewrites the staging buffer before waiting races with the copy: here the copy
  // has not run yet, so it takes the new values, as a GPU running behind would.
  host[0] = 500;
  std::vector<int32_t> before = Read(*device, 4);
  EXPECT_NE(before[1], 11) << "the kernel ran before the host waited for the stream";
  ASSERT_TRUE(stream->Synchronize().ok());
  EXPECT_EQ(Read(*device, 4), (std::vector<int32_t>{501, 11, 21, 31}));
}

TEST(EmulatedRuntimeTest, CopyRowsAsyncKeepsEachPitch) {
  auto stream = CudaStream::Create();
  auto device = DeviceBuffer::Create(2 * 4 * sizeof(int32_t));
  ASSERT_TRUE(stream.ok() && device.ok());
  const std::vector<int32_t> src = {1, 2, 3, 4, 5, 6};  // 2 rows of 3
  ASSERT_TRUE(CopyRowsAsync(device->data(), 4 * sizeof(int32_t), src.data(), 3 * sizeof(int32_t),
                            3 * sizeof(int32_t), 2, stream->get())
                  .ok());
  EXPECT_FALSE(CopyRowsAsync(device->data(), 2 * sizeof(int32_t), src.data(), 3 * sizeof(int32_t),
                             3 * sizeof(int32_t), 2, stream->get())
                   .ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  EXPECT_EQ(Read(*device, 8), (std::vector<int32_t>{1, 2, 3, -1, 4, 5, 6, -1}));
}

TEST(EmulatedRuntimeTest, StreamsAreIndependentAndAFreeWaitsForAllOfThem) {
  auto a = CudaStream::Create();
  auto b = CudaStream::Create();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE(a->get(), b->get());
  auto buffer = DeviceBuffer::Create(2 * sizeof(int32_t));
  ASSERT_TRUE(buffer.ok());
  const std::vector<int32_t> zeros = {0, 0};
  ASSERT_TRUE(buffer->CopyFromHost(zeros.data(), 8).ok());
  auto* data = static_cast<int32_t*>(buffer->data());
  ASSERT_TRUE(AddOne(data, 1, a->get()).ok());
  ASSERT_TRUE(AddOne(data + 1, 1, b->get()).ok());
  ASSERT_TRUE(b->Synchronize().ok());
  EXPECT_EQ(Read(*buffer, 2), (std::vector<int32_t>{0, 1}));

  // Freeing any buffer waits for the device, as cudaFree does: stream a's work runs first.
  std::vector<int32_t> seen(1, -1);
  ASSERT_TRUE(CopyAsync(seen.data(), data, sizeof(int32_t), a->get()).ok());
  auto other = DeviceBuffer::Create(64);
  ASSERT_TRUE(other.ok());
  *other = DeviceBuffer();
  EXPECT_EQ(seen[0], 1);
}

TEST(EmulatedRuntimeTest, CaptureRecordsAndRefusesCallsThatSynchronize) {
  auto stream = CudaStream::Create();
  auto buffer = DeviceBuffer::Create(8 * sizeof(int32_t));
  ASSERT_TRUE(stream.ok() && buffer.ok());
  const std::vector<int32_t> zeros(8, 0);
  ASSERT_TRUE(buffer->CopyFromHost(zeros.data(), 32).ok());
  auto* data = static_cast<int32_t*>(buffer->data());

  std::vector<absl::Status> refused;
  auto graph = CudaGraph::Capture(stream->get(), [&]() -> absl::Status {
    refused.push_back(DeviceBuffer::Create(16).status());
    refused.push_back(buffer->CopyFromHost(zeros.data(), 4));
    refused.push_back(stream->Synchronize());
    return AddOne(data, 8, stream->get());
  });
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_EQ(refused.size(), 3u);
  for (const absl::Status& s : refused) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("capturing"), std::string::npos) << s;
  }
  ASSERT_TRUE(stream->Synchronize().ok());
  EXPECT_EQ(Read(*buffer, 8), zeros) << "captured work ran at capture";

  ASSERT_TRUE(graph->Launch(stream->get()).ok());
  ASSERT_TRUE(graph->Launch(stream->get()).ok());
  EXPECT_EQ(Read(*buffer, 8), zeros) << "a replay ran before the host waited";
  ASSERT_TRUE(stream->Synchronize().ok());
  EXPECT_EQ(Read(*buffer, 8), std::vector<int32_t>(8, 2));

  // After the capture, the same calls are allowed again.
  EXPECT_TRUE(DeviceBuffer::Create(16).ok());
  EXPECT_TRUE(stream->Synchronize().ok());
}

TEST(EmulatedRuntimeTest, RefusesLaunchesTheDeviceWouldRefuse) {
  auto stream = CudaStream::Create();
  auto buffer = DeviceBuffer::Create(4096);
  ASSERT_TRUE(stream.ok() && buffer.ok());
  auto* data = static_cast<int32_t*>(buffer->data());

  // An empty grid: a launch for zero items is cudaErrorInvalidConfiguration.
  const absl::Status empty = AddOne(data, 0, stream->get());
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument) << empty;
  EXPECT_NE(empty.message().find("AddOneKernel"), std::string::npos) << empty;

  const absl::Status big_block =
      internal::LaunchKernel("AddOneKernel", &AddOneKernel, 1, 1025, 0, stream->get(), data, 1);
  EXPECT_EQ(big_block.code(), absl::StatusCode::kInvalidArgument) << big_block;
  const absl::Status tall_grid = internal::LaunchKernel(
      "AddOneKernel", &AddOneKernel, dim3(1, 65536), 32, 0, stream->get(), data, 1);
  EXPECT_EQ(tall_grid.code(), absl::StatusCode::kInvalidArgument) << tall_grid;

  // Dynamic shared memory: 48 KiB without the opt-in, up to the opt-in after it, never past the
  // device's 227 KiB.
  EXPECT_TRUE(AddOne(data, 32, stream->get(), 48 << 10).ok());
  const absl::Status no_opt_in = AddOne(data, 32, stream->get(), 64 << 10);
  EXPECT_EQ(no_opt_in.code(), absl::StatusCode::kInvalidArgument) << no_opt_in;
  ASSERT_TRUE(internal::AllowDynamicSharedMemory(&AddOneKernel, 64 << 10, "opt-in").ok());
  EXPECT_TRUE(AddOne(data, 32, stream->get(), 64 << 10).ok());
  EXPECT_FALSE(AddOne(data, 32, stream->get(), (64 << 10) + 16).ok());
  EXPECT_FALSE(internal::AllowDynamicSharedMemory(&AddOneKernel, 228 << 10, "opt-in").ok());
  // Whole 16-byte elements only (DynamicShared() is uint4[]): 24 bytes is what the merge kernel
  // asked for when compute-sanitizer caught it reading past them on an H200.
  EXPECT_TRUE(AddOne(data, 32, stream->get(), 32).ok());
  const absl::Status ragged = AddOne(data, 32, stream->get(), 24);
  EXPECT_EQ(ragged.code(), absl::StatusCode::kInvalidArgument) << ragged;
  EXPECT_NE(ragged.message().find("multiple of 16"), std::string::npos) << ragged;
  ASSERT_TRUE(stream->Synchronize().ok());
}

TEST(EmulatedRuntimeTest, GemmKeepsTheContractOfTheRealOne) {
  auto gemm = Gemm::Create({});
  auto stream = CudaStream::Create();
  ASSERT_TRUE(gemm.ok() && stream.ok());
  // y[2, 8] += x[2, 8] W[8, 8]^T + bias, with W = 2 I and bias = 1: y = y + 2x + 1.
  std::vector<__nv_bfloat16> x(16), w(64), bias(8), y(16);
  for (int i = 0; i < 16; ++i) x[i] = __float2bfloat16(static_cast<float>(i));
  for (int i = 0; i < 64; ++i) w[i] = __float2bfloat16(i % 9 == 0 ? 2.0f : 0.0f);  // diagonal
  for (auto& b : bias) b = __float2bfloat16(1.0f);
  for (auto& v : y) v = __float2bfloat16(10.0f);
  GemmParams<__nv_bfloat16> p{.x = x.data(),
                              .w = w.data(),
                              .bias = bias.data(),
                              .y = y.data(),
                              .m = 2,
                              .n = 8,
                              .k = 8,
                              .output = GemmOutput::kAccumulate};
  ASSERT_TRUE((*gemm)->Run(p, stream->get()).ok());
  EXPECT_EQ(__bfloat162float(y[5]), 10.0f) << "ran before the host waited";
  ASSERT_TRUE(stream->Synchronize().ok());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(__bfloat162float(y[i]), 11.0f + 2.0f * i) << i;

  GemmParams<__nv_bfloat16> misaligned = p;
  misaligned.y = y.data() + 1;
  EXPECT_EQ((*gemm)->Run(misaligned, stream->get()).code(), absl::StatusCode::kInvalidArgument);
  GemmParams<__nv_bfloat16> odd = p;
  odd.n = 6;
  EXPECT_EQ((*gemm)->Run(odd, stream->get()).code(), absl::StatusCode::kInvalidArgument);
  GemmParams<__nv_bfloat16> empty = p;
  empty.m = 0;
  empty.x = nullptr;
  EXPECT_TRUE((*gemm)->Run(empty, stream->get()).ok());
}

}  // namespace
}  // namespace pagoda::kernels::cuda

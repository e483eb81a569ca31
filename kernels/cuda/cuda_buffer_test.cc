#include "kernels/cuda/cuda_buffer.h"

#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/pinned_host_buffer.h"

namespace pagoda::kernels::cuda {
namespace {

class DeviceBufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(DeviceBufferTest, RoundTripsHostData) {
  std::vector<uint8_t> host(1 << 20);
  std::iota(host.begin(), host.end(), uint8_t{0});
  auto buffer = DeviceBuffer::Create(host.size());
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(buffer->CopyFromHost(host.data(), host.size()).ok());
  std::vector<uint8_t> back(host.size());
  ASSERT_TRUE(buffer->CopyToHost(back.data(), back.size()).ok());
  EXPECT_EQ(back, host);
}

TEST_F(DeviceBufferTest, FillKernelWritesEveryByte) {
  auto buffer = DeviceBuffer::Create(3 * 1024 * 1024 + 7);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(buffer->Fill(0xAB).ok());
  std::vector<uint8_t> back(buffer->size_bytes());
  ASSERT_TRUE(buffer->CopyToHost(back.data(), back.size()).ok());
  for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], 0xAB) << "at byte " << i;
}

TEST_F(DeviceBufferTest, RejectsOversizedCopies) {
  auto buffer = DeviceBuffer::Create(16);
  ASSERT_TRUE(buffer.ok());
  std::vector<uint8_t> host(32);
  EXPECT_EQ(buffer->CopyFromHost(host.data(), host.size()).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(DeviceBufferTest, CopyRowsAsyncWritesRowsIntoAWiderPitch) {
  // 3 rows of 5 int32 from pinned memory into device rows of 8, the way the CUDA runner sends a
  // graph step's block tables: the 3 entries after each row keep what they held.
  constexpr int kRows = 3, kWidth = 5, kPitch = 8;
  auto stream = CudaStream::Create();
  auto pinned = PinnedHostBuffer::Create(kRows * kWidth * sizeof(int32_t));
  auto device = DeviceBuffer::Create(kRows * kPitch * sizeof(int32_t));
  ASSERT_TRUE(stream.ok() && pinned.ok() && device.ok());
  ASSERT_TRUE(device->Fill(0xAB).ok());
  auto* src = static_cast<int32_t*>(pinned->data());
  std::iota(src, src + kRows * kWidth, 100);
  ASSERT_TRUE(CopyRowsAsync(device->data(), kPitch * sizeof(int32_t), src, kWidth * sizeof(int32_t),
                            kWidth * sizeof(int32_t), kRows, stream->get())
                  .ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  std::vector<int32_t> back(kRows * kPitch);
  ASSERT_TRUE(device->CopyToHost(back.data(), back.size() * sizeof(int32_t)).ok());
  int32_t untouched = 0;
  std::memset(&untouched, 0xAB, sizeof(untouched));
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < kPitch; ++c) {
      EXPECT_EQ(back[r * kPitch + c], c < kWidth ? 100 + r * kWidth + c : untouched)
          << "row " << r << ", column " << c;
    }
  }
}

TEST(DeviceCountTest, NeverFailsWithoutAGpu) { EXPECT_GE(VisibleDeviceCount(), 0); }

}  // namespace
}  // namespace pagoda::kernels::cuda

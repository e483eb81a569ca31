#include "kernels/cuda/cuda_buffer.h"

#include <cstdint>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

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

TEST(DeviceCountTest, NeverFailsWithoutAGpu) { EXPECT_GE(VisibleDeviceCount(), 0); }

}  // namespace
}  // namespace pagoda::kernels::cuda

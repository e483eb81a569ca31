// Gemm (cuBLASLt) against cpu::MatMulReference on random inputs rounded to T: decode-sized and
// prefill-sized m, with and without bias, overwriting and accumulating. Skips without a CUDA
// device.
//
// Tolerance: |gpu - cpu| <= atol + rtol * |cpu| with (atol, rtol) = (1e-2, 1e-2) for bf16 and
// (2e-3, 2e-3) for fp16: outputs are O(1) (weights scaled by 1/sqrt(k)) and are rounded once
// to T after fp32 accumulation in an order that differs from the CPU's.

#include "kernels/cuda/gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/testing/device_array.h"
#include "kernels/cuda/half_types.h"

namespace pagoda::kernels::cuda {

using testing::DeviceArray;
namespace {

template <typename T>
struct Tolerance;
template <>
struct Tolerance<__nv_bfloat16> {
  static constexpr float kAbs = 1e-2f;
  static constexpr float kRel = 1e-2f;
};
template <>
struct Tolerance<__half> {
  static constexpr float kAbs = 2e-3f;
  static constexpr float kRel = 2e-3f;
};

template <typename T>
DeviceArray<T> Upload(const std::vector<float>& values) {
  std::vector<T> host(values.size());
  for (size_t i = 0; i < values.size(); ++i) host[i] = FromFloatHost<T>(values[i]);
  auto array = DeviceArray<T>::FromHost(host);
  EXPECT_TRUE(array.ok()) << array.status();
  return array.ok() ? std::move(*array) : DeviceArray<T>();
}

struct Shape {
  int64_t m, n, k;
};

template <typename T>
void CheckGemm(Gemm& gemm, const Shape& s, bool with_bias, GemmOutput output) {
  const uint32_t seed = static_cast<uint32_t>(s.m * 131 + s.n * 7 + s.k);
  const std::vector<float> x = RandomRounded<T>(s.m * s.k, seed, 1.0f);
  const std::vector<float> w =
      RandomRounded<T>(s.n * s.k, seed + 1, 1.0f / std::sqrt(static_cast<float>(s.k)));
  const std::vector<float> bias = RandomRounded<T>(s.n, seed + 2, 1.0f);
  const std::vector<float> y0 = RandomRounded<T>(s.m * s.n, seed + 3, 1.0f);
  std::vector<float> want(s.m * s.n);
  cpu::MatMulReference(cpu::MatMulArgs{.x = x.data(),
                                       .w = w.data(),
                                       .w_type = cpu::WeightType::kF32,
                                       .bias = with_bias ? bias.data() : nullptr,
                                       .y = want.data(),
                                       .m = s.m,
                                       .n = s.n,
                                       .k = s.k});
  if (output == GemmOutput::kAccumulate) {
    for (size_t i = 0; i < want.size(); ++i) want[i] += y0[i];
  }
  DeviceArray<T> d_x = Upload<T>(x);
  DeviceArray<T> d_w = Upload<T>(w);
  DeviceArray<T> d_bias = Upload<T>(bias);
  DeviceArray<T> d_y = Upload<T>(y0);
  const absl::Status status = gemm.Run(GemmParams<T>{.x = d_x.data(),
                                                     .w = d_w.data(),
                                                     .bias = with_bias ? d_bias.data() : nullptr,
                                                     .y = d_y.data(),
                                                     .m = s.m,
                                                     .n = s.n,
                                                     .k = s.k,
                                                     .output = output},
                                       nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto got = d_y.ToHost();
  ASSERT_TRUE(got.ok()) << got.status();
  const std::string what = absl::StrCat("m=", s.m, " n=", s.n, " k=", s.k, with_bias ? " bias" : "",
                                        output == GemmOutput::kAccumulate ? " accumulate" : "");
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const float g = ToFloatHost((*got)[i]);
    if (!(std::fabs(g - want[i]) <= Tolerance<T>::kAbs + Tolerance<T>::kRel * std::fabs(want[i]))) {
      if (++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " got " << g << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

class GemmGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    auto gemm = Gemm::Create(Gemm::Options{});
    ASSERT_TRUE(gemm.ok()) << gemm.status();
    gemm_ = std::move(*gemm);
  }

  std::unique_ptr<Gemm> gemm_;
};

TEST_F(GemmGpuTest, MatchesCpuForDecodeAndPrefillShapes) {
  for (const Shape& s : std::vector<Shape>{
           {1, 4096, 4096}, {7, 256, 128}, {64, 1024, 512}, {300, 64, 1024}, {1, 6144, 4096}}) {
    CheckGemm<__nv_bfloat16>(*gemm_, s, /*with_bias=*/false, GemmOutput::kOverwrite);
    CheckGemm<__half>(*gemm_, s, /*with_bias=*/false, GemmOutput::kOverwrite);
  }
}

TEST_F(GemmGpuTest, BiasAndAccumulate) {
  for (const Shape& s : std::vector<Shape>{{3, 512, 256}, {129, 128, 64}}) {
    for (const GemmOutput output : {GemmOutput::kOverwrite, GemmOutput::kAccumulate}) {
      CheckGemm<__nv_bfloat16>(*gemm_, s, /*with_bias=*/true, output);
      CheckGemm<__half>(*gemm_, s, /*with_bias=*/true, output);
      CheckGemm<__nv_bfloat16>(*gemm_, s, /*with_bias=*/false, output);
    }
  }
}

TEST_F(GemmGpuTest, ReusesAPlanAcrossCalls) {
  for (int i = 0; i < 3; ++i) {
    CheckGemm<__nv_bfloat16>(*gemm_, {16, 256, 256}, /*with_bias=*/i == 1, GemmOutput::kOverwrite);
  }
}

TEST_F(GemmGpuTest, RejectsShapesOutsideTheContract) {
  const GemmParams<__nv_bfloat16> params{.m = 4, .n = 12, .k = 64};
  EXPECT_EQ(gemm_->Run(params, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GemmCreateTest, IsUnavailableWithoutADevice) {
  if (VisibleDeviceCount() > 0) GTEST_SKIP() << "a device is present";
  EXPECT_EQ(Gemm::Create(Gemm::Options{}).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pagoda::kernels::cuda

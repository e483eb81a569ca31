#include "kernels/cpu/roofline.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/matmul_amx.h"
#include "kernels/cpu/matmul_avx2.h"

namespace pagoda::kernels::cpu {
namespace {

// The read loop really reads every element: its sum equals a plain double sum (tolerance: the
// float accumulation of ~1e6 values in [0, 1) over 4 x 16 lanes and 2 threads, relative 1e-5).
TEST(RooflineTest, ReadSumIsTheSum) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> data(1'000'003);
  for (float& x : data) x = u(rng);
  double reference = 0;
  for (const float x : data) reference += x;
  for (const int threads : {1, 2}) {
    ThreadPool pool(threads);
    EXPECT_NEAR(ReadSum(data.data(), static_cast<int64_t>(data.size()), pool), reference,
                reference * 1e-5)
        << threads << " threads";
    EXPECT_NEAR(
        ReadSum(data.data(), 37, pool),
        [&] {
          double s = 0;
          for (int i = 0; i < 37; ++i) s += data[i];
          return s;
        }(),
        1e-4);
  }
}

// Every chain adds 2 per round (1*1 + 1*1, exact in f32): the loop ran, all of it.
TEST(RooflineTest, PeakLoopDoesItsRounds) {
  if (!HasAvx512Bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  ThreadPool pool(2);
  EXPECT_EQ(Bf16PeakLoop(1000, pool), 2.0f * 1000 * kBf16PeakChains);
  EXPECT_EQ(Bf16PeakLoop(1, pool), 2.0f * kBf16PeakChains);
}

// Every tile product adds 32 (a row of 32 ones times a column of 32 ones) to each sum.
TEST(RooflineTest, AmxPeakLoopDoesItsRounds) {
  if (!amx::Available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the kernel refuses it)";
  EXPECT_EQ(amx::PeakLoop(1000), 32.0f * 1000);
  EXPECT_EQ(amx::PeakLoop(1), 32.0f);
}

// Every chain adds 1 * 0.5 per round: the FMA loop ran, all of it, on every thread.
TEST(RooflineTest, FmaPeakLoopDoesItsRounds) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  ThreadPool pool(2);
  EXPECT_EQ(FmaPeakLoop(1000, pool), 0.5f * 1000 * avx2::kFmaPeakChains);
  EXPECT_EQ(FmaPeakLoop(1, pool), 0.5f * avx2::kFmaPeakChains);
}

TEST(RooflineTest, MeasuresPositiveFigures) {
  ThreadPool pool(1);
  const Roofline r = MeasureRoofline(pool, int64_t{8} << 20, 1);
  EXPECT_GT(r.read_gb_per_s, 0.0);
  if (HasAvx512Bf16()) {
    EXPECT_GT(r.bf16_gflop_per_s, 0.0);
  }
  EXPECT_EQ(r.amx_gflop_per_s > 0.0, amx::Available());
  EXPECT_EQ(r.fma_gflop_per_s > 0.0, avx2::Supported());
}

}  // namespace
}  // namespace pagoda::kernels::cpu

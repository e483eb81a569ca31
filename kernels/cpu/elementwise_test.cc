#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace pagoda::kernels::cpu {
namespace {

// SiLU-and-mul against a double-precision reference, on random values including large
// magnitudes (where exp over- or underflows in float) and lengths that leave vector tails.
TEST(ElementwiseTest, SiluAndMulMatchesReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (const int n : {1, 15, 16, 17, 100, 2048}) {
    std::vector<float> gate(n), up(n), out(n);
    for (int i = 0; i < n; ++i) {
      gate[i] = normal(rng);
      up[i] = normal(rng);
    }
    gate[0] = -100.0f;  // exp(100) overflows a float
    if (n > 1) gate[1] = 100.0f;
    SiluAndMul(gate.data(), up.data(), n, out.data());
    for (int i = 0; i < n; ++i) {
      const double g = gate[i];
      const double expected = g / (1.0 + std::exp(-g)) * up[i];
      // Relative 1e-6 (float rounding of a few operations and the exp polynomial's ~1e-7),
      // plus an absolute floor for results near zero.
      ASSERT_NEAR(out[i], expected, 1e-6 * std::abs(expected) + 1e-30) << "n=" << n << " i=" << i;
    }
    // In place (out aliases gate), as the model calls it.
    std::vector<float> in_place = gate;
    SiluAndMul(in_place.data(), up.data(), n, in_place.data());
    EXPECT_EQ(in_place, out);
  }
}

}  // namespace
}  // namespace pagoda::kernels::cpu

#include "kernels/cpu/matmul_avx2.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/bf16.h"

namespace pagoda::kernels::cpu {
namespace {

// The AVX2 path called directly (MatMul takes it only on CPUs without AVX-512), so that it is
// checked wherever the CPU has AVX2, against the portable loop on random inputs. Tolerance: both
// sum in f32 and differ only in order, 1e-5 relative to the sum of |x * w| (plus 1e-5).
struct Case {
  int64_t m, n, k;
  WeightType type;
  bool bias, accumulate;
  int64_t n_begin = 0, n_end = -1;  // the columns asked for; -1: all
  bool round = false;               // SplitPairs rounds x to bf16 (bf16 weights only)
};

void Check(const Case& c) {
  std::mt19937 rng(static_cast<uint32_t>(c.m * 7919 + c.n * 131 + c.k));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(c.m * c.k), bias(c.n), w32(c.n * c.k), y0(c.m * c.n);
  std::vector<uint16_t> w16(c.n * c.k);
  for (float& v : x) v = dist(rng);
  for (float& v : bias) v = dist(rng);
  for (float& v : y0) v = dist(rng);  // what accumulate adds to; elsewhere must stay as it is
  for (size_t i = 0; i < w16.size(); ++i) w32[i] = Bf16ToFloat(w16[i] = FloatToBf16(dist(rng)));
  const int64_t n_end = c.n_end < 0 ? c.n : c.n_end;
  std::vector<float> ref = y0, y = y0;
  MatMulArgs args{.x = x.data(),
                  .w = c.type == WeightType::kF32 ? static_cast<const void*>(w32.data())
                                                  : static_cast<const void*>(w16.data()),
                  .w_type = c.type,
                  .bias = c.bias ? bias.data() : nullptr,
                  .y = ref.data(),
                  .m = c.m,
                  .n = c.n,
                  .k = c.k,
                  .accumulate = c.accumulate};
  std::vector<float> x_seen = x;  // the reference gets x as the kernel must see it
  if (c.round) {
    for (float& v : x_seen) v = Bf16ToFloat(FloatToBf16(v));
  }
  args.x = x_seen.data();
  MatMulReference(args);
  args.x = x.data();
  args.y = y.data();
  std::vector<float> x_pairs(x.size());
  avx2::SplitPairs(x.data(), c.m, c.k, c.round, x_pairs.data());
  avx2::Rows(args, x_pairs.data(), c.n_begin, n_end);
  const std::string at = "m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                         " k=" + std::to_string(c.k) +
                         " bf16=" + std::to_string(c.type == WeightType::kBF16);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      const size_t e = static_cast<size_t>(i * c.n + j);
      if (j < c.n_begin || j >= n_end) {
        ASSERT_EQ(y[e], y0[e]) << at << ": column " << j << " is outside the range";
        continue;
      }
      float magnitude = 0.0f;
      for (int64_t q = 0; q < c.k; ++q) magnitude += std::fabs(x[i * c.k + q] * w32[j * c.k + q]);
      ASSERT_NEAR(y[e], ref[e], 1e-5f * (magnitude + 1.0f))
          << at << " at (" << i << "," << j << ")";
    }
  }
}

// Row counts around the 4-row groups and the single-row decode tile; column counts around the
// 3- and 6-row weight tiles; k with and without a tail past the last 8 (f32) or 16 (bf16); n * k
// large enough for
// several 128 KiB weight blocks.
TEST(MatMulAvx2Test, MatchesTheReference) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  for (const WeightType type : {WeightType::kBF16, WeightType::kF32}) {
    for (const int64_t m : {1, 2, 3, 4, 5, 7, 8, 9}) {
      for (const int64_t n : {1, 2, 3, 5, 6, 7, 13}) {
        for (const int64_t k : {1, 7, 8, 15, 16, 17, 45, 96}) {
          Check({m, n, k, type, /*bias=*/(m + n) % 2 == 0, /*accumulate=*/false});
        }
      }
    }
    for (const int64_t m : {1, 6, 16, 32, 35}) {
      Check({m, 200, 768, type, /*bias=*/true, /*accumulate=*/false});
      Check({m, 103, 2051, type, /*bias=*/false, /*accumulate=*/false});
    }
    for (const int64_t k : {1, 15, 16, 17, 40, 45}) {
      Check({33, 7, k, type, /*bias=*/k % 2 == 0, /*accumulate=*/false});
    }
  }
}

// A row's outputs do not depend on the batch it is in: every 4-row group of x takes the same
// products in the same order, so each output of a 40-row call is bit for bit what calls of 8
// rows give (a request's tokens do not change with the requests batched beside it).
TEST(MatMulAvx2Test, RowsSumTheSameWhateverTheBatch) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  for (const int64_t k : {45, 768, 2056}) {
    constexpr int64_t kM = 40, kN = 150, kPart = 8;
    std::mt19937 rng(static_cast<uint32_t>(k));
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(kM * k), bias(kN), whole(kM * kN), parts(kM * kN);
    std::vector<uint16_t> w(kN * k);
    for (float& v : x) v = dist(rng);
    for (float& v : bias) v = dist(rng);
    for (uint16_t& v : w) v = FloatToBf16(dist(rng));
    std::vector<float> x_pairs(x.size());
    avx2::SplitPairs(x.data(), kM, k, /*round_to_bf16=*/true, x_pairs.data());
    MatMulArgs args{.x = x.data(),
                    .w = w.data(),
                    .w_type = WeightType::kBF16,
                    .bias = bias.data(),
                    .y = whole.data(),
                    .m = kM,
                    .n = kN,
                    .k = k};
    avx2::Rows(args, x_pairs.data(), 0, kN);
    for (int64_t i = 0; i < kM; i += kPart) {  // the same 4-row groups
      args.y = parts.data() + i * kN;
      args.m = kPart;
      avx2::Rows(args, x_pairs.data() + i * k, 0, kN);
    }
    for (size_t e = 0; e < whole.size(); ++e) {
      ASSERT_EQ(whole[e], parts[e]) << "k=" << k << " element " << e;
    }
  }
}

// accumulate adds to y; a column range writes its columns and no others (the thread pool gives
// each thread a range).
TEST(MatMulAvx2Test, AccumulatesAndKeepsToItsColumns) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  for (const WeightType type : {WeightType::kBF16, WeightType::kF32}) {
    for (const int64_t m : {1, 5}) {
      Check({m, 29, 72, type, /*bias=*/true, /*accumulate=*/true});
      Check({m, 29, 72, type, /*bias=*/false, /*accumulate=*/false, 4, 17});
      Check({m, 29, 72, type, /*bias=*/true, /*accumulate=*/true, 11, 12});
      Check({m, 400, 512, type, /*bias=*/false, /*accumulate=*/false, 7, 390});
    }
  }
}

// x rounded to bf16 as it is split (MatMul's batched bf16 products), the values past the last 16
// included: against the reference on the rounded x at the same tolerance, which unrounded values
// (off by about 2^-8) would miss.
TEST(MatMulAvx2Test, SplitPairsRoundsToBf16) {
  if (!avx2::Supported()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  for (const int64_t k : {7, 16, 45, 768}) {
    Check({5, 13, k, WeightType::kBF16, /*bias=*/true, /*accumulate=*/false, 0, -1,
           /*round=*/true});
  }
}

}  // namespace
}  // namespace pagoda::kernels::cpu

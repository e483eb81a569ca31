#include "kernels/cpu/matmul.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul_amx.h"

namespace pagoda::kernels::cpu {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Each case checks MatMul (whatever vector path this CPU takes) against the portable loop on
// random inputs (on x rounded to bf16 where MatMul rounds it). Tolerance: the paths differ only
// by summation order, 1e-4 relative to the sum of |x*w|.
void CheckAgainstReference(WeightType type, const Shape& s, bool with_bias, int threads,
                           bool allow_amx = true) {
  std::mt19937 rng(static_cast<uint32_t>(s.m * 1000003 + s.n * 1009 + s.k));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(s.m * s.k), bias(s.n), y(s.m * s.n), ref(s.m * s.n);
  for (float& v : x) v = dist(rng);
  for (float& v : bias) v = dist(rng);
  std::vector<float> w32(s.n * s.k);
  std::vector<uint16_t> w16(s.n * s.k);
  for (size_t i = 0; i < w32.size(); ++i) {
    w16[i] = FloatToBf16(dist(rng));
    w32[i] = Bf16ToFloat(w16[i]);
  }
  MatMulArgs args{.x = x.data(),
                  .w = type == WeightType::kF32 ? static_cast<const void*>(w32.data())
                                                : static_cast<const void*>(w16.data()),
                  .w_type = type,
                  .bias = with_bias ? bias.data() : nullptr,
                  .y = ref.data(),
                  .m = s.m,
                  .n = s.n,
                  .k = s.k};
  // A batched bf16 product rounds x to bf16 on every path (matmul.h): the reference gets the
  // rounded x, so a path that skipped the rounding would be off by about 2^-8 of the sum.
  std::vector<float> x_seen = x;
  if (type == WeightType::kBF16 && s.m >= 4) {
    for (float& v : x_seen) v = Bf16ToFloat(FloatToBf16(v));
  }
  args.x = x_seen.data();
  MatMulReference(args);
  ThreadPool pool(threads);
  args.x = x.data();
  args.y = y.data();
  MatMul(args, pool, allow_amx);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      float magnitude = 0.0f;
      for (int64_t c = 0; c < s.k; ++c) magnitude += std::fabs(x[i * s.k + c] * w32[j * s.k + c]);
      const float tol = 1e-4f * (magnitude + 1.0f);
      ASSERT_NEAR(y[i * s.n + j], ref[i * s.n + j], tol)
          << "m=" << s.m << " n=" << s.n << " k=" << s.k << " at (" << i << "," << j << ")";
    }
  }
}

TEST(MatMulTest, MatchesReferenceForF32Weights) {
  for (const Shape& s :
       {Shape{1, 17, 64}, Shape{3, 64, 100}, Shape{9, 33, 768}, Shape{16, 8, 31}}) {
    CheckAgainstReference(WeightType::kF32, s, /*with_bias=*/false, 2);
    CheckAgainstReference(WeightType::kF32, s, /*with_bias=*/true, 1);
  }
}

TEST(MatMulTest, MatchesReferenceForBf16Weights) {
  for (const Shape& s :
       {Shape{1, 17, 64}, Shape{4, 64, 96}, Shape{16, 40, 768}, Shape{5, 7, 45}, Shape{2, 3, 1},
        // 8-row tiles reduced together (SumLanes16), with k tails past the last 32 and odd n.
        Shape{8, 34, 45}, Shape{24, 19, 100}}) {
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/true, 2);
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/true, 2, /*allow_amx=*/false);
  }
}

// The AMX tiles take bf16 products with n a multiple of 16 and k of 32: every row count (whole
// and partial 16-row blocks, pairs and single blocks of both), one and two output blocks, with
// and without bias, and the widths of llama-110m and TinyLlama.
TEST(MatMulTest, AmxTilesMatchTheReference) {
  if (!amx::Available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or the kernel refuses it)";
  for (const Shape& s : {Shape{4, 16, 32}, Shape{16, 32, 64}, Shape{17, 48, 96}, Shape{33, 80, 768},
                         Shape{40, 16, 2048}, Shape{64, 2048, 64}, Shape{9, 112, 5632}}) {
    ASSERT_TRUE(MatMulTakesAmx({.w_type = WeightType::kBF16, .m = s.m, .n = s.n, .k = s.k}));
    CheckAgainstReference(WeightType::kBF16, s, /*with_bias=*/s.m % 2 == 1, 2);
  }
  EXPECT_EQ(std::string(MatMulIsa()), "amx-bf16");
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kBF16, .m = 16, .n = 40, .k = 64}));
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kBF16, .m = 16, .n = 48, .k = 48}));
  EXPECT_FALSE(amx::Supports({.w_type = WeightType::kF32, .m = 16, .n = 48, .k = 64}));
  // Three rows or fewer keep the exact f32 path.
  EXPECT_FALSE(MatMulTakesAmx({.w_type = WeightType::kBF16, .m = 3, .n = 48, .k = 64}));
}

// Random x [m, k] and bf16 weights [n, k] (also widened to f32).
struct Operands {
  std::vector<float> x;
  std::vector<uint16_t> w16;
  std::vector<float> w32;
};

Operands RandomOperands(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Operands o{.x = std::vector<float>(s.m * s.k), .w16 = std::vector<uint16_t>(s.n * s.k)};
  for (float& v : o.x) v = dist(rng);
  for (uint16_t& v : o.w16) v = FloatToBf16(dist(rng));
  for (const uint16_t v : o.w16) o.w32.push_back(Bf16ToFloat(v));
  return o;
}

// accumulate adds the product to y: exactly y + (what MatMul stores), on every path this CPU
// has (AMX, the vector path without it, the f32 path of few rows and f32 weights).
TEST(MatMulTest, AccumulateAddsTheProductToY) {
  ThreadPool pool(2);
  for (const Shape& s : {Shape{2, 48, 64}, Shape{17, 48, 96}, Shape{40, 32, 768}}) {
    const Operands o = RandomOperands(s, static_cast<uint32_t>(s.m + s.n));
    std::vector<float> bias(s.n, 0.25f), y0(s.m * s.n);
    for (size_t i = 0; i < y0.size(); ++i) y0[i] = static_cast<float>(i % 7) - 3.0f;
    for (const WeightType type : {WeightType::kBF16, WeightType::kF32}) {
      for (const bool allow_amx : {true, false}) {
        MatMulArgs args{.x = o.x.data(),
                        .w = type == WeightType::kF32 ? static_cast<const void*>(o.w32.data())
                                                      : static_cast<const void*>(o.w16.data()),
                        .w_type = type,
                        .bias = bias.data(),
                        .m = s.m,
                        .n = s.n,
                        .k = s.k};
        std::vector<float> product(s.m * s.n), y = y0;
        args.y = product.data();
        MatMul(args, pool, allow_amx);
        args.y = y.data();
        args.accumulate = true;
        MatMul(args, pool, allow_amx);
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_EQ(y[i], y0[i] + product[i]) << "m=" << s.m << " at " << i;
        }
        std::vector<float> ref = y0;
        args.y = ref.data();
        MatMulReference(args);
        for (size_t i = 0; i < ref.size(); ++i) ASSERT_NE(ref[i], y0[i]) << "not accumulated";
      }
    }
  }
}

// The gated product of x (gate's) with gate's and up's bf16 weights, as stored, into y.
GatedMatMulArgs GatedArgs(const Operands& gate, const Operands& up, const Shape& s, float* y,
                          float* scratch) {
  return {.x = gate.x.data(),
          .w_gate = gate.w16.data(),
          .w_up = up.w16.data(),
          .w_type = WeightType::kBF16,
          .y = y,
          .scratch = scratch,
          .m = s.m,
          .n = s.n,
          .k = s.k};
}

// The gated product the unfused way: MatMul of the gate's and of the up's weights (in `g`'s
// layout, on the path `allow_amx` picks), then SiluAndMul.
std::vector<float> UnfusedGated(const GatedMatMulArgs& g, ThreadPool& pool, bool allow_amx) {
  std::vector<float> gate(g.m * g.n), up(g.m * g.n), out(g.m * g.n);
  MatMulArgs m{.x = g.x,
               .w = g.w_gate,
               .w_type = g.w_type,
               .w_layout = g.w_layout,
               .y = gate.data(),
               .m = g.m,
               .n = g.n,
               .k = g.k};
  MatMul(m, pool, allow_amx);
  m.w = g.w_up;
  m.y = up.data();
  MatMul(m, pool, allow_amx);
  SiluAndMul(gate.data(), up.data(), g.m * g.n, out.data());
  return out;
}

// GatedMatMul = silu(gate product) * up product: against the reference loops at the bf16-dot
// tolerance (the silu's slope is at most 1.1, the up factor bounds the rest), and exactly the
// two MatMuls and SiluAndMul of the unfused path (the fused AMX epilogue computes the same
// sums and the same activation).
TEST(MatMulTest, GatedMatMulIsSiluOfTheGateTimesTheUp) {
  ThreadPool pool(2);
  for (const Shape& s : {Shape{1, 32, 64}, Shape{5, 48, 96}, Shape{16, 64, 768}, Shape{33, 80, 256},
                         Shape{40, 16, 2048}}) {
    const Operands gate = RandomOperands(s, 7);
    const Operands up = RandomOperands(s, 8);
    for (const bool allow_amx : {true, false}) {
      std::vector<float> y(s.m * s.n), scratch(s.m * s.n);
      GatedMatMulArgs args = GatedArgs(gate, up, s, y.data(), scratch.data());
      GatedMatMul(args, pool, allow_amx);
      const std::vector<float> unfused = UnfusedGated(args, pool, allow_amx);  // the same path
      // The reference: exact loops, then the scalar activation.
      std::vector<float> rg(s.m * s.n), ru(s.m * s.n);
      MatMulArgs m{.x = gate.x.data(), .w_type = WeightType::kBF16, .m = s.m, .n = s.n, .k = s.k};
      m.y = rg.data();
      m.w = gate.w16.data();
      MatMulReference(m);
      m.y = ru.data();
      m.w = up.w16.data();
      MatMulReference(m);
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
          const int64_t at = i * s.n + j;
          ASSERT_EQ(y[at], unfused[at]) << "m=" << s.m << " amx=" << allow_amx << " at " << at;
          float mg = 0, mu = 0;
          for (int64_t c = 0; c < s.k; ++c) {
            mg += std::fabs(gate.x[i * s.k + c] * gate.w32[j * s.k + c]);
            mu += std::fabs(gate.x[i * s.k + c] * up.w32[j * s.k + c]);
          }
          const float expected = rg[at] / (1.0f + std::exp(-rg[at])) * ru[at];
          const float tol = (1.0f / 256) * (1.1f * (mg + 1) * (std::fabs(ru[at]) + mu + 1));
          ASSERT_NEAR(y[at], expected, tol) << "m=" << s.m << " n=" << s.n << " at " << at;
        }
      }
    }
  }
}

// WeightLayout::kTiles: PackWeightsToTiles puts element (j, c) where the layout's formula
// says; the reference reads it back to the same sums; and MatMul on it gives the rows
// layout's bits where both run on the AMX tiles (the same products of the same bf16 values,
// summed in the same order, whichever operand the weights are), and the reference's values
// (at the f32 paths' 1e-4 of the sum of |x*w|) on the exact f32 path of fewer than 4 rows or
// with AMX kept out. Every row count around the 16-row blocks and the 4-row cut, bias and
// accumulate, 1 and 2 threads.
TEST(MatMulTest, TiledWeightsGiveTheRowsLayoutsSums) {
  for (const Shape& s :
       {Shape{1, 16, 32}, Shape{2, 48, 96}, Shape{3, 32, 768}, Shape{4, 16, 64}, Shape{5, 64, 128},
        Shape{16, 32, 2048}, Shape{17, 48, 96}, Shape{33, 80, 768}, Shape{128, 32, 256},
        // several passes of x's rows (512 KiB of them each: 2 blocks at k = 8,192), the last
        // a single block
        Shape{80, 32, 8192},
        // one block of x against 3, 5 and 7 column blocks (groups of 4, tails)
        Shape{8, 48, 96}, Shape{12, 80, 64}, Shape{6, 112, 32}}) {
    ASSERT_TRUE(TilesLayoutFits(s.n, s.k));
    const Operands o = RandomOperands(s, static_cast<uint32_t>(s.m * 31 + s.k));
    ThreadPool pool(s.m % 2 == 0 ? 2 : 1);
    std::vector<uint16_t> tiles(o.w16.size());
    PackWeightsToTiles(o.w16.data(), s.n, s.k, tiles.data(), pool);
    std::vector<uint16_t> scalar_tiles(o.w16.size());
    PackWeightsToTiles(o.w16.data(), s.n, s.k, scalar_tiles.data(), pool, /*allow_avx512=*/false);
    ASSERT_EQ(scalar_tiles, tiles) << "m=" << s.m;
    for (int64_t j = 0; j < s.n; ++j) {
      for (int64_t c = 0; c < s.k; ++c) {
        const int64_t at =
            ((j / 16) * (s.k / 32) + c / 32) * 512 + (c % 32) / 2 * 32 + (j % 16) * 2 + c % 2;
        ASSERT_EQ(tiles[at], o.w16[j * s.k + c]) << "(" << j << "," << c << ")";
      }
    }
    std::vector<float> bias(s.n);
    for (int64_t j = 0; j < s.n; ++j) bias[j] = 0.125f * static_cast<float>(j % 5);
    MatMulArgs rows{.x = o.x.data(),
                    .w = o.w16.data(),
                    .w_type = WeightType::kBF16,
                    .bias = s.m % 2 == 1 ? bias.data() : nullptr,
                    .m = s.m,
                    .n = s.n,
                    .k = s.k,
                    .accumulate = s.m % 3 == 0};
    MatMulArgs tiled = rows;
    tiled.w = tiles.data();
    tiled.w_layout = WeightLayout::kTiles;
    std::vector<float> y0(s.m * s.n);
    for (size_t i = 0; i < y0.size(); ++i) y0[i] = static_cast<float>(i % 5) - 2.0f;
    // The reference on x as MatMul sees it: rounded to bf16 from 4 rows (matmul.h).
    std::vector<float> x_seen = o.x;
    if (s.m >= 4) {
      for (float& v : x_seen) v = Bf16ToFloat(FloatToBf16(v));
    }
    std::vector<float> ref = y0, ref_tiled = y0;
    rows.x = tiled.x = x_seen.data();
    rows.y = ref.data();
    MatMulReference(rows);
    tiled.y = ref_tiled.data();
    MatMulReference(tiled);
    ASSERT_EQ(ref, ref_tiled) << "m=" << s.m;
    rows.x = tiled.x = o.x.data();
    for (const bool allow_amx : {true, false}) {
      std::vector<float> y_rows = y0, y_tiled = y0;
      rows.y = y_rows.data();
      MatMul(rows, pool, allow_amx);
      tiled.y = y_tiled.data();
      MatMul(tiled, pool, allow_amx);
      const bool same_path = allow_amx && MatMulTakesAmx(rows);
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
          const int64_t at = i * s.n + j;
          if (same_path) {
            ASSERT_EQ(y_tiled[at], y_rows[at])
                << "m=" << s.m << " amx=" << allow_amx << " at " << at;
            continue;
          }
          float magnitude = 0.0f;
          for (int64_t c = 0; c < s.k; ++c) {
            magnitude += std::fabs(o.x[i * s.k + c] * o.w32[j * s.k + c]);
          }
          ASSERT_NEAR(y_tiled[at], ref[at], 1e-4f * (magnitude + 1.0f + std::fabs(y0[at])))
              << "m=" << s.m << " at " << at;
        }
      }
    }
  }
}

// The gated product on kTiles weights: the same values as the tiled MatMuls and SiluAndMul,
// and the same bits as on the rows layout where both take AMX.
TEST(MatMulTest, GatedMatMulReadsTiledWeights) {
  ThreadPool pool(2);
  for (const Shape& s : {Shape{2, 32, 64}, Shape{16, 64, 768}, Shape{33, 48, 256}, Shape{7, 48, 64},
                         Shape{40, 16, 8192}}) {
    const Operands gate = RandomOperands(s, 17);
    const Operands up = RandomOperands(s, 18);
    std::vector<uint16_t> gate_tiles(gate.w16.size()), up_tiles(up.w16.size());
    PackWeightsToTiles(gate.w16.data(), s.n, s.k, gate_tiles.data(), pool);
    PackWeightsToTiles(up.w16.data(), s.n, s.k, up_tiles.data(), pool);
    for (const bool allow_amx : {true, false}) {
      std::vector<float> y_rows(s.m * s.n), y_tiled(s.m * s.n), scratch(s.m * s.n);
      GatedMatMulArgs args = GatedArgs(gate, up, s, y_rows.data(), scratch.data());
      GatedMatMul(args, pool, allow_amx);
      args.w_gate = gate_tiles.data();
      args.w_up = up_tiles.data();
      args.w_layout = WeightLayout::kTiles;
      args.y = y_tiled.data();
      GatedMatMul(args, pool, allow_amx);
      EXPECT_EQ(y_tiled, UnfusedGated(args, pool, allow_amx))
          << "m=" << s.m << " amx=" << allow_amx;
      const bool same_path = allow_amx && s.m >= 4 && amx::Available();
      if (same_path) {
        EXPECT_EQ(y_tiled, y_rows) << "m=" << s.m << " amx=" << allow_amx;
      }
    }
  }
}

TEST(MatMulTest, ReportsAnIsa) { EXPECT_FALSE(std::string(MatMulIsa()).empty()); }

}  // namespace
}  // namespace pagoda::kernels::cpu

#pragma once

// The constants of the vectorized exp(x) that avx512_math.h and avx2_math.h share (one
// algorithm, two vector widths): x clamped to [kMinArg, kMaxArg], x = n ln2 + r with
// |r| <= ln2 / 2 (ln2 split in a high part exact in float and a low correction), then Cephes'
// degree-6 polynomial: exp(r) ~ 1 + r + r^2 * P(r), P's coefficients highest first.
namespace pagoda::kernels::cpu::exp_poly {

inline constexpr float kMinArg = -87.0f;
inline constexpr float kMaxArg = 88.0f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2High = 0.693359375f;
inline constexpr float kLn2Low = -2.12194440e-4f;
inline constexpr int kDegree = 6;
inline constexpr float kP[kDegree] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                      4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

}  // namespace pagoda::kernels::cpu::exp_poly

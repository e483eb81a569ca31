#pragma once

// AVX-512 helpers shared by the CPU kernels. Each function carries its own target attribute, so
// callers must themselves be compiled for (and only run on) CPUs with AVX-512 F/BW/VL/DQ.
#if defined(__x86_64__)

#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/exp_poly.h"
#include "kernels/cpu/fp8.h"

#define PAGODA_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

namespace pagoda::kernels::cpu::avx512 {

// Whether this CPU runs the functions below (checked once).
inline bool Supported() {
  static const bool supported =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return supported;
}

// 16 consecutive elements as floats.
PAGODA_AVX512_TARGET inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
PAGODA_AVX512_TARGET inline __m512 Load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
PAGODA_AVX512_TARGET inline __m512 Load16(const Bf16* p) {
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}
// FP8 through float16, exactly: an E5M2 byte is the upper byte of a float16; an E4M3 byte's
// exponent and mantissa shifted into a float16's are its value / 256 (subnormals included), and
// its NaN (never written: encoding saturates) reads as 480.
PAGODA_AVX512_TARGET inline __m512 Load16(const Fp8E5M2* p) {
  const __m256i bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_maskz_cvtph_ps(0xffff, _mm256_slli_epi16(bytes, 8));
}
// E4M3 values / 256 (what the float16 reinterpretation gives): a kernel folds the 256 into its
// per-row scale instead of multiplying every vector.
PAGODA_AVX512_TARGET inline __m512 Load16Over256(const Fp8E4M3* p) {
  const __m256i bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // b << 7 puts exponent and mantissa where a float16's go and the sign at bit 14; adding that
  // bit to itself moves it to bit 15.
  const __m256i shifted = _mm256_slli_epi16(bytes, 7);
  const __m256i half =
      _mm256_add_epi16(shifted, _mm256_and_si256(shifted, _mm256_set1_epi16(0x4000)));
  // (The masked form: GCC 12's plain _mm512_cvtph_ps warns that its placeholder is uninitialized.)
  return _mm512_maskz_cvtph_ps(0xffff, half);
}
PAGODA_AVX512_TARGET inline __m512 Load16(const Fp8E4M3* p) {
  return _mm512_mul_ps(Load16Over256(p), _mm512_set1_ps(256.0f));
}

// What LoadScaled16 returns is the value divided by LoadScale<T>(): 256 for E4M3, else 1.
template <typename T>
constexpr float LoadScale() {
  return std::is_same_v<T, Fp8E4M3> ? 256.0f : 1.0f;
}
template <typename T>
PAGODA_AVX512_TARGET inline __m512 LoadScaled16(const T* p) {
  if constexpr (std::is_same_v<T, Fp8E4M3>) {
    return Load16Over256(p);
  } else {
    return Load16(p);
  }
}

// exp(x), relative error about 1e-7 for x in [-87, 88] (clamped outside, so it never returns
// inf or a denormal): x = n ln2 + r with |r| <= ln2 / 2, Cephes' degree-6 polynomial for exp(r),
// then scaled by 2^n.
PAGODA_AVX512_TARGET inline __m512 Exp(__m512 x) {
  using namespace exp_poly;
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kMinArg)), _mm512_set1_ps(kMaxArg));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2High), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Low), r);
  __m512 p = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < kDegree; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// silu(g) * u = g / (1 + exp(-g)) * u: the SwiGLU activation of 16 gate and up values.
PAGODA_AVX512_TARGET inline __m512 SiluMul(__m512 g, __m512 u) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sig =
      _mm512_div_ps(one, _mm512_add_ps(one, Exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
  return _mm512_mul_ps(_mm512_mul_ps(g, sig), u);
}

// The sum of each of 16 vectors, as the 16 lanes of one (lane j = the sum of v[j]): pairs
// within 128-bit lanes, then quads, then across the four 128-bit lanes, a transposing reduction
// of 15 adds where 16 horizontal reductions would take four times the shuffles and adds.
PAGODA_AVX512_TARGET inline __m512 Sum16(const __m512* v) {
  __m512 b[8];  // b[k], per 128-bit lane: [v2k(0+2), v2k+1(0+2), v2k(1+3), v2k+1(1+3)]
  for (int k = 0; k < 8; ++k) {
    b[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                         _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  }
  __m512 c[4];  // c[k], per 128-bit lane: the lane's sums of v4k .. v4k+3
  for (int k = 0; k < 4; ++k) {
    const __m512d x = _mm512_castps_pd(b[2 * k]);
    const __m512d y = _mm512_castps_pd(b[2 * k + 1]);
    c[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // Across lanes: 128-bit block k of the result = the sum of c[k]'s four blocks.
  const __m512 e01 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xee));
  const __m512 e23 =
      _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xee));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e01, e23, 0x88), _mm512_shuffle_f32x4(e01, e23, 0xdd));
}

// In place: r[i] lane j becomes r[j] lane i (a 16 x 16 transpose of 32-bit values).
PAGODA_AVX512_TARGET inline void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + j], 128-bit lane L: rows 4i .. 4i+3 of column 4L + j.
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  __m512 out[16];
  for (int j = 0; j < 4; ++j) {
    const __m512 ab_lo = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 ab_hi = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 cd_hi = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    out[j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
    out[4 + j] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
    out[8 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = out[i];
}

}  // namespace pagoda::kernels::cpu::avx512

#endif  // __x86_64__

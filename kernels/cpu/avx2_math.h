#pragma once

// AVX2 helpers shared by the CPU kernels, for CPUs without AVX-512 (the 8-lane twins of
// avx512_math.h). Each function carries its own target attribute, so callers must themselves be
// compiled for (and only run on) CPUs with AVX2, FMA and F16C (every AVX2 CPU has the other two).
#if defined(__x86_64__)

#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/bf16.h"
#include "kernels/cpu/exp_poly.h"
#include "kernels/cpu/fp8.h"

#define PAGODA_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

namespace pagoda::kernels::cpu::avx2 {

// Whether this CPU runs the functions below (checked once).
inline bool Supported() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                                __builtin_cpu_supports("f16c");
  return supported;
}

// exp(x) of 8 lanes, as avx512::Exp (the same range reduction and Cephes polynomial, relative
// error about 1e-7 for x in [-87, 88], clamped outside), 2^n built in the exponent bits.
PAGODA_AVX2_TARGET inline __m256 Exp(__m256 x) {
  using namespace exp_poly;
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kMinArg)), _mm256_set1_ps(kMaxArg));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2High), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Low), r);
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < kDegree; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-126, 127] (x's clamp keeps it there): n + 127 in the exponent field.
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// silu(g) * u = g / (1 + exp(-g)) * u: the SwiGLU activation of 8 gate and up values.
PAGODA_AVX2_TARGET inline __m256 SiluMul(__m256 g, __m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sig =
      _mm256_div_ps(one, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

// 8 consecutive elements as floats (the 8-lane twins of avx512::Load16 and Load16Over256: FP8
// through float16, exactly; E4M3 as its value / 256, avx512::LoadScale folding the 256 into a
// row's scale).
PAGODA_AVX2_TARGET inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
PAGODA_AVX2_TARGET inline __m256 Load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
PAGODA_AVX2_TARGET inline __m256 Load8(const Bf16* p) {
  const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}
PAGODA_AVX2_TARGET inline __m256 Load8(const Fp8E5M2* p) {
  const __m128i bytes = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_cvtph_ps(_mm_slli_epi16(bytes, 8));
}
// (E4M3 s.eeee.mmm sign-extended to 16 bits and shifted left by 7 is s.s.eeee.mmm.0000000:
// clearing the second bit leaves the float16 s.0eeee.mmm0000000, the value / 256.)
PAGODA_AVX2_TARGET inline __m256 Load8Over256(const Fp8E4M3* p) {
  const __m128i words = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_cvtph_ps(
      _mm_and_si128(_mm_slli_epi16(words, 7), _mm_set1_epi16(static_cast<int16_t>(0xBF80))));
}
// What avx512::LoadScale<T>() divides: E4M3 / 256, the others as they are.
template <typename T>
PAGODA_AVX2_TARGET inline __m256 LoadScaled8(const T* p) {
  if constexpr (std::is_same_v<T, Fp8E4M3>) {
    return Load8Over256(p);
  } else {
    return Load8(p);
  }
}

// The sum of the 8 lanes.
PAGODA_AVX2_TARGET inline float Sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The sum of each of 8 vectors, as the 8 lanes of one (lane j = the sum of v[j]): three rounds
// of horizontal adds, then the two 128-bit halves added, where 8 Sum8 would take far more.
PAGODA_AVX2_TARGET inline __m256 Sum8x8(const __m256* v) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  // Per 128-bit half h: u0 = [v0, v1, v2, v3] (half h's sums), u1 = [v4 .. v7].
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Sum8x8 of int32 lanes (exact, wrapping as int32 adds do).
PAGODA_AVX2_TARGET inline __m256i SumInt8x8(const __m256i* v) {
  const __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

}  // namespace pagoda::kernels::cpu::avx2

#endif  // __x86_64__

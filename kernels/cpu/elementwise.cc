#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/avx2_math.h"
#include "kernels/cpu/avx512_math.h"
#include "kernels/cpu/bf16.h"

namespace pagoda::kernels::cpu {

__attribute__((target_clones("avx512f", "avx2", "default"))) void Embedding(
    absl::Span<const TokenId> tokens, const void* table, WeightType table_type, int64_t dim,
    float* out, WeightLayout table_layout) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int64_t row = tokens[t];
    float* dst = out + static_cast<int64_t>(t) * dim;
    if (table_layout == WeightLayout::kTiles) {
      UnpackTiledRow(static_cast<const uint16_t*>(table), dim, row, dst);
    } else if (table_type == WeightType::kF32) {
      std::memcpy(dst, static_cast<const float*>(table) + row * dim, dim * sizeof(float));
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(table) + row * dim;
      for (int64_t i = 0; i < dim; ++i) dst[i] = Bf16ToFloat(src[i]);
    }
  }
}

namespace {

// Accumulate in double: dim can be 8192 and values large before a norm.
__attribute__((target_clones("avx512f", "avx2", "default"))) void RmsNormPortable(
    const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum_squares / dim) + eps);
    float* dst = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) dst[i] = row[i] * inv * weight[i];
  }
}

#if defined(__x86_64__)
// The same sums of squares in double, in 16 lanes instead of one chain (a double add's latency
// per element made the portable loop 5% of a 512-token prefill); the squares of floats are exact
// in double, so only the order of the additions differs.
PAGODA_AVX512_TARGET void RmsNormAvx512(const float* x, const float* weight, int64_t rows,
                                        int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= dim; i += 16) {
      const __m512 v = _mm512_loadu_ps(row + i);
      const __m512d a = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
      const __m512d b =
          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
      lo = _mm512_fmadd_pd(a, a, lo);
      hi = _mm512_fmadd_pd(b, b, hi);
    }
    double sum_squares = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
    for (; i < dim; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum_squares / dim) + eps);
    const __m512 inv_v = _mm512_set1_ps(inv);
    float* dst = out + r * dim;
    for (i = 0; i + 16 <= dim; i += 16) {
      _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(row + i), inv_v),
                                              _mm512_loadu_ps(weight + i)));
    }
    for (; i < dim; ++i) dst[i] = row[i] * inv * weight[i];
  }
}
#endif

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
             float* out) {
#if defined(__x86_64__)
  if (avx512::Supported()) {
    RmsNormAvx512(x, weight, rows, dim, eps, out);
    return;
  }
#endif
  RmsNormPortable(x, weight, rows, dim, eps, out);
}

namespace {

#if defined(__x86_64__)
// SiLU needs one exp per element; the scalar libm call dominated it.
PAGODA_AVX512_TARGET void SiluAndMulAvx512(const float* gate, const float* up, int64_t n,
                                           float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, avx512::SiluMul(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

PAGODA_AVX2_TARGET void SiluAndMulAvx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, avx2::SiluMul(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}
#endif

}  // namespace

void SiluAndMul(const float* gate, const float* up, int64_t n, float* out) {
#if defined(__x86_64__)
  if (avx512::Supported()) {
    SiluAndMulAvx512(gate, up, n, out);
    return;
  }
  if (avx2::Supported()) {
    SiluAndMulAvx2(gate, up, n, out);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace pagoda::kernels::cpu

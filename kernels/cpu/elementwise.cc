#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/bf16.h"

namespace pagoda::kernels::cpu {

__attribute__((target_clones("avx512f", "avx2", "default"))) void Embedding(
    absl::Span<const TokenId> tokens, const void* table, WeightType table_type, int64_t dim,
    float* out) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int64_t row = tokens[t];
    float* dst = out + static_cast<int64_t>(t) * dim;
    if (table_type == WeightType::kF32) {
      std::memcpy(dst, static_cast<const float*>(table) + row * dim, dim * sizeof(float));
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(table) + row * dim;
      for (int64_t i = 0; i < dim; ++i) dst[i] = Bf16ToFloat(src[i]);
    }
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void RmsNorm(const float* x,
                                                                          const float* weight,
                                                                          int64_t rows, int64_t dim,
                                                                          float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    // Accumulate in double: dim can be 8192 and values large before a norm.
    double sum_squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum_squares / dim) + eps);
    float* dst = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) dst[i] = row[i] * inv * weight[i];
  }
}

void SiluAndMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void AddInPlace(float* y,
                                                                             const float* x,
                                                                             int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace pagoda::kernels::cpu

#include "kernels/cpu/rope.h"

#include <cmath>
#include <numbers>

#include "common/check.h"

namespace pagoda::kernels::cpu {

std::vector<float> RopeInverseFrequencies(int head_dim, float theta,
                                          const std::optional<Llama3RopeScaling>& scaling) {
  PAGODA_CHECK(head_dim > 0 && head_dim % 2 == 0) << head_dim;
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    // Computed in double as HF does in float32 from an int64 arange; the difference is far
    // below float resolution for any realistic theta.
    double f = 1.0 / std::pow(static_cast<double>(theta), (2.0 * i) / head_dim);
    if (scaling.has_value()) {
      const double orig = scaling->original_max_position_embeddings;
      const double low_wavelen = orig / scaling->low_freq_factor;
      const double high_wavelen = orig / scaling->high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= scaling->factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (orig / wavelen - scaling->low_freq_factor) /
                              (scaling->high_freq_factor - scaling->low_freq_factor);
        f = (1.0 - smooth) * f / scaling->factor + smooth * f;
      }
    }
    inv_freq[i] = static_cast<float>(f);
  }
  return inv_freq;
}

void ComputeRopeAngles(absl::Span<const int32_t> positions, absl::Span<const float> inv_freq,
                       RopeAngles* angles, int32_t exact_from) {
  const size_t half = inv_freq.size();
  angles->cos.resize(positions.size() * half);
  angles->sin.resize(positions.size() * half);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (size_t j = 0; j < half; ++j) {
      if (positions[t] >= exact_from) {
        const double angle = static_cast<double>(positions[t]) * inv_freq[j];
        angles->cos[t * half + j] = static_cast<float>(std::cos(angle));
        angles->sin[t * half + j] = static_cast<float>(std::sin(angle));
        continue;
      }
      // The angle in float, like HF's float32 outer product, so long positions round alike.
      const float angle = static_cast<float>(positions[t]) * inv_freq[j];
      angles->cos[t * half + j] = std::cos(angle);
      angles->sin[t * half + j] = std::sin(angle);
    }
  }
}

void ApplyRope(float* x, int64_t num_tokens, int num_heads, int head_dim, const float* cos,
               const float* sin) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int h = 0; h < num_heads; ++h) {
      float* head = x + (t * num_heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        const float a = head[j];
        const float b = head[j + half];
        head[j] = a * c[j] - b * s[j];
        head[j + half] = b * c[j] + a * s[j];
      }
    }
  }
}

}  // namespace pagoda::kernels::cpu

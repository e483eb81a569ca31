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

void ApplyRope(float* x, absl::Span<const int32_t> positions, int num_heads, int head_dim,
               absl::Span<const float> inv_freq) {
  const int half = head_dim / 2;
  PAGODA_CHECK_EQ(static_cast<int>(inv_freq.size()), half);
  std::vector<float> cos_table(half), sin_table(half);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int j = 0; j < half; ++j) {
      // The angle in float, like HF's float32 outer product, so long positions round alike.
      const float angle = static_cast<float>(positions[t]) * inv_freq[j];
      cos_table[j] = std::cos(angle);
      sin_table[j] = std::sin(angle);
    }
    for (int h = 0; h < num_heads; ++h) {
      float* head = x + (static_cast<int64_t>(t) * num_heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        const float a = head[j];
        const float b = head[j + half];
        head[j] = a * cos_table[j] - b * sin_table[j];
        head[j + half] = b * cos_table[j] + a * sin_table[j];
      }
    }
  }
}

}  // namespace pagoda::kernels::cpu

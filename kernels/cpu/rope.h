#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"

namespace pagoda::kernels::cpu {

// Llama 3's frequency-dependent RoPE scaling (HF rope_type "llama3").
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// The inverse frequencies theta^(-2i/head_dim), i < head_dim/2, with llama3 scaling applied
// exactly as Hugging Face's _compute_llama3_parameters. Precondition: head_dim even.
std::vector<float> RopeInverseFrequencies(int head_dim, float theta,
                                          const std::optional<Llama3RopeScaling>& scaling);

// Rotates each head of x in place, Hugging Face rotate_half convention: for j < head_dim/2 the
// pair (x[j], x[j + head_dim/2]) is rotated by positions[t] * inv_freq[j].
// x: [num_tokens, num_heads, head_dim]; positions: [num_tokens].
void ApplyRope(float* x, absl::Span<const int32_t> positions, int num_heads, int head_dim,
               absl::Span<const float> inv_freq);

}  // namespace pagoda::kernels::cpu

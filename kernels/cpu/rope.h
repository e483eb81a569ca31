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

// cos and sin of positions[t] * inv_freq[j], each [num_tokens, inv_freq.size()]. Computed once
// per step: every layer rotates q and k by the same angles. Below `exact_from` the angle is a
// float32 product, as Hugging Face computes it (so logits match); from it on (positions past a
// model's context, which only StreamingLLM reaches) the product is taken in double, where a
// float32 angle would be off by up to position * 6e-8 rad.
struct RopeAngles {
  std::vector<float> cos;
  std::vector<float> sin;
};
void ComputeRopeAngles(absl::Span<const int32_t> positions, absl::Span<const float> inv_freq,
                       RopeAngles* angles, int32_t exact_from = INT32_MAX);

// Rotates each head of x in place, Hugging Face rotate_half convention: for j < head_dim/2 the
// pair (x[j], x[j + head_dim/2]) is rotated by the angle of token t and frequency j.
// x: [num_tokens, num_heads, head_dim]; cos, sin: [num_tokens, head_dim/2] (rows of a
// RopeAngles, starting at the first token of x).
void ApplyRope(float* x, int64_t num_tokens, int num_heads, int head_dim, const float* cos,
               const float* sin);

}  // namespace pagoda::kernels::cpu

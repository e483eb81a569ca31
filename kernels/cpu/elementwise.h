#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "common/ids.h"
#include "kernels/cpu/matmul.h"

namespace pagoda::kernels::cpu {

// out[t, :] = table[tokens[t], :]. table: [vocab, dim] (f32 or bf16), out: [num_tokens, dim].
// A bf16 table may be in WeightLayout::kTiles (a tied lm_head's packing): each row is then
// gathered from its block's tiles (vocab a multiple of 16, dim of 32).
// Precondition: every token id is in [0, vocab).
void Embedding(absl::Span<const TokenId> tokens, const void* table, WeightType table_type,
               int64_t dim, float* out, WeightLayout table_layout = WeightLayout::kRows);

// out = x / sqrt(mean(x^2) + eps) * weight, per row. x, out: [rows, dim]; weight: [dim].
// out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out);

// out[i] = silu(gate[i]) * up[i] over n values (the SwiGLU MLP's activation). out may alias
// gate or up.
void SiluAndMul(const float* gate, const float* up, int64_t n, float* out);

}  // namespace pagoda::kernels::cpu

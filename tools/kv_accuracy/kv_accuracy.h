#pragma once

// The KV-cache accuracy gate (docs/kv_quantization.md): the same texts teacher-forced through two
// engines that differ in their KV-cache dtype, scored through prompt log-probabilities (the
// prefill over the paged cache, in chunks), and compared: perplexity, the KL divergence of the
// next-token distributions, and greedy agreement. Pure functions over engines the caller owns;
// thread-compatible.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "engine/engine_core.h"
#include "sampling/logprobs.h"

namespace pagoda::kv_accuracy {

// The alternatives each scored position keeps: the engine's maximum.
inline constexpr int kTopK = 20;

// Per text, per position after the first: the text's next token scored with its kTopK most
// likely alternatives (sampling::TokenLogprobs, entry i scoring token i + 1).
using TextScores = std::vector<std::vector<sampling::TokenLogprobs>>;

// Scores every text (each at least 2 tokens, at most the engine's max_model_len - 1) on `core`,
// `batch` texts at a time. Errors: an invalid text (InvalidArgument naming its index), an engine
// failure.
absl::StatusOr<TextScores> ScoreTexts(engine::EngineCore& core,
                                      const std::vector<std::vector<TokenId>>& texts,
                                      int batch = 16);

struct Comparison {
  int64_t num_tokens = 0;    // scored positions
  double reference_nll = 0;  // mean negative log-likelihood per token, nats
  double test_nll = 0;
  double reference_perplexity = 0;
  double test_perplexity = 0;
  // Mean over positions of KL(reference || test), nats, on the partition {tokens in both top-k
  // lists} + {everything else}: a lower bound of the full KL (coarse-graining never raises it),
  // close to it when the tails carry little mass.
  double mean_kl = 0;
  double greedy_agreement = 0;  // fraction of positions whose most likely token is the same
};

// Compares two scorings of the same texts. InvalidArgument when they do not match (texts,
// lengths or scored tokens).
absl::StatusOr<Comparison> Compare(const TextScores& reference, const TextScores& test);

}  // namespace pagoda::kv_accuracy

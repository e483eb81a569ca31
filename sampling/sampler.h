#pragma once

// Token sampling from one request's logits, with vLLM's sampling parameters and semantics.
//
// Order of operations in Sample() (vLLM's):
//   1. logit bias (additive, per token)
//   2. banned tokens -> -inf (the min_tokens hook: the engine bans the stop tokens until a
//      request has produced min_tokens tokens)
//   3. penalties: repetition (prompt and output tokens), presence and frequency (output only)
//   4. temperature; temperature < kGreedyTemperature means greedy argmax (ties: lowest id),
//      and steps 5-8 do not apply
//   5. top-k   6. top-p   7. min-p   8. draw one token with the request's RNG
//
// Differences from vLLM, on purpose:
//   - top-k keeps exactly k tokens; among equal logits at the k-th place the lowest ids win
//     (vLLM keeps every token tied with the k-th value).
//   - min-p is applied after top-p (vLLM V1 applies it before top-k/top-p). Both orders keep
//     the same tokens unless top-p and min-p are set together.
//
// Reproducibility: a request's draws depend only on its seed and on how many random draws it
// has made, never on the batch it runs in or on the thread that samples it. The RNG is
// counter-based SplitMix64 with a 53-bit uniform double, so a seeded request gives the same
// tokens on every platform for the same logits.

#include <cstdint>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "sampling/sampling_params.h"

namespace pagoda::sampling {

// The per-request state Sample() needs: the RNG and the token history for the penalties.
// Create one per request when it is admitted; feed it every generated token with
// AddOutputToken(). Memory is proportional to the number of distinct prompt and output tokens,
// not to the vocabulary.
//
// Not thread-safe; a request's state is used by one thread at a time (any thread).
class SamplerState {
 public:
  // `seed` unset draws a seed from a process-wide source (thread-safe, different for every
  // state). `prompt_tokens` are the request's prompt ids (they count for the repetition
  // penalty only).
  SamplerState(std::optional<uint64_t> seed, absl::Span<const TokenId> prompt_tokens);

  // Records a generated token: it now counts for all three penalties.
  void AddOutputToken(TokenId token);

  bool InPrompt(TokenId token) const { return prompt_tokens_.contains(token); }
  // How often `token` has been generated so far.
  int OutputCount(TokenId token) const;

  // Uniform in [0, 1) with 53 random bits; advances the RNG by one draw. Sample() makes exactly
  // one draw per non-greedy call and none for a greedy one.
  double NextUniform();
  uint64_t NextUint64();

  uint64_t seed() const { return seed_; }
  // Draws made so far (the RNG's counter).
  uint64_t num_draws() const { return num_draws_; }

  // Distinct tokens, for the penalties (iteration order unspecified).
  const absl::flat_hash_set<TokenId>& prompt_tokens() const { return prompt_tokens_; }
  const absl::flat_hash_map<TokenId, int32_t>& output_counts() const { return output_counts_; }

 private:
  uint64_t seed_;
  uint64_t num_draws_ = 0;
  absl::flat_hash_set<TokenId> prompt_tokens_;
  absl::flat_hash_map<TokenId, int32_t> output_counts_;
};

// Steps 1-3 above, in place on `logits` ([vocab_size] floats of one request): logit bias,
// banned tokens to -inf, then the penalties with vLLM's formulas:
//   for every token in the prompt or the output:  l = l > 0 ? l / repetition : l * repetition
//   for every token in the output:  l -= presence * (count > 0) + frequency * count
// A token id in `params`, `state` or `banned_tokens` outside [0, logits.size()) is an
// InvalidArgument error. A bad logit_bias or banned id is found before any logit changes; a bad
// id in the token history (checked as the penalties read it) leaves the logits part-adjusted.
absl::Status ApplyLogitAdjustments(absl::Span<float> logits, const SamplingParams& params,
                                   const SamplerState& state,
                                   absl::Span<const TokenId> banned_tokens = {});

// Samples one token from `logits` ([vocab_size] floats of one request), which it uses as
// scratch: their contents are unspecified afterwards. `params` must be valid for this
// vocab_size. `banned_tokens` are never returned. Does not call AddOutputToken(): the caller
// does, once it keeps the token. Whatever the logits hold, it never aborts: NaN logits are
// never sampled, +inf ones (after the adjustments) count as the largest finite float, and
// when no token is left (every logit -inf or NaN) it returns FailedPrecondition, so that the
// caller can fail that one request. Token ids out of range: InvalidArgument (as above).
//
// Cost: greedy and top-k (small k) about one vectorized pass over the vocabulary, plus
// O(k log k); otherwise a few passes (one exp per token), with top-p found by a radix select,
// never a sort of the vocabulary. Scratch buffers are per thread and reused.
// FAILED_PRECONDITION for a row with no samplable token (every logit -inf or NaN after the
// adjustments): what Sample() returns, and what a runner that argmaxes on its device says for
// such a row. Only that request fails.
absl::Status NoSamplableTokenError();

absl::StatusOr<TokenId> Sample(absl::Span<float> logits, const SamplingParams& params,
                               SamplerState& state, absl::Span<const TokenId> banned_tokens = {});

}  // namespace pagoda::sampling

#pragma once

#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ids.h"
#include "sampling/sampler.h"
#include "sampling/sampling_params.h"

namespace pagoda::sampling {

// The log-probability of one sampled token and of the most likely tokens at its position:
// natural logs of the model's raw distribution, log_softmax(logits) before logit bias, banned
// tokens, penalties, temperature and filtering (vLLM's default, "raw_logprobs").
struct TokenLogprobs {
  TokenId token = 0;
  float logprob = 0;  // <= 0; -inf for a token the raw distribution gives no mass
  // The `SamplingParams::logprobs` most likely tokens, most likely first (ties: lowest id).
  std::vector<std::pair<TokenId, float>> top;
  // For a scored prompt token (ScoreToken): 1 + the number of tokens more likely than it.
  // 0 when not computed (sampled tokens).
  int rank = 0;
};

// log(sum(exp(logits))) over the finite and +inf entries (NaN and -inf carry no mass), and the
// `k` largest entries as (token, logit), largest first, ties by lowest id. One pass plus
// O(V log k). The log-probability of token t is then logits[t] - the normalizer.
struct LogSoftmaxSummary {
  double log_normalizer = 0;  // -inf when no entry has mass
  std::vector<std::pair<TokenId, float>> top;
};
LogSoftmaxSummary SummarizeLogits(absl::Span<const float> logits, int k);

// Sample() (sampler.h) that also fills `out` with the sampled token's log-probability and the
// params.logprobs most likely tokens, all read from the logits as they came in. Costs one more
// pass over the row and a copy of it.
absl::StatusOr<TokenId> SampleWithLogprobs(absl::Span<float> logits, const SamplingParams& params,
                                           SamplerState& state,
                                           absl::Span<const TokenId> banned_tokens,
                                           TokenLogprobs* out);

// The log-probability of `target` (a prompt token, given those before it) and the `k` most likely
// tokens, from raw logits; samples nothing. k in [0, 20].
TokenLogprobs ScoreToken(absl::Span<const float> logits, TokenId target, int k);

}  // namespace pagoda::sampling

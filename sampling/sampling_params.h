#pragma once

// A request's sampling parameters, their accepted ranges and their one validation: the engine's
// request vocabulary (engine::EngineRequest), read by every front end and by the runners.
// Sampling itself is sampling/sampler.h.

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/ids.h"

namespace pagoda::sampling {

// Temperatures below this are greedy (vLLM's _SAMPLING_EPS): dividing logits by them would
// overflow and the distribution is argmax up to rounding anyway.
inline constexpr float kGreedyTemperature = 1e-5f;

// The accepted ranges (ValidateSamplingParams). Bounded so that no accepted value can overflow
// a logit: a repetition penalty of 1e-38 used to divide logits into +inf.
inline constexpr float kMaxTemperature = 100.0f;       // vLLM: >= 0, unbounded; OpenAI: [0, 2]
inline constexpr float kMinRepetitionPenalty = 0.01f;  // vLLM: > 0
inline constexpr float kMaxRepetitionPenalty = 100.0f;
inline constexpr float kMaxLogitBias = 100.0f;  // OpenAI's documented [-100, 100]
inline constexpr int kMaxLogitBiasEntries = 1024;

// One request's sampling parameters. Defaults leave the distribution unchanged
// (temperature 1, no truncation, no penalties). Check them with ValidateSamplingParams()
// before the first Sample(); Sample() assumes they are valid.
struct SamplingParams {
  float temperature = 1.0f;         // [0, 100]; < kGreedyTemperature = greedy
  float top_p = 1.0f;               // (0, 1]; 1 = off
  int top_k = 0;                    // >= 0; 0 = off; >= vocab_size also means off
  float min_p = 0.0f;               // [0, 1]; 0 = off
  std::optional<uint64_t> seed;     // unset: seeded from a process-wide random source
  float repetition_penalty = 1.0f;  // [0.01, 100]; 1 = off
  float presence_penalty = 0.0f;    // [-2, 2]; 0 = off
  float frequency_penalty = 0.0f;   // [-2, 2]; 0 = off
  // At most 1024 (token, additive bias) pairs, 0 <= token < vocab_size, bias in [-100, 100].
  // A token listed twice gets both biases.
  std::vector<std::pair<TokenId, float>> logit_bias;
  // Log-probabilities of each sampled token (sampling/logprobs.h): -1 = none; 0 = the sampled
  // token's own; k in [1, 20] = also the k most likely tokens at its position.
  int logprobs = -1;
  // Log-probabilities of the prompt's tokens (each but the first, given those before it), with
  // as many alternatives: -1 = none, else in [0, 20]. The engine then computes the whole prompt
  // (no prefix-cache hit, as in vLLM): cached tokens have no logits.
  int prompt_logprobs = -1;
};

inline constexpr int kMaxLogprobs = 20;

// The one check of these ranges, for every front end: OK, or InvalidArgument whose message
// starts with the offending field's name, then ": " and the rule ("top_p: must be in (0, 1],
// got 0"; "logit_bias[300]: token id 300 is outside the vocabulary [0, 258)"). The engine
// prefixes "sampling.". `vocab_size` > 0 bounds the logit_bias tokens.
absl::Status ValidateSamplingParams(const SamplingParams& params, int vocab_size);

// True when Sample() (sampling/sampler.h) with `params` and no banned tokens is the argmax of the
// logits as they are (the largest, the lowest id among ties, NaN never), whatever the state:
// greedy, with no logit bias and no penalty. Whoever computes that argmax (a GPU runner, next to
// the logits) can then stand in for the sampler.
// Requests that ask for log-probabilities are never plain greedy: their rows need the whole
// distribution on the host.
bool IsPlainGreedy(const SamplingParams& params);

}  // namespace pagoda::sampling

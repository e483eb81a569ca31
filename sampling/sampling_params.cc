#include "sampling/sampling_params.h"

#include "absl/strings/str_format.h"

namespace pagoda::sampling {
namespace {

absl::Status FieldError(const char* field, const char* rule, double value) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: must be %s, got %g", field, rule, value));
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params, int vocab_size) {
  if (vocab_size <= 0) return FieldError("vocab_size", "> 0", vocab_size);
  // Written as !(ok) so that NaN fails every test.
  if (!(params.temperature >= 0.0f && params.temperature <= kMaxTemperature)) {
    return FieldError("temperature", "in [0, 100]", params.temperature);
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return FieldError("top_p", "in (0, 1]", params.top_p);
  }
  if (params.top_k < 0) return FieldError("top_k", ">= 0 (0 = off)", params.top_k);
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return FieldError("min_p", "in [0, 1]", params.min_p);
  }
  if (!(params.repetition_penalty >= kMinRepetitionPenalty &&
        params.repetition_penalty <= kMaxRepetitionPenalty)) {
    return FieldError("repetition_penalty", "in [0.01, 100]", params.repetition_penalty);
  }
  if (!(params.presence_penalty >= -2.0f && params.presence_penalty <= 2.0f)) {
    return FieldError("presence_penalty", "in [-2, 2]", params.presence_penalty);
  }
  if (!(params.frequency_penalty >= -2.0f && params.frequency_penalty <= 2.0f)) {
    return FieldError("frequency_penalty", "in [-2, 2]", params.frequency_penalty);
  }
  if (params.logprobs < -1 || params.logprobs > kMaxLogprobs) {
    return FieldError("logprobs", "in [0, 20], or -1 for none", params.logprobs);
  }
  if (params.prompt_logprobs < -1 || params.prompt_logprobs > kMaxLogprobs) {
    return FieldError("prompt_logprobs", "in [0, 20], or -1 for none", params.prompt_logprobs);
  }
  if (params.logit_bias.size() > static_cast<size_t>(kMaxLogitBiasEntries)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "logit_bias: at most %d entries, got %d", kMaxLogitBiasEntries, params.logit_bias.size()));
  }
  for (const auto& [token, bias] : params.logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("logit_bias[%d]: token id %d is outside the vocabulary [0, %d)", token,
                          token, vocab_size));
    }
    if (!(bias >= -kMaxLogitBias && bias <= kMaxLogitBias)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "logit_bias[%d]: must be finite and in [-100, 100], got %g", token, bias));
    }
  }
  return absl::OkStatus();
}

bool IsPlainGreedy(const SamplingParams& params) {
  return params.temperature < kGreedyTemperature && params.logit_bias.empty() &&
         params.repetition_penalty == 1.0f && params.presence_penalty == 0.0f &&
         params.frequency_penalty == 0.0f && params.logprobs < 0;
}

}  // namespace pagoda::sampling

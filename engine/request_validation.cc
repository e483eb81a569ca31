#include "engine/request_validation.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/error_reason.h"
#include "sampling/sampling_params.h"

namespace pagoda::engine {
namespace {

absl::Status OutsideVocabulary(absl::string_view field, int64_t id, int vocab_size) {
  return InvalidFieldError(
      absl::StrCat(field, ": token id ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
}

absl::Status ValidatePrompt(const EngineRequest& request, const EngineInfo& info) {
  const std::string& field = request.prompt_field;
  const std::vector<TokenId>& tokens = request.prompt_tokens;
  if (tokens.empty()) return InvalidFieldError(absl::StrCat(field, ": must not be empty"));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= info.vocab_size) {
      return OutsideVocabulary(absl::StrCat(field, "[", i, "]"), tokens[i], info.vocab_size);
    }
  }
  if (tokens.size() >= static_cast<size_t>(info.max_model_len)) {
    return PromptTooLongError(
        absl::StrCat(field, ": the prompt has ", tokens.size(),
                     " tokens; it must be shorter than max_model_len = ", info.max_model_len));
  }
  if (request.cache_salt.size() > static_cast<size_t>(kMaxCacheSaltBytes)) {
    return InvalidFieldError(absl::StrCat("cache_salt: at most ", kMaxCacheSaltBytes,
                                          " bytes, got ", request.cache_salt.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateLengths(const StoppingOptions& stopping, int num_prompt,
                             const EngineInfo& info) {
  if (stopping.max_tokens.has_value()) {
    const int max_tokens = *stopping.max_tokens;
    if (max_tokens < 1) {
      return InvalidFieldError(absl::StrCat("stopping.max_tokens: must be >= 1, got ", max_tokens));
    }
    if (!info.streaming && int64_t{num_prompt} + max_tokens > info.max_model_len) {
      return PromptTooLongError(absl::StrCat("stopping.max_tokens: the prompt's ", num_prompt,
                                             " tokens plus max_tokens = ", max_tokens,
                                             " exceed max_model_len = ", info.max_model_len));
    }
    if (stopping.min_tokens > max_tokens) {
      return InvalidFieldError(absl::StrCat("stopping.min_tokens: must be <= max_tokens = ",
                                            max_tokens, ", got ", stopping.min_tokens));
    }
  }
  if (stopping.min_tokens < 0) {
    return InvalidFieldError(
        absl::StrCat("stopping.min_tokens: must be >= 0, got ", stopping.min_tokens));
  }
  return absl::OkStatus();
}

absl::Status ValidateStops(const StoppingOptions& stopping, const EngineInfo& info) {
  const size_t num_stops = stopping.stop_strings.size();
  if (num_stops > static_cast<size_t>(kMaxStopStrings)) {
    return InvalidFieldError(
        absl::StrCat("stopping.stop: at most ", kMaxStopStrings, " stop strings, got ", num_stops));
  }
  if (num_stops > 0 && !info.has_tokenizer) {
    return absl::FailedPreconditionError(
        "stopping.stop: stop strings need a tokenizer and this model has none; use "
        "stopping.stop_token_ids instead");
  }
  for (size_t i = 0; i < num_stops; ++i) {
    const std::string& stop = stopping.stop_strings[i];
    const std::string field = absl::StrCat("stopping.stop[", i, "]");
    if (stop.empty()) return InvalidFieldError(absl::StrCat(field, ": must not be empty"));
    if (stop.size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return InvalidFieldError(
          absl::StrCat(field, ": at most ", kMaxStopStringBytes, " bytes, got ", stop.size()));
    }
  }
  const size_t num_ids = stopping.stop_token_ids.size();
  if (num_ids > static_cast<size_t>(kMaxStopTokenIds)) {
    return InvalidFieldError(absl::StrCat("stopping.stop_token_ids: at most ", kMaxStopTokenIds,
                                          " entries, got ", num_ids));
  }
  for (size_t i = 0; i < num_ids; ++i) {
    const TokenId id = stopping.stop_token_ids[i];
    if (id < 0 || id >= info.vocab_size) {
      return OutsideVocabulary(absl::StrCat("stopping.stop_token_ids[", i, "]"), id,
                               info.vocab_size);
    }
  }
  return absl::OkStatus();
}

// The blocks the request certainly needs: its prompt plus max_tokens (or one token). More than
// the whole cache can never be scheduled.
absl::Status ValidateFitsTheCache(const EngineRequest& request, const EngineInfo& info) {
  const int64_t tokens_needed = int64_t{static_cast<int64_t>(request.prompt_tokens.size())} +
                                request.stopping.max_tokens.value_or(1);
  int64_t blocks_needed = (tokens_needed + info.block_size - 1) / info.block_size;
  if (!info.kv_window.full()) {  // a window keeps its sinks, itself and a step's chunk alive
    const auto blocks = [&](int64_t tokens) {
      return (tokens + info.block_size - 1) / info.block_size;
    };
    blocks_needed = std::min(
        blocks_needed,
        blocks(info.kv_window.sink_tokens) +
            blocks(int64_t{info.kv_window.sliding_window} - 1 + info.max_num_batched_tokens) + 1);
  }
  if (blocks_needed <= info.num_kv_blocks) return absl::OkStatus();
  return WithErrorReason(
      absl::ResourceExhaustedError(
          absl::StrCat(request.prompt_field, ": the prompt plus max_tokens need ", tokens_needed,
                       " tokens (", blocks_needed, " KV blocks) but the whole KV cache holds ",
                       info.num_kv_blocks, " blocks of ", info.block_size, " tokens")),
      ErrorReason::kKvCacheTooSmall);
}

}  // namespace

absl::Status ValidateEngineRequest(const EngineRequest& request, const EngineInfo& info) {
  PAGODA_RETURN_IF_ERROR(ValidatePrompt(request, info));
  const int num_prompt = static_cast<int>(request.prompt_tokens.size());
  PAGODA_RETURN_IF_ERROR(ValidateLengths(request.stopping, num_prompt, info));
  PAGODA_RETURN_IF_ERROR(ValidateStops(request.stopping, info));
  if (absl::Status sampling = sampling::ValidateSamplingParams(request.sampling, info.vocab_size);
      !sampling.ok()) {
    return InvalidFieldError(absl::StrCat("sampling.", sampling.message()));
  }
  // The CUDA runner's logits buffer holds one row per running request; scoring a prompt needs a
  // row per prompt token.
  if (request.sampling.prompt_logprobs >= 0 && info.backend == "cuda") {
    return InvalidFieldError(
        "sampling.prompt_logprobs: not available on the CUDA backend in this version");
  }
  return ValidateFitsTheCache(request, info);
}

absl::Status TruncatePromptTokens(int64_t keep, const EngineInfo& info, const char* field,
                                  std::vector<TokenId>& tokens) {
  if (keep < 1 || keep > info.max_model_len - 1) {
    return InvalidFieldError(
        absl::StrCat(field, ": must be in [1, ", info.max_model_len - 1, "], got ", keep));
  }
  if (tokens.size() > static_cast<size_t>(keep)) tokens.erase(tokens.begin(), tokens.end() - keep);
  return absl::OkStatus();
}

}  // namespace pagoda::engine

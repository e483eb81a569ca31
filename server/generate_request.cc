#include "server/generate_request.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/error_reason.h"
#include "engine/request_identity.h"
#include "engine/request_validation.h"
#include "sampling/sampling_params.h"

namespace pagoda::server {
namespace {

absl::Status NeedsTokenizer(absl::string_view field, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(field, ": ", what,
                   " need a tokenizer and this server has none (ModelInfo.supports_text_input "
                   "is false); send token ids instead"));
}

// Wire ids are uint32; TokenId is int32. Ids of 2^31 and more, outside every vocabulary, stay
// outside it (saturated) for the engine's check to name them.
TokenId ToTokenId(uint32_t id) {
  return static_cast<TokenId>(std::min<uint32_t>(id, std::numeric_limits<TokenId>::max()));
}

// Translation only: the ranges are checked once, by the engine (sampling/sampling_params.h).
void ParseSampling(const v1::SamplingParams& in, int vocab_size, sampling::SamplingParams& out) {
  if (in.has_temperature()) out.temperature = in.temperature();
  if (in.has_top_p()) out.top_p = in.top_p();
  if (in.has_top_k()) {
    // Any value is valid: values >= vocab_size mean no limit, like 0.
    out.top_k = static_cast<int>(std::min<uint32_t>(in.top_k(), vocab_size));
    if (out.top_k == vocab_size) out.top_k = 0;
  }
  if (in.has_min_p()) out.min_p = in.min_p();
  if (in.has_seed()) out.seed = in.seed();
  if (in.has_repetition_penalty()) out.repetition_penalty = in.repetition_penalty();
  if (in.has_presence_penalty()) out.presence_penalty = in.presence_penalty();
  if (in.has_frequency_penalty()) out.frequency_penalty = in.frequency_penalty();
  // Map order is unspecified on the wire: sort, so that the first error and the order of the
  // biases are deterministic.
  std::vector<std::pair<uint32_t, float>> biases(in.logit_bias().begin(), in.logit_bias().end());
  std::sort(biases.begin(), biases.end());
  out.logit_bias.reserve(biases.size());
  for (const auto& [token, bias] : biases) out.logit_bias.emplace_back(ToTokenId(token), bias);
}

// Translation only, checked by the engine (engine/request_validation.h).
void ParseStopping(const v1::StoppingParams& in, const engine::EngineInfo& info,
                   engine::StoppingOptions& out) {
  if (in.has_max_tokens()) {
    out.max_tokens =
        static_cast<int>(std::min<uint32_t>(in.max_tokens(), std::numeric_limits<int>::max()));
  }
  // Without max_tokens, more than max_model_len is the same as max_model_len.
  out.min_tokens = static_cast<int>(std::min<uint32_t>(
      in.min_tokens(), out.max_tokens.has_value() ? std::numeric_limits<int>::max()
                                                  : static_cast<uint32_t>(info.max_model_len)));
  out.stop_strings.assign(in.stop().begin(), in.stop().end());
  out.stop_token_ids.reserve(in.stop_token_ids_size());
  for (const uint32_t id : in.stop_token_ids()) out.stop_token_ids.push_back(ToTokenId(id));
  out.ignore_eos = in.ignore_eos();
  out.include_stop_str_in_output = in.include_stop_str_in_output();
  out.keep_special_tokens = in.keep_special_tokens();
}

// The prompt's tokens, and the name the engine's errors give it.
absl::Status ParsePrompt(const v1::GenerateRequest& in, const engine::EngineInfo& info,
                         const tokenizer::Tokenizer* tokenizer, engine::EngineRequest& out) {
  switch (in.prompt_case()) {
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return engine::InvalidFieldError("prompt: required (set text or token_ids)");
    case v1::GenerateRequest::kText: {
      out.prompt_field = "text";
      if (tokenizer == nullptr) return NeedsTokenizer("text", "text prompts");
      if (in.text().empty()) return engine::InvalidFieldError("text: must not be empty");
      out.prompt_tokens = tokenizer->Encode(in.text(), in.no_add_special_tokens()
                                                           ? tokenizer::AddSpecialTokens::kNo
                                                           : tokenizer::AddSpecialTokens::kYes);
      if (out.prompt_tokens.empty()) return engine::InvalidFieldError("text: gives no tokens");
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      out.prompt_field = "token_ids.ids";
      const auto& ids = in.token_ids().ids();
      out.prompt_tokens.reserve(ids.size());
      for (const uint32_t id : ids) out.prompt_tokens.push_back(ToTokenId(id));
      break;
    }
  }
  if (in.has_truncate_prompt_tokens()) {
    return engine::TruncatePromptTokens(in.truncate_prompt_tokens(), info, "truncate_prompt_tokens",
                                        out.prompt_tokens);
  }
  return absl::OkStatus();
}

absl::Status ParseRequestFields(const v1::GenerateRequest& in) {
  if (in.n() > 1) {
    return absl::UnimplementedError(
        absl::StrCat("n: more than one output per request is not implemented, got ", in.n()));
  }
  if (in.logprobs().top_logprobs() > static_cast<uint32_t>(sampling::kMaxLogprobs)) {
    return engine::InvalidFieldError(absl::StrCat("logprobs.top_logprobs: must be in [0, ",
                                                  sampling::kMaxLogprobs, "], got ",
                                                  in.logprobs().top_logprobs()));
  }
  if (!in.extra().empty()) {
    // The smallest key, so the error is deterministic.
    std::string key = in.extra().begin()->first;
    for (const auto& [k, v] : in.extra()) key = std::min(key, k);
    return engine::InvalidFieldError(absl::StrCat(
        "extra[\"", absl::CHexEscape(key), "\"]: unknown key (no extension keys are defined)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<engine::EngineRequest> ParseGenerateRequest(const v1::GenerateRequest& request,
                                                           const engine::EngineInfo& info,
                                                           const tokenizer::Tokenizer* tokenizer) {
  PAGODA_RETURN_IF_ERROR(engine::CheckModelName(request.model(), info.model_name));
  PAGODA_RETURN_IF_ERROR(ParseRequestFields(request));
  engine::EngineRequest out;
  PAGODA_RETURN_IF_ERROR(ParsePrompt(request, info, tokenizer, out));
  ParseSampling(request.sampling(), info.vocab_size, out.sampling);
  ParseStopping(request.stopping(), info, out.stopping);
  out.sampling.logprobs =
      request.has_logprobs() ? static_cast<int>(request.logprobs().top_logprobs()) : -1;
  out.sampling.prompt_logprobs = request.logprobs().prompt_logprobs()
                                     ? static_cast<int>(request.logprobs().top_logprobs())
                                     : -1;
  out.cache_salt = request.cache_salt();
  out.priority = request.priority();
  out.detokenize = tokenizer != nullptr;
  return out;
}

}  // namespace pagoda::server

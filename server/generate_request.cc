#include "server/generate_request.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "model/utf8.h"
#include "server/error_reason.h"

namespace pagoda::server {
namespace {

absl::Status InvalidField(std::string message) {
  return WithErrorReason(absl::InvalidArgumentError(std::move(message)),
                         ErrorReason::kInvalidField);
}

absl::Status PromptTooLong(std::string message) {
  return WithErrorReason(absl::InvalidArgumentError(std::move(message)),
                         ErrorReason::kPromptTooLong);
}

absl::Status NeedsTokenizer(absl::string_view field, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(field, ": ", what,
                   " need a tokenizer and this server has none (ModelInfo.supports_text_input "
                   "is false); send token ids instead"));
}

absl::Status OutsideVocabulary(absl::string_view field, int64_t id, int vocab_size) {
  return InvalidField(
      absl::StrCat(field, ": token id ", id, " is outside the vocabulary [0, ", vocab_size, ")"));
}

// `ok` is the check, written by callers so that NaN fails it.
absl::Status CheckFloat(bool ok, absl::string_view field, absl::string_view rule, float value) {
  if (ok) return absl::OkStatus();
  return InvalidField(absl::StrCat(field, ": must be ", rule, ", got ", value));
}

absl::Status ParseSampling(const v1::SamplingParams& in, int vocab_size,
                           kernels::cpu::SamplingParams& out) {
  if (in.has_temperature()) {
    out.temperature = in.temperature();
    PAGODA_RETURN_IF_ERROR(CheckFloat(std::isfinite(out.temperature) && out.temperature >= 0.0f,
                                      "sampling.temperature", "finite and >= 0", out.temperature));
  }
  if (in.has_top_p()) {
    out.top_p = in.top_p();
    PAGODA_RETURN_IF_ERROR(CheckFloat(out.top_p > 0.0f && out.top_p <= 1.0f, "sampling.top_p",
                                      "in (0, 1]", out.top_p));
  }
  if (in.has_top_k()) {
    // Any value is valid: values >= vocab_size mean no limit, like 0.
    out.top_k = static_cast<int>(std::min<uint32_t>(in.top_k(), vocab_size));
    if (out.top_k == vocab_size) out.top_k = 0;
  }
  if (in.has_min_p()) {
    out.min_p = in.min_p();
    PAGODA_RETURN_IF_ERROR(CheckFloat(out.min_p >= 0.0f && out.min_p <= 1.0f, "sampling.min_p",
                                      "in [0, 1]", out.min_p));
  }
  if (in.has_seed()) out.seed = in.seed();
  if (in.has_repetition_penalty()) {
    out.repetition_penalty = in.repetition_penalty();
    PAGODA_RETURN_IF_ERROR(
        CheckFloat(std::isfinite(out.repetition_penalty) && out.repetition_penalty > 0.0f,
                   "sampling.repetition_penalty", "finite and > 0", out.repetition_penalty));
  }
  if (in.has_presence_penalty()) {
    out.presence_penalty = in.presence_penalty();
    PAGODA_RETURN_IF_ERROR(CheckFloat(out.presence_penalty >= -2.0f && out.presence_penalty <= 2.0f,
                                      "sampling.presence_penalty", "in [-2, 2]",
                                      out.presence_penalty));
  }
  if (in.has_frequency_penalty()) {
    out.frequency_penalty = in.frequency_penalty();
    PAGODA_RETURN_IF_ERROR(
        CheckFloat(out.frequency_penalty >= -2.0f && out.frequency_penalty <= 2.0f,
                   "sampling.frequency_penalty", "in [-2, 2]", out.frequency_penalty));
  }
  if (in.logit_bias_size() > kMaxLogitBiasEntries) {
    return InvalidField(absl::StrCat("sampling.logit_bias: at most ", kMaxLogitBiasEntries,
                                     " entries, got ", in.logit_bias_size()));
  }
  // Map order is unspecified on the wire: sort, so that the first error and the order of the
  // biases are deterministic.
  std::vector<std::pair<uint32_t, float>> biases(in.logit_bias().begin(), in.logit_bias().end());
  std::sort(biases.begin(), biases.end());
  for (const auto& [token, bias] : biases) {
    const std::string field = absl::StrCat("sampling.logit_bias[", token, "]");
    if (token >= static_cast<uint32_t>(vocab_size)) {
      return OutsideVocabulary(field, token, vocab_size);
    }
    PAGODA_RETURN_IF_ERROR(CheckFloat(std::isfinite(bias) && std::abs(bias) <= kMaxAbsLogitBias,
                                      field, "finite and in [-100, 100]", bias));
    out.logit_bias.emplace_back(static_cast<TokenId>(token), bias);
  }
  return absl::OkStatus();
}

absl::Status ParseStopStrings(const v1::StoppingParams& in, const model::Tokenizer* tokenizer,
                              engine::StoppingOptions& out) {
  if (in.stop_size() == 0) return absl::OkStatus();
  if (in.stop_size() > kMaxStopStrings) {
    return InvalidField(absl::StrCat("stopping.stop: at most ", kMaxStopStrings,
                                     " stop strings, got ", in.stop_size()));
  }
  if (tokenizer == nullptr) return NeedsTokenizer("stopping.stop", "stop strings");
  for (int i = 0; i < in.stop_size(); ++i) {
    const std::string& stop = in.stop(i);
    const std::string field = absl::StrCat("stopping.stop[", i, "]");
    if (stop.empty()) return InvalidField(absl::StrCat(field, ": must not be empty"));
    if (stop.size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return InvalidField(
          absl::StrCat(field, ": at most ", kMaxStopStringBytes, " bytes, got ", stop.size()));
    }
    if (!model::IsValidUtf8(stop)) {
      return InvalidField(absl::StrCat(field, ": must be valid UTF-8"));
    }
    out.stop_strings.push_back(stop);
  }
  return absl::OkStatus();
}

absl::Status ParseStopping(const v1::StoppingParams& in, int num_prompt_tokens,
                           const engine::EngineInfo& info, const model::Tokenizer* tokenizer,
                           engine::StoppingOptions& out) {
  if (in.has_max_tokens()) {
    if (in.max_tokens() < 1) {
      return InvalidField(absl::StrCat("stopping.max_tokens: must be >= 1, got ", in.max_tokens()));
    }
    if (int64_t{num_prompt_tokens} + in.max_tokens() > info.max_model_len) {
      return PromptTooLong(absl::StrCat("stopping.max_tokens: the prompt's ", num_prompt_tokens,
                                        " tokens plus max_tokens = ", in.max_tokens(),
                                        " exceed max_model_len = ", info.max_model_len));
    }
    out.max_tokens = static_cast<int>(in.max_tokens());
  }
  if (out.max_tokens.has_value() && in.min_tokens() > static_cast<uint32_t>(*out.max_tokens)) {
    return InvalidField(absl::StrCat("stopping.min_tokens: must be <= max_tokens = ",
                                     *out.max_tokens, ", got ", in.min_tokens()));
  }
  // Without max_tokens, more than max_model_len is the same as max_model_len.
  out.min_tokens = static_cast<int>(std::min<uint32_t>(in.min_tokens(), info.max_model_len));
  PAGODA_RETURN_IF_ERROR(ParseStopStrings(in, tokenizer, out));
  if (in.stop_token_ids_size() > kMaxStopTokenIds) {
    return InvalidField(absl::StrCat("stopping.stop_token_ids: at most ", kMaxStopTokenIds,
                                     " entries, got ", in.stop_token_ids_size()));
  }
  for (int i = 0; i < in.stop_token_ids_size(); ++i) {
    const uint32_t id = in.stop_token_ids(i);
    if (id >= static_cast<uint32_t>(info.vocab_size)) {
      return OutsideVocabulary(absl::StrCat("stopping.stop_token_ids[", i, "]"), id,
                               info.vocab_size);
    }
    out.stop_token_ids.push_back(static_cast<TokenId>(id));
  }
  out.ignore_eos = in.ignore_eos();
  out.include_stop_str_in_output = in.include_stop_str_in_output();
  out.keep_special_tokens = in.keep_special_tokens();
  return absl::OkStatus();
}

// The prompt's tokens, and the field path that names it in later errors.
absl::Status ParsePrompt(const v1::GenerateRequest& in, const engine::EngineInfo& info,
                         const model::Tokenizer* tokenizer, std::vector<TokenId>& tokens,
                         absl::string_view& field) {
  switch (in.prompt_case()) {
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return InvalidField("prompt: required (set text or token_ids)");
    case v1::GenerateRequest::kText: {
      field = "text";
      if (tokenizer == nullptr) return NeedsTokenizer(field, "text prompts");
      if (in.text().empty()) return InvalidField("text: must not be empty");
      if (!model::IsValidUtf8(in.text())) return InvalidField("text: must be valid UTF-8");
      tokens =
          tokenizer->Encode(in.text(), in.no_add_special_tokens() ? model::AddSpecialTokens::kNo
                                                                  : model::AddSpecialTokens::kYes);
      if (tokens.empty()) return InvalidField("text: gives no tokens");
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      field = "token_ids.ids";
      const auto& ids = in.token_ids().ids();
      if (ids.empty()) return InvalidField("token_ids.ids: must not be empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] >= static_cast<uint32_t>(info.vocab_size)) {
          return OutsideVocabulary(absl::StrCat("token_ids.ids[", i, "]"), ids[i], info.vocab_size);
        }
      }
      tokens.assign(ids.begin(), ids.end());
      break;
    }
  }
  if (in.has_truncate_prompt_tokens()) {
    const uint32_t keep = in.truncate_prompt_tokens();
    if (keep < 1 || keep > static_cast<uint32_t>(info.max_model_len - 1)) {
      return InvalidField(absl::StrCat("truncate_prompt_tokens: must be in [1, ",
                                       info.max_model_len - 1, "], got ", keep));
    }
    if (tokens.size() > keep) tokens.erase(tokens.begin(), tokens.end() - keep);
  }
  if (tokens.size() >= static_cast<size_t>(info.max_model_len)) {
    return PromptTooLong(
        absl::StrCat(field, ": the prompt has ", tokens.size(),
                     " tokens; it must be shorter than max_model_len = ", info.max_model_len));
  }
  return absl::OkStatus();
}

absl::Status ParseRequestFields(const v1::GenerateRequest& in) {
  if (in.n() > 1) {
    return absl::UnimplementedError(
        absl::StrCat("n: more than one output per request is not implemented, got ", in.n()));
  }
  if (in.has_logprobs()) {
    return absl::UnimplementedError("logprobs: log-probabilities are not implemented");
  }
  if (!in.extra().empty()) {
    // The smallest key, so the error is deterministic.
    std::string key = in.extra().begin()->first;
    for (const auto& [k, v] : in.extra()) key = std::min(key, k);
    return InvalidField(absl::StrCat("extra[\"", absl::CHexEscape(key),
                                     "\"]: unknown key (no extension keys are defined)"));
  }
  if (in.cache_salt().size() > static_cast<size_t>(kMaxCacheSaltBytes)) {
    return InvalidField(absl::StrCat("cache_salt: at most ", kMaxCacheSaltBytes, " bytes, got ",
                                     in.cache_salt().size()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestId(absl::string_view id, absl::string_view field) {
  if (id.empty()) return InvalidField(absl::StrCat(field, ": must not be empty"));
  if (id.size() > static_cast<size_t>(kMaxRequestIdBytes)) {
    return InvalidField(
        absl::StrCat(field, ": at most ", kMaxRequestIdBytes, " bytes, got ", id.size()));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(id[i]);
    if (c < 0x21 || c > 0x7e) {
      return InvalidField(absl::StrFormat(
          "%s: must be printable ASCII without spaces (0x21-0x7E), got byte 0x%02X at %d", field, c,
          i));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveRequestId(absl::string_view request_id,
                                             std::optional<absl::string_view> header) {
  if (!request_id.empty()) {
    PAGODA_RETURN_IF_ERROR(ValidateRequestId(request_id, "request_id"));
    return std::string(request_id);
  }
  if (header.has_value() && !header->empty()) {
    PAGODA_RETURN_IF_ERROR(ValidateRequestId(*header, "x-request-id"));
    return std::string(*header);
  }
  return NewRequestId();
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static std::mt19937_64* rng ABSL_GUARDED_BY(mu) = nullptr;
  uint64_t hi = 0;
  uint64_t lo = 0;
  {
    absl::MutexLock lock(&mu);
    if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());  // never freed
    hi = (*rng)();
    lo = (*rng)();
  }
  hi = (hi & ~uint64_t{0xf000}) | 0x4000;                      // version 4
  lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);  // variant 10xx
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                         lo >> 48, lo & 0xffffffffffffULL);
}

absl::Status CheckModelName(absl::string_view requested, absl::string_view served) {
  if (requested.empty() || requested == served) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("model: \"", absl::CHexEscape(requested),
                                          "\" is not served; this server serves \"", served, "\""));
}

absl::StatusOr<engine::EngineRequest> ParseGenerateRequest(const v1::GenerateRequest& request,
                                                           const engine::EngineInfo& info,
                                                           const model::Tokenizer* tokenizer) {
  PAGODA_RETURN_IF_ERROR(CheckModelName(request.model(), info.model_name));
  PAGODA_RETURN_IF_ERROR(ParseRequestFields(request));
  engine::EngineRequest out;
  absl::string_view prompt_field;
  PAGODA_RETURN_IF_ERROR(ParsePrompt(request, info, tokenizer, out.prompt_tokens, prompt_field));
  const int num_prompt_tokens = static_cast<int>(out.prompt_tokens.size());
  PAGODA_RETURN_IF_ERROR(ParseSampling(request.sampling(), info.vocab_size, out.sampling));
  PAGODA_RETURN_IF_ERROR(
      ParseStopping(request.stopping(), num_prompt_tokens, info, tokenizer, out.stopping));

  // The blocks the request certainly needs: its prompt plus max_tokens (or one token). More
  // than the whole cache can never be scheduled.
  const int64_t min_tokens_needed =
      int64_t{num_prompt_tokens} + out.stopping.max_tokens.value_or(1);
  const int64_t blocks_needed = (min_tokens_needed + info.block_size - 1) / info.block_size;
  if (blocks_needed > info.num_kv_blocks) {
    return WithErrorReason(
        absl::ResourceExhaustedError(
            absl::StrCat(prompt_field, ": the prompt plus max_tokens need ", min_tokens_needed,
                         " tokens (", blocks_needed, " KV blocks) but the whole KV cache holds ",
                         info.num_kv_blocks, " blocks of ", info.block_size, " tokens")),
        ErrorReason::kKvCacheTooSmall);
  }

  out.cache_salt = request.cache_salt();
  out.priority = request.priority();
  out.detokenize = tokenizer != nullptr;
  return out;
}

}  // namespace pagoda::server

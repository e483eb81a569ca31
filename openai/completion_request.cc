#include "openai/completion_request.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/request_validation.h"
#include "nlohmann/json.hpp"
#include "openai/json_fields.h"
#include "openai/sampling_fields.h"

namespace pagoda::openai {
namespace {

using nlohmann::json;

constexpr int64_t kMaxTokenId = std::numeric_limits<TokenId>::max();

absl::Status NeedsTokenizer(absl::string_view field, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      field, ": ", what, " need a tokenizer and this model has none; send token ids instead"));
}

// Token ids of one prompt given as an array of integers; ids outside the vocabulary are left
// for the engine to name. Negative ids become -1, which no vocabulary has.
absl::Status TokenIds(const json& array, const std::string& field, std::vector<TokenId>& out) {
  out.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const json& item = array[i];
    if (!item.is_number_integer()) {
      return FieldError(absl::StrCat(field, "[", i, "]"),
                        absl::StrCat("must be a token id (an integer), got ", JsonTypeName(item)));
    }
    const int64_t id =
        item.is_number_unsigned()
            ? static_cast<int64_t>(std::min<uint64_t>(item.get<uint64_t>(), kMaxTokenId))
            : std::clamp<int64_t>(item.get<int64_t>(), -1, kMaxTokenId);
    out.push_back(static_cast<TokenId>(id));
  }
  if (out.empty()) return FieldError(field, "must not be empty");
  return absl::OkStatus();
}

// One prompt as the engine takes it, and its name in errors ("prompt", "prompt[2]").
struct PromptForm {
  std::string field;
  std::optional<std::string> text;  // a text prompt
  std::vector<TokenId> tokens;      // a token prompt
};

// The four forms of `prompt`: a string, an array of strings, an array of token ids, an array
// of arrays of token ids.
absl::StatusOr<std::vector<PromptForm>> PromptForms(const json* prompt) {
  constexpr absl::string_view kForms =
      "must be a string, an array of strings, an array of token ids or an array of arrays of "
      "token ids";
  if (prompt == nullptr) return FieldError("prompt", "required");
  std::vector<PromptForm> forms;
  if (prompt->is_string()) {
    forms.push_back({.field = "prompt", .text = prompt->get<std::string>()});
    return forms;
  }
  if (!prompt->is_array())
    return FieldError("prompt", absl::StrCat(kForms, ", got ", JsonTypeName(*prompt)));
  if (prompt->empty()) return FieldError("prompt", "must not be empty");
  const json& first = prompt->front();
  if (first.is_number()) {
    PromptForm form{.field = "prompt"};
    PAGODA_RETURN_IF_ERROR(TokenIds(*prompt, "prompt", form.tokens));
    forms.push_back(std::move(form));
    return forms;
  }
  if (prompt->size() > kMaxPrompts) {
    return FieldError("prompt",
                      absl::StrCat("at most ", kMaxPrompts, " prompts, got ", prompt->size()));
  }
  for (size_t i = 0; i < prompt->size(); ++i) {
    const json& item = (*prompt)[i];
    PromptForm form{.field = absl::StrCat("prompt[", i, "]")};
    if (item.is_string() && first.is_string()) {
      form.text = item.get<std::string>();
    } else if (item.is_array() && first.is_array()) {
      PAGODA_RETURN_IF_ERROR(TokenIds(item, form.field, form.tokens));
    } else {
      return FieldError(form.field, absl::StrCat(kForms, "; this item is ", JsonTypeName(item)));
    }
    forms.push_back(std::move(form));
  }
  return forms;
}

// The engine's prompt tokens of one form.
absl::Status Tokenize(PromptForm& form, bool add_special_tokens,
                      const tokenizer::Tokenizer* tokenizer) {
  if (!form.text.has_value()) return absl::OkStatus();
  if (tokenizer == nullptr) return NeedsTokenizer(form.field, "text prompts");
  if (form.text->empty()) return FieldError(form.field, "must not be empty");
  form.tokens =
      tokenizer->Encode(*form.text, add_special_tokens ? tokenizer::AddSpecialTokens::kYes
                                                       : tokenizer::AddSpecialTokens::kNo);
  if (form.tokens.empty()) return FieldError(form.field, "gives no tokens");
  return absl::OkStatus();
}

// The fields /v1/completions does not implement, refused by name unless at their defaults.
absl::Status RefuseUnimplemented(JsonFields& fields) {
  PAGODA_RETURN_IF_ERROR(
      fields.OnlyValue("best_of", 1, "more than one candidate per prompt is not implemented"));
  PAGODA_RETURN_IF_ERROR(fields.OnlyValue("suffix", json(), "suffixes are not supported"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body,
                                                         const engine::EngineInfo& info,
                                                         const tokenizer::Tokenizer* tokenizer) {
  PAGODA_ASSIGN_OR_RETURN(const json object, ParseJsonObject(body));
  JsonFields fields(object);
  CompletionRequest out;
  std::optional<std::string> model;
  PAGODA_RETURN_IF_ERROR(fields.String("model", model));
  out.model = model.value_or("");
  PAGODA_RETURN_IF_ERROR(RefuseUnimplemented(fields));
  PAGODA_RETURN_IF_ERROR(
      ParseStreamFields(fields, out.stream, out.include_usage, out.continuous_usage_stats));
  PAGODA_ASSIGN_OR_RETURN(std::vector<PromptForm> forms, PromptForms(fields.Get("prompt")));

  std::optional<bool> echo;
  std::optional<bool> add_special_tokens;
  std::optional<int64_t> truncate;
  PAGODA_RETURN_IF_ERROR(fields.Bool("echo", echo));
  PAGODA_RETURN_IF_ERROR(fields.Bool("add_special_tokens", add_special_tokens));
  PAGODA_RETURN_IF_ERROR(fields.Int("truncate_prompt_tokens", std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max(), truncate));
  out.echo = echo.value_or(false);
  if (out.echo && tokenizer == nullptr) return NeedsTokenizer("echo", "echoed prompts");
  std::optional<int64_t> logprobs;
  PAGODA_RETURN_IF_ERROR(fields.Int("logprobs", 0, sampling::kMaxLogprobs, logprobs));
  std::optional<int64_t> prompt_logprobs;
  PAGODA_RETURN_IF_ERROR(fields.Int("prompt_logprobs", 0, sampling::kMaxLogprobs, prompt_logprobs));

  // The options every prompt shares, read once.
  engine::EngineRequest shared;
  PAGODA_RETURN_IF_ERROR(ParseSamplingFields(fields, info, shared));
  PAGODA_RETURN_IF_ERROR(
      ParseMaxTokens(fields, "max_tokens", kDefaultCompletionMaxTokens, shared.stopping));
  shared.detokenize = tokenizer != nullptr;
  shared.sampling.logprobs = logprobs.has_value() ? static_cast<int>(*logprobs) : -1;
  out.logprobs = shared.sampling.logprobs;
  out.prompt_logprobs = prompt_logprobs.has_value() ? static_cast<int>(*prompt_logprobs) : -1;
  // Echoed log-probabilities are the prompt's: the engine scores it with the larger k.
  shared.sampling.prompt_logprobs = std::max(out.prompt_logprobs, out.echo ? out.logprobs : -1);

  for (PromptForm& form : forms) {
    PAGODA_RETURN_IF_ERROR(Tokenize(form, add_special_tokens.value_or(true), tokenizer));
    if (truncate.has_value()) {
      PAGODA_RETURN_IF_ERROR(
          engine::TruncatePromptTokens(*truncate, info, "truncate_prompt_tokens", form.tokens));
    }
    if (out.echo) {
      out.echo_texts.push_back(
          form.text.has_value()
              ? *form.text
              : tokenizer->Decode(form.tokens, tokenizer::SkipSpecialTokens::kYes));
    }
    engine::EngineRequest request = shared;
    request.prompt_tokens = std::move(form.tokens);
    request.prompt_field = form.field;
    out.prompts.push_back(std::move(request));
  }
  PAGODA_RETURN_IF_ERROR(ParseN(fields, out.prompts.size(), out.n));
  out.prompts = FanOut(std::move(out.prompts), out.n);
  if (out.echo && out.n > 1) {
    std::vector<std::string> texts;
    for (const std::string& text : out.echo_texts) texts.insert(texts.end(), out.n, text);
    out.echo_texts = std::move(texts);
  }
  out.unknown_fields = fields.UnknownFields();
  return out;
}

}  // namespace pagoda::openai

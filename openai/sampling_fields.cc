#include "openai/sampling_fields.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pagoda::openai {
namespace {

using nlohmann::json;

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr int64_t kIntMin = std::numeric_limits<int>::min();

absl::Status ReadFloat(JsonFields& fields, absl::string_view name, float& out) {
  std::optional<double> value;
  PAGODA_RETURN_IF_ERROR(fields.Number(name, value));
  if (value.has_value()) out = static_cast<float>(*value);
  return absl::OkStatus();
}

absl::Status ParseTopK(JsonFields& fields, int vocab_size, int& out) {
  std::optional<int64_t> top_k;
  PAGODA_RETURN_IF_ERROR(fields.Int("top_k", -1, std::numeric_limits<int64_t>::max(), top_k));
  if (!top_k.has_value() || *top_k <= 0 || *top_k >= vocab_size) {
    out = 0;  // off: -1 (vLLM), 0, or the whole vocabulary
  } else {
    out = static_cast<int>(*top_k);
  }
  return absl::OkStatus();
}

// {"token id": bias, ...}, sorted by token so that the first error is deterministic.
absl::Status ParseLogitBias(JsonFields& fields, std::vector<std::pair<TokenId, float>>& out) {
  const json* bias = fields.Get("logit_bias");
  if (bias == nullptr) return absl::OkStatus();
  if (!bias->is_object()) {
    return FieldError("logit_bias", absl::StrCat("must be an object of token id to bias, got ",
                                                 JsonTypeName(*bias)));
  }
  for (const auto& [key, value] : bias->items()) {
    const std::string field = absl::StrCat("logit_bias[\"", absl::CHexEscape(key), "\"]");
    int64_t token = 0;
    if (!absl::SimpleAtoi(key, &token)) return FieldError(field, "keys must be token ids");
    if (!value.is_number()) {
      return FieldError(field, absl::StrCat("must be a number, got ", JsonTypeName(value)));
    }
    out.emplace_back(static_cast<TokenId>(std::clamp<int64_t>(token, -1, kIntMax)),
                     static_cast<float>(value.get<double>()));
  }
  std::sort(out.begin(), out.end());
  return absl::OkStatus();
}

absl::Status ParseStopping(JsonFields& fields, engine::StoppingOptions& out) {
  PAGODA_RETURN_IF_ERROR(fields.Strings("stop", engine::kMaxStopStrings, out.stop_strings));
  std::vector<int64_t> stop_ids;
  PAGODA_RETURN_IF_ERROR(
      fields.Ints("stop_token_ids", engine::kMaxStopTokenIds, -1, kIntMax, stop_ids));
  for (const int64_t id : stop_ids) out.stop_token_ids.push_back(static_cast<TokenId>(id));
  std::optional<bool> ignore_eos;
  std::optional<bool> include_stop;
  std::optional<bool> skip_special;
  std::optional<int64_t> min_tokens;
  PAGODA_RETURN_IF_ERROR(fields.Bool("ignore_eos", ignore_eos));
  PAGODA_RETURN_IF_ERROR(fields.Bool("include_stop_str_in_output", include_stop));
  PAGODA_RETURN_IF_ERROR(fields.Bool("skip_special_tokens", skip_special));
  PAGODA_RETURN_IF_ERROR(fields.Int("min_tokens", 0, kIntMax, min_tokens));
  fields.Get("spaces_between_special_tokens");  // vLLM's default behaviour, always
  out.ignore_eos = ignore_eos.value_or(false);
  out.include_stop_str_in_output = include_stop.value_or(false);
  out.keep_special_tokens = !skip_special.value_or(true);
  out.min_tokens = static_cast<int>(min_tokens.value_or(0));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<json> ParseJsonObject(absl::string_view body) {
  json object = json::parse(body.begin(), body.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return FieldError("body", "not valid JSON");
  if (!object.is_object()) {
    return FieldError("body", absl::StrCat("must be a JSON object, got ", JsonTypeName(object)));
  }
  return object;
}

absl::Status ParseSamplingFields(JsonFields& fields, const engine::EngineInfo& info,
                                 engine::EngineRequest& out) {
  sampling::SamplingParams& sampling = out.sampling;
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "temperature", sampling.temperature));
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "top_p", sampling.top_p));
  PAGODA_RETURN_IF_ERROR(ParseTopK(fields, info.vocab_size, sampling.top_k));
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "min_p", sampling.min_p));
  PAGODA_RETURN_IF_ERROR(fields.Uint64("seed", sampling.seed));
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "repetition_penalty", sampling.repetition_penalty));
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "presence_penalty", sampling.presence_penalty));
  PAGODA_RETURN_IF_ERROR(ReadFloat(fields, "frequency_penalty", sampling.frequency_penalty));
  PAGODA_RETURN_IF_ERROR(ParseLogitBias(fields, sampling.logit_bias));
  PAGODA_RETURN_IF_ERROR(ParseStopping(fields, out.stopping));
  std::optional<int64_t> priority;
  std::optional<std::string> cache_salt;
  std::optional<std::string> user;
  PAGODA_RETURN_IF_ERROR(fields.Int("priority", kIntMin, kIntMax, priority));
  PAGODA_RETURN_IF_ERROR(fields.String("cache_salt", cache_salt));
  PAGODA_RETURN_IF_ERROR(fields.String("user", user));  // for the client's records only
  out.priority = static_cast<int>(priority.value_or(0));
  out.cache_salt = cache_salt.value_or("");
  return absl::OkStatus();
}

absl::Status ParseN(JsonFields& fields, size_t num_prompts, int& n) {
  std::optional<int64_t> value;
  PAGODA_RETURN_IF_ERROR(fields.Int("n", 1, kMaxChoicesPerPrompt, value));
  n = static_cast<int>(value.value_or(1));
  if (num_prompts * static_cast<size_t>(n) > kMaxChoices) {
    return FieldError("n", absl::StrCat("prompts × n must be at most ", kMaxChoices, ", got ",
                                        num_prompts, " × ", n));
  }
  return absl::OkStatus();
}

std::vector<engine::EngineRequest> FanOut(std::vector<engine::EngineRequest> prompts, int n) {
  if (n <= 1) return prompts;
  std::vector<engine::EngineRequest> out;
  out.reserve(prompts.size() * static_cast<size_t>(n));
  for (engine::EngineRequest& prompt : prompts) {
    for (int j = 0; j < n; ++j) {
      engine::EngineRequest copy = prompt;
      if (copy.sampling.seed.has_value()) *copy.sampling.seed += static_cast<uint64_t>(j);
      out.push_back(std::move(copy));
    }
  }
  return out;
}

absl::Status ParseStreamFields(JsonFields& fields, bool& stream, bool& include_usage,
                               bool& continuous_usage_stats) {
  std::optional<bool> stream_field;
  PAGODA_RETURN_IF_ERROR(fields.Bool("stream", stream_field));
  stream = stream_field.value_or(false);
  const json* options = fields.Get("stream_options");
  if (options == nullptr) return absl::OkStatus();
  if (!stream) return FieldError("stream_options", "only allowed with \"stream\": true");
  if (!options->is_object()) {
    return FieldError("stream_options",
                      absl::StrCat("must be an object, got ", JsonTypeName(*options)));
  }
  JsonFields option_fields(*options);
  std::optional<bool> include;
  std::optional<bool> continuous;
  PAGODA_RETURN_IF_ERROR(option_fields.Bool("include_usage", include));
  PAGODA_RETURN_IF_ERROR(option_fields.Bool("continuous_usage_stats", continuous));
  include_usage = include.value_or(false);
  continuous_usage_stats = continuous.value_or(false);
  return absl::OkStatus();
}

absl::Status ParseMaxTokens(JsonFields& fields, absl::string_view name, int default_value,
                            engine::StoppingOptions& out) {
  const bool present = fields.Present(name);
  std::optional<int64_t> max_tokens;
  PAGODA_RETURN_IF_ERROR(fields.Int(name, 1, std::numeric_limits<int64_t>::max(), max_tokens));
  if (max_tokens.has_value()) {
    out.max_tokens = static_cast<int>(std::min(*max_tokens, kIntMax));
  } else if (!present && default_value > 0) {
    out.max_tokens = default_value;
  }
  return absl::OkStatus();
}

}  // namespace pagoda::openai

#include "openai/logprobs_json.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace pagoda::openai {
namespace {

using nlohmann::json;

constexpr float kMinLogprob = -9999.0f;

float Clamp(float logprob) { return std::max(logprob, kMinLogprob); }

int CodePoints(const std::string& text) {
  // Valid UTF-8: count the bytes that do not continue a sequence.
  return static_cast<int>(
      std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

json Bytes(const std::string& text) {
  json bytes = json::array();
  for (const char c : text) bytes.push_back(static_cast<unsigned char>(c));
  return bytes;
}

}  // namespace

std::string LogprobsJson::TokenString(TokenId id) const {
  if (tokenizer_ == nullptr) return absl::StrCat("token_id:", id);
  const TokenId ids[] = {id};
  return common::SanitizeUtf8(tokenizer_->Decode(ids, tokenizer::SkipSpecialTokens::kNo));
}

namespace {

// The four parallel arrays of a completions `logprobs` object, filled token by token.
struct CompletionColumns {
  json tokens = json::array();
  json token_logprobs = json::array();
  json top_logprobs = json::array();
  json text_offset = json::array();

  void Add(const std::string& token, json logprob, json top, int* offset) {
    tokens.push_back(token);
    token_logprobs.push_back(std::move(logprob));
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(*offset);
    *offset += CodePoints(token);
  }
  // A scored token: its top_logprobs dict holds up to `k` alternatives and the token itself.
  void AddScored(const LogprobsJson& strings, const sampling::TokenLogprobs& lp, size_t k,
                 int* offset) {
    json top = json::object();
    for (size_t i = 0; i < lp.top.size() && i < k; ++i) {
      top[strings.TokenString(lp.top[i].first)] = Clamp(lp.top[i].second);
    }
    const std::string token = strings.TokenString(lp.token);
    top[token] = Clamp(lp.logprob);
    Add(token, Clamp(lp.logprob), std::move(top), offset);
  }
  json Take() {
    return {{"tokens", std::move(tokens)},
            {"token_logprobs", std::move(token_logprobs)},
            {"top_logprobs", std::move(top_logprobs)},
            {"text_offset", std::move(text_offset)}};
  }
};

}  // namespace

json LogprobsJson::Make(absl::Span<const sampling::TokenLogprobs> logprobs,
                        int* text_offset) const {
  if (options_.chat) {
    json content = json::array();
    for (const sampling::TokenLogprobs& lp : logprobs) {
      const std::string token = TokenString(lp.token);
      json top = json::array();
      for (const auto& [id, logprob] : lp.top) {
        const std::string text = TokenString(id);
        top.push_back({{"token", text}, {"logprob", Clamp(logprob)}, {"bytes", Bytes(text)}});
      }
      content.push_back({{"token", token},
                         {"logprob", Clamp(lp.logprob)},
                         {"bytes", Bytes(token)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  CompletionColumns columns;
  for (const sampling::TokenLogprobs& lp : logprobs) {
    columns.AddScored(*this, lp, lp.top.size(), text_offset);
  }
  return columns.Take();
}

json LogprobsJson::ChoiceLogprobs(TokenId first_prompt_token,
                                  absl::Span<const sampling::TokenLogprobs> prompt,
                                  absl::Span<const sampling::TokenLogprobs> output,
                                  int* text_offset) const {
  if (options_.logprobs < 0) return nullptr;
  if (options_.chat || !options_.echo || prompt.empty()) return Make(output, text_offset);
  // Echoed: the prompt's tokens first (the first has no log-probability), its alternatives cut
  // to the request's k (the engine scored it with the larger of the two k).
  CompletionColumns columns;
  columns.Add(TokenString(first_prompt_token), nullptr, nullptr, text_offset);
  const size_t k = static_cast<size_t>(options_.logprobs);
  for (const sampling::TokenLogprobs& lp : prompt) columns.AddScored(*this, lp, k, text_offset);
  for (const sampling::TokenLogprobs& lp : output) {
    columns.AddScored(*this, lp, lp.top.size(), text_offset);
  }
  return columns.Take();
}

json LogprobsJson::PromptLogprobs(absl::Span<const sampling::TokenLogprobs> prompt) const {
  json out = json::array({nullptr});
  for (const sampling::TokenLogprobs& lp : prompt) {
    json entry = json::object();
    for (size_t i = 0; i < lp.top.size() && static_cast<int>(i) < options_.prompt_logprobs; ++i) {
      entry[std::to_string(lp.top[i].first)] = {{"logprob", Clamp(lp.top[i].second)},
                                                {"rank", i + 1},
                                                {"decoded_token", TokenString(lp.top[i].first)}};
    }
    entry[std::to_string(lp.token)] = {{"logprob", Clamp(lp.logprob)},
                                       {"rank", lp.rank},
                                       {"decoded_token", TokenString(lp.token)}};
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace pagoda::openai

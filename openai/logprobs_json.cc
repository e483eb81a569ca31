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

json LogprobsJson::Make(absl::Span<const sampling::TokenLogprobs> logprobs,
                        int* text_offset) const {
  if (chat_) {
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
  json tokens = json::array();
  json token_logprobs = json::array();
  json top_logprobs = json::array();
  json offsets = json::array();
  for (const sampling::TokenLogprobs& lp : logprobs) {
    const std::string token = TokenString(lp.token);
    tokens.push_back(token);
    token_logprobs.push_back(Clamp(lp.logprob));
    json top = json::object();
    for (const auto& [id, logprob] : lp.top) top[TokenString(id)] = Clamp(logprob);
    top[token] = Clamp(lp.logprob);
    top_logprobs.push_back(std::move(top));
    offsets.push_back(*text_offset);
    *text_offset += CodePoints(token);
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace pagoda::openai

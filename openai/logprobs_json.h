#pragma once

#include <string>

#include "absl/types/span.h"
#include "common/ids.h"
#include "nlohmann/json_fwd.hpp"
#include "sampling/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::openai {

// The `logprobs` object of a choice (docs/openai_api.md, "Log-probabilities"), vLLM's shapes:
//   completions: {"tokens": [str], "token_logprobs": [float], "top_logprobs": [{str: float}],
//                 "text_offset": [int]}; each top_logprobs dict holds the k most likely tokens
//                 and the sampled one;
//   chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
//          "bytes"}]}]}, top_logprobs the k most likely.
// A token's string is its own decoding (special tokens included, invalid UTF-8 replaced by
// U+FFFD), or "token_id:<id>" without a tokenizer. -inf becomes -9999.0, as vLLM reports it.
// Thread-compatible; reads the tokenizer (immutable) only.
class LogprobsJson {
 public:
  LogprobsJson(const tokenizer::Tokenizer* tokenizer, bool chat)
      : tokenizer_(tokenizer), chat_(chat) {}

  // The object for `logprobs`, the next tokens of one choice. For completions, `text_offset`
  // is the choice's text length so far in code points (Python's len), advanced past them.
  nlohmann::json Make(absl::Span<const sampling::TokenLogprobs> logprobs, int* text_offset) const;

  std::string TokenString(TokenId id) const;

 private:
  const tokenizer::Tokenizer* tokenizer_;
  bool chat_;
};

}  // namespace pagoda::openai

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
//
// With completions' `echo` and `logprobs`, the prompt's tokens come first: the first with null
// log-probability and null top_logprobs, the others scored (engine prompt log-probabilities).
// vLLM's `prompt_logprobs` (PromptLogprobs) is [null, {"<id>": {"logprob", "rank",
// "decoded_token"}}, ...]: per prompt token but the first, the token and its k alternatives.
class LogprobsJson {
 public:
  struct Options {
    bool chat = false;
    int logprobs = -1;         // k of each output token's alternatives; -1: no `logprobs`
    int prompt_logprobs = -1;  // k of vLLM's `prompt_logprobs`; -1: none
    bool echo = false;         // completions: the prompt's entries lead `logprobs`
  };
  LogprobsJson(const tokenizer::Tokenizer* tokenizer, Options options)
      : tokenizer_(tokenizer), options_(options) {}

  bool wants_prompt_logprobs() const { return options_.prompt_logprobs >= 0; }

  // The object for `logprobs`, the next tokens of one choice. For completions, `text_offset`
  // is the choice's text length so far in code points (Python's len), advanced past them.
  nlohmann::json Make(absl::Span<const sampling::TokenLogprobs> logprobs, int* text_offset) const;
  // A choice's `logprobs` (null without options.logprobs): Make(output), led with echo by the
  // prompt's entries when `prompt` is not empty (its first token is `first_prompt_token`).
  nlohmann::json ChoiceLogprobs(TokenId first_prompt_token,
                                absl::Span<const sampling::TokenLogprobs> prompt,
                                absl::Span<const sampling::TokenLogprobs> output,
                                int* text_offset) const;
  // vLLM's `prompt_logprobs` of a choice.
  nlohmann::json PromptLogprobs(absl::Span<const sampling::TokenLogprobs> prompt) const;

  std::string TokenString(TokenId id) const;

 private:
  const tokenizer::Tokenizer* tokenizer_;
  Options options_;
};

}  // namespace pagoda::openai

#pragma once

// The body of POST /v1/completions (vLLM's and OpenAI's shapes, docs/openai_api.md) translated
// into engine requests, and the sampling and stopping fields that the chat endpoint shares.
// Only the translation and what only the wire can tell (types, the prompt's forms, fields not
// implemented) is checked here; every range and limit is the engine's one validation
// (engine/request_validation.h), which Engine::Submit runs. Pure functions over immutable
// state: thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/engine_info.h"
#include "engine/engine_request.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::openai {

// At most this many prompts in one request (each is one choice).
inline constexpr size_t kMaxPrompts = 256;
// OpenAI's default max_tokens for completions.
inline constexpr int kDefaultCompletionMaxTokens = 16;

struct CompletionRequest {
  std::string model;  // empty: the served model
  // One engine request per prompt, in order (the choice index is the position). Not yet
  // validated: hand each to Engine::Submit.
  std::vector<engine::EngineRequest> prompts;
  // With `echo`: each prompt's text, which its choice's text starts with.
  bool echo = false;
  std::vector<std::string> echo_texts;
  int n = 1;  // choices per prompt: `prompts` holds each prompt n times in a row
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  bool continuous_usage_stats = false;  // stream_options.continuous_usage_stats
  // `logprobs` (completions) or top_logprobs when `logprobs` is true (chat); -1: none.
  int logprobs = -1;
  // vLLM's `prompt_logprobs` (completions); -1: none.
  int prompt_logprobs = -1;
  // Fields present that Pagoda does not know: accepted (as vLLM does) and logged.
  std::vector<std::string> unknown_fields;
};

// Parses `body` for the served model. `tokenizer` may be null (text prompts are then refused).
// Errors (InvalidArgument with ErrorReason kInvalidField unless said): the body is not JSON or
// not an object ("body: ..."); a field of the wrong type or form, named; best_of,
// suffix other than their defaults (not implemented); stream_options without stream;
// FailedPrecondition for text prompts or echo without a tokenizer.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body,
                                                         const engine::EngineInfo& info,
                                                         const tokenizer::Tokenizer* tokenizer);

}  // namespace pagoda::openai

#pragma once

// The one semantic check of a request, shared by every front end (gRPC today, OpenAI HTTP
// next) and by the engine itself: Engine::Submit calls it once, and nothing downstream
// (EngineCore::AddRequest, the scheduler) checks again. Front ends keep only what their wire
// needs: presence, encoding (UTF-8), their own field names and sizes, and translation.
//
// Pure functions over their arguments: thread-safe.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/ids.h"
#include "engine/engine_info.h"
#include "engine/engine_request.h"

namespace pagoda::engine {

// OK, or the first error, its message naming the field in the client's vocabulary (the
// prompt as request.prompt_field, then "stopping.*", "sampling.*", "cache_salt") followed by
// ": " and the rule, with an ErrorReason (engine/error_reason.h) attached:
// - InvalidArgument, kInvalidField: an empty prompt, a token id outside the vocabulary, a
//   stopping or sampling option outside its range, a limit of engine_request.h exceeded;
// - InvalidArgument, kPromptTooLong: the prompt, or the prompt plus max_tokens, does not fit
//   max_model_len;
// - FailedPrecondition: stop strings when the engine has no tokenizer;
// - ResourceExhausted, kKvCacheTooSmall: the prompt plus max_tokens (or one token) needs more
//   blocks than the whole KV cache holds, so it could never be scheduled.
absl::Status ValidateEngineRequest(const EngineRequest& request, const EngineInfo& info);

// Keeps the last `keep` tokens of `tokens` (vLLM's truncate_prompt_tokens); `keep` must be in
// [1, max_model_len - 1], else InvalidArgument naming `field`.
absl::Status TruncatePromptTokens(int64_t keep, const EngineInfo& info, const char* field,
                                  std::vector<TokenId>& tokens);

}  // namespace pagoda::engine

#pragma once

// The JSON the OpenAI front end answers with (docs/openai_api.md): errors, usage, and the
// completion objects, whole and as server-sent-event chunks. Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/engine_request.h"
#include "http/http_server.h"
#include "nlohmann/json_fwd.hpp"
#include "openai/logprobs_json.h"

namespace pagoda::openai {

// The HTTP status of a refusal or failure: 400 InvalidArgument, FailedPrecondition and a request
// that can never fit (kKvCacheTooSmall); 401 Unauthenticated; 404 NotFound; 429 other
// ResourceExhausted (a full queue, too many large requests at once);
// 501 Unimplemented; 503 Unavailable (loading, draining); 499 Cancelled; else 500.
int HttpStatusOf(const absl::Status& status);

// {"error": {"message", "type", "param", "code"}}: the message with the engine's field prefixes
// ("sampling.", "stopping.") dropped, so that fields carry their OpenAI names; `param` is the
// field the message starts with, or null; `code` the error reason in lower case
// ("invalid_field", "queue_full"), or null.
std::string ErrorJson(const absl::Status& status);

// The whole error response; 429 carries Retry-After (whole seconds, at least 1).
http::Response ErrorResponse(const absl::Status& status, absl::Duration retry_after);

// "data: <json>\n\n", and the stream's last event.
std::string SseEvent(absl::string_view json);
inline constexpr absl::string_view kSseDone = "data: [DONE]\n\n";

// What every object of one response shares.
struct ResponseIds {
  std::string id;       // "cmpl-<request id>"
  int64_t created = 0;  // Unix seconds
  std::string model;
  bool chat = false;  // chat.completion objects ("chatcmpl-" ids), else text_completion
  int n = 1;          // choices per prompt: usage counts each prompt's tokens once
};

// One finished choice of a completion.
struct ChoiceResult {
  std::string text;                // echoed prompt included
  TokenId first_prompt_token = 0;  // for echoed log-probabilities
  engine::RequestCompletion completion;
};

// "stop", "length" or "abort".
absl::string_view FinishReasonName(engine::FinishReason reason);

// A text_completion chunk (a chat.completion.chunk with ids.chat, whose delta holds the text)
// with one choice: `text`, and when `finished` is not null its
// finish_reason and stop_reason (else null); with `usage`, a usage object.
// With `logprobs` (not null), the choice's logprobs object (openai/logprobs_json.h), else null;
// with `prompt_logprobs`, vLLM's field of that name.
std::string CompletionChunkJson(const ResponseIds& ids, int index, absl::string_view text,
                                const engine::RequestCompletion* finished,
                                const engine::Usage* usage,
                                const nlohmann::json* logprobs = nullptr,
                                const nlohmann::json* prompt_logprobs = nullptr);
// A chat stream's first chunk of a choice: its delta names the role.
std::string ChatRoleChunkJson(const ResponseIds& ids, int index);
// The last chunk of a stream with include_usage: no choices, the total usage.
std::string CompletionUsageChunkJson(const ResponseIds& ids, const engine::Usage& usage);
// A whole text_completion object. With `logprobs` (not null), each choice's logprobs object
// (LogprobsJson::ChoiceLogprobs) and, when asked for, its prompt_logprobs
// from its completion's log-probabilities (null when it has none).
std::string CompletionJson(const ResponseIds& ids, const std::vector<ChoiceResult>& choices,
                           const LogprobsJson* logprobs = nullptr);

// The sum of every choice's completion tokens, and of each prompt's tokens once (choices
// i*n .. i*n+n-1 share prompt i, as vLLM counts them).
engine::Usage TotalUsage(const std::vector<ChoiceResult>& choices, int n = 1);

}  // namespace pagoda::openai

#pragma once

// The body of POST /v1/chat/completions (OpenAI's and vLLM's shapes, docs/openai_api.md): the
// conversation rendered into a prompt with the model's chat template (chat_template/), then one
// engine request with the sampling and stopping fields /v1/completions shares. As there, the
// engine's one validation checks every range when the request is submitted. Pure functions
// over immutable state: thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "chat_template/chat_template.h"
#include "engine/engine_info.h"
#include "engine/engine_request.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::openai {

// At most this many messages in one conversation.
inline constexpr size_t kMaxMessages = 4096;

struct ChatRequest {
  std::string model;             // empty: the served model
  engine::EngineRequest prompt;  // the conversation's request (render endpoints read it)
  int n = 1;                     // choices
  // `prompt` n times (FanOut): what is submitted, not yet validated (Engine::Submit does).
  std::vector<engine::EngineRequest> prompts;
  std::string prompt_text;  // the rendered conversation
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage_stats = false;
  // top_logprobs when `logprobs` is true, else -1 (also in each prompt's sampling.logprobs).
  int logprobs = -1;
  std::vector<std::string> unknown_fields;
};

// What rendering needs besides the body.
struct ChatContext {
  const engine::EngineInfo* info = nullptr;
  const tokenizer::Tokenizer* tokenizer = nullptr;          // null: chat is refused
  const chat_template::ChatTemplates* templates = nullptr;  // null or empty: refused
  absl::Time now;                                           // strftime_now()
};

// Parses `body` and renders its conversation. Errors (InvalidArgument with kInvalidField unless
// said): a field of the wrong type or form, named ("messages[2].content: ..."); content parts
// other than text; tool_choice "required" or a named function, top_logprobs without logprobs, a
// response_format other than text (not implemented); FailedPrecondition when the model has no
// tokenizer or no chat template; a template error (its line, or raise_exception's message) as
// an InvalidArgument naming "messages".
absl::StatusOr<ChatRequest> ParseChatRequest(absl::string_view body, const ChatContext& context);

// The conversation of a chat body (messages, tools, documents, add_generation_prompt,
// continue_final_message, chat_template_kwargs) as the renderer takes it; `chat_template`
// (a per-request template) goes to `source` when present. Shared with /tokenize's messages.
absl::StatusOr<chat_template::RenderRequest> ChatRenderRequest(absl::string_view body,
                                                               std::string& source);

// Renders `render` with the request's template (`source`, when not empty) or the model's.
absl::StatusOr<std::string> RenderChat(const chat_template::RenderRequest& render,
                                       const std::string& source, const ChatContext& context);

}  // namespace pagoda::openai

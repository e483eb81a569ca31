#include "openai/responses.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/error_reason.h"
#include "nlohmann/json.hpp"

namespace pagoda::openai {
namespace {

using nlohmann::json;

// Never throws: invalid UTF-8 (which the engine never produces) would be replaced.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::string_view ErrorType(int http_status) {
  switch (http_status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 499:
      return "cancelled";
    case 503:
      return "service_unavailable_error";
    case 500:
      return "server_error";
    case 501:
      return "not_implemented_error";
    default:
      return "invalid_request_error";
  }
}

// The message with the engine's own prefixes dropped: "sampling.top_p: ..." is "top_p: ...".
std::string ClientMessage(absl::string_view message) {
  for (absl::string_view prefix :
       {absl::string_view("sampling."), absl::string_view("stopping.")}) {
    if (absl::StartsWith(message, prefix)) return std::string(message.substr(prefix.size()));
  }
  return std::string(message);
}

// The field a message names ("top_p" of "top_p: must be..."), if it starts with one.
std::optional<std::string> FieldOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return std::nullopt;
  const absl::string_view field = message.substr(0, colon);
  if (field.find(' ') != absl::string_view::npos) return std::nullopt;
  return std::string(field);
}

json UsageObject(const engine::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}}};
}

// The stop string or token that ended a choice (vLLM's stop_reason), or null (EOS, length).
json StopReason(const engine::RequestCompletion& completion) {
  switch (completion.stop_kind) {
    case engine::StopKind::kStopString:
      return completion.stop_string;
    case engine::StopKind::kStopTokenId:
      return completion.stop_token_id;
    default:
      return nullptr;
  }
}

// The fields every object shares; chat chunks and whole chat objects have their own names.
json Envelope(const ResponseIds& ids, bool chunk = false) {
  const char* object = !ids.chat ? "text_completion"
                       : chunk   ? "chat.completion.chunk"
                                 : "chat.completion";
  return {{"id", ids.id}, {"object", object}, {"created", ids.created}, {"model", ids.model}};
}

}  // namespace

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      // A request that can never fit is the client's to change; the rest (a full queue) pass.
      return engine::GetErrorReason(status) == engine::ErrorReason::kKvCacheTooSmall ? 400 : 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kCancelled:
      return 499;
    default:
      return 500;
  }
}

std::string ErrorJson(const absl::Status& status) {
  const std::string message = ClientMessage(status.message());
  const int http_status = HttpStatusOf(status);
  json error = {{"message", message},
                {"type", std::string(ErrorType(http_status))},
                {"param", nullptr},
                {"code", nullptr}};
  if (std::optional<std::string> field = FieldOf(message);
      field.has_value() && http_status == 400) {
    error["param"] = *field;
  }
  if (std::optional<engine::ErrorReason> reason = engine::GetErrorReason(status)) {
    error["code"] = absl::AsciiStrToLower(engine::ErrorReasonName(*reason));
  } else if (http_status == 401) {
    error["code"] = "invalid_api_key";
  } else if (http_status == 404 && absl::StartsWith(message, "model: ")) {
    error["code"] = "model_not_found";
  }
  return Dump({{"error", std::move(error)}});
}

http::Response ErrorResponse(const absl::Status& status, absl::Duration retry_after) {
  http::Response response;
  response.status = HttpStatusOf(status);
  response.body = ErrorJson(status);
  if (response.status == 429) {
    const int64_t seconds =
        std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(retry_after, absl::Seconds(1))));
    response.headers.emplace_back("Retry-After", absl::StrCat(seconds));
  }
  if (response.status == 401) response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

std::string SseEvent(absl::string_view json_text) {
  return absl::StrCat("data: ", json_text, "\n\n");
}

absl::string_view FinishReasonName(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kStop:
      return "stop";
    case engine::FinishReason::kLength:
      return "length";
    case engine::FinishReason::kAbort:
      break;
  }
  return "abort";
}

std::string CompletionChunkJson(const ResponseIds& ids, int index, absl::string_view text,
                                const engine::RequestCompletion* finished,
                                const engine::Usage* usage, const json* logprobs,
                                const json* prompt_logprobs) {
  json choice = {{"index", index}};
  if (ids.chat) {
    // The finishing chunk of a chat choice has an empty delta when it brings no text.
    choice["delta"] =
        text.empty() && finished != nullptr ? json::object() : json{{"content", std::string(text)}};
  } else {
    choice["text"] = std::string(text);
  }
  choice["logprobs"] = logprobs != nullptr ? *logprobs : json(nullptr);
  if (prompt_logprobs != nullptr) choice["prompt_logprobs"] = *prompt_logprobs;
  choice["finish_reason"] = nullptr;
  choice["stop_reason"] = nullptr;
  if (finished != nullptr) {
    choice["finish_reason"] = std::string(FinishReasonName(finished->finish_reason));
    choice["stop_reason"] = StopReason(*finished);
  }
  json chunk = Envelope(ids, /*chunk=*/true);
  chunk["choices"] = json::array({std::move(choice)});
  if (usage != nullptr) chunk["usage"] = UsageObject(*usage);
  return Dump(chunk);
}

std::string ChatRoleChunkJson(const ResponseIds& ids, int index) {
  json chunk = Envelope(ids, /*chunk=*/true);
  chunk["choices"] = json::array({{{"index", index},
                                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
  return Dump(chunk);
}

std::string CompletionUsageChunkJson(const ResponseIds& ids, const engine::Usage& usage) {
  json chunk = Envelope(ids, /*chunk=*/true);
  chunk["choices"] = json::array();
  chunk["usage"] = UsageObject(usage);
  return Dump(chunk);
}

std::string CompletionJson(const ResponseIds& ids, const std::vector<ChoiceResult>& choices,
                           const LogprobsJson* logprobs) {
  json array = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const engine::RequestCompletion& completion = choices[i].completion;
    json choice = {{"index", i}};
    if (ids.chat) {
      choice["message"] = {
          {"role", "assistant"}, {"content", choices[i].text}, {"tool_calls", json::array()}};
    } else {
      choice["text"] = choices[i].text;
    }
    int text_offset = 0;
    choice["logprobs"] =
        logprobs != nullptr
            ? logprobs->ChoiceLogprobs(choices[i].first_prompt_token, completion.prompt_logprobs,
                                       completion.logprobs, &text_offset)
            : json(nullptr);
    if (logprobs != nullptr && logprobs->wants_prompt_logprobs()) {
      choice["prompt_logprobs"] = logprobs->PromptLogprobs(completion.prompt_logprobs);
    }
    choice["finish_reason"] = std::string(FinishReasonName(completion.finish_reason));
    choice["stop_reason"] = StopReason(completion);
    array.push_back(std::move(choice));
  }
  json object = Envelope(ids);
  object["choices"] = std::move(array);
  object["usage"] = UsageObject(TotalUsage(choices, ids.n));
  return Dump(object);
}

engine::Usage TotalUsage(const std::vector<ChoiceResult>& choices, int n) {
  engine::Usage total;
  for (size_t i = 0; i < choices.size(); ++i) {
    const engine::Usage& usage = choices[i].completion.usage;
    total.completion_tokens += usage.completion_tokens;
    if (n > 1 && i % static_cast<size_t>(n) != 0) continue;
    total.prompt_tokens += usage.prompt_tokens;
    total.cached_prompt_tokens += usage.cached_prompt_tokens;
  }
  return total;
}

}  // namespace pagoda::openai

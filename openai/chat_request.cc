#include "openai/chat_request.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "chat_template/json_value.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "openai/json_fields.h"
#include "openai/sampling_fields.h"

namespace pagoda::openai {
namespace {

using chat_template::Value;
using nlohmann::json;
using nlohmann::ordered_json;

// OpenAI's content forms: a string, null, or an array of parts, of which we take text parts
// (joined with "\n", as vLLM renders text-only content for templates that expect a string).
// Null (an assistant turn that only calls tools) becomes "", which every template can print and
// test ("None" would be printed, and Qwen3's `'</think>' in content` fails on it).
absl::Status NormalizeContent(ordered_json& message, const std::string& field) {
  auto content = message.find("content");
  if (content != message.end() && content->is_null()) *content = "";
  if (content == message.end() || content->is_string()) return absl::OkStatus();
  if (!content->is_array()) {
    return FieldError(field + ".content", absl::StrCat("must be a string, an array of parts or "
                                                       "null, got ",
                                                       JsonTypeName(json(*content))));
  }
  std::vector<std::string> texts;
  for (size_t j = 0; j < content->size(); ++j) {
    const ordered_json& part = (*content)[j];
    const std::string part_field = absl::StrCat(field, ".content[", j, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return FieldError(part_field, "must be an object with a \"type\"");
    }
    if (part["type"] != "text") {
      return FieldError(part_field + ".type",
                        absl::StrCat("only \"text\" parts are supported (this model takes no ",
                                     part["type"].get<std::string>(), ")"));
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return FieldError(part_field + ".text", "must be a string");
    }
    texts.push_back(part["text"].get<std::string>());
  }
  *content = absl::StrJoin(texts, "\n");
  return absl::OkStatus();
}

// Tool calls' arguments given as a JSON string become objects, as vLLM hands them to templates
// (Llama 3.1's prints `arguments | tojson`); a string that is not a JSON object stays a string.
void ParseToolCallArguments(ordered_json& message) {
  auto calls = message.find("tool_calls");
  if (calls == message.end() || !calls->is_array()) return;
  for (ordered_json& call : *calls) {
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
    ordered_json& function = call["function"];
    if (!function.contains("arguments") || !function["arguments"].is_string()) continue;
    ordered_json parsed = ordered_json::parse(function["arguments"].get<std::string>(), nullptr,
                                              /*allow_exceptions=*/false);
    if (parsed.is_object()) function["arguments"] = std::move(parsed);
  }
}

absl::StatusOr<Value> Messages(ordered_json* messages) {
  if (messages == nullptr) return FieldError("messages", "required");
  if (!messages->is_array()) {
    return FieldError("messages",
                      absl::StrCat("must be an array, got ", JsonTypeName(json(*messages))));
  }
  if (messages->empty()) return FieldError("messages", "must not be empty");
  if (messages->size() > kMaxMessages) {
    return FieldError("messages",
                      absl::StrCat("at most ", kMaxMessages, " messages, got ", messages->size()));
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    ordered_json& message = (*messages)[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return FieldError(field, "must be an object");
    if (!message.contains("role") || !message["role"].is_string()) {
      return FieldError(field + ".role", "required, a string");
    }
    PAGODA_RETURN_IF_ERROR(NormalizeContent(message, field));
    ParseToolCallArguments(message);
  }
  absl::StatusOr<Value> value = chat_template::FromJson(*messages);
  if (!value.ok()) return FieldError("messages", value.status().message());
  return value;
}

// The optional array field `name` (tools, documents) as a value, None when absent or null.
absl::StatusOr<Value> OptionalArray(ordered_json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return Value::None();
  if (!it->is_array()) {
    return FieldError(name, absl::StrCat("must be an array, got ", JsonTypeName(json(*it))));
  }
  absl::StatusOr<Value> value = chat_template::FromJson(*it);
  if (!value.ok()) return FieldError(name, value.status().message());
  return value;
}

absl::StatusOr<bool> OptionalBool(const ordered_json& object, const char* name, bool fallback) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return FieldError(name, absl::StrCat("must be a boolean, got ", JsonTypeName(json(*it))));
  }
  return it->get<bool>();
}

// The fields /v1/chat/completions reads that are not sampling or stopping fields, marked known,
// and the ones it does not implement, refused by name unless at their defaults.
absl::Status CheckChatFields(JsonFields& fields) {
  for (const char* name :
       {"messages", "tools", "documents", "add_generation_prompt", "continue_final_message",
        "chat_template", "chat_template_kwargs", "parallel_tool_calls"}) {
    (void)fields.Get(name);
  }
  PAGODA_RETURN_IF_ERROR(fields.OnlyValue("echo", false, "echo is not implemented for chat"));
  PAGODA_RETURN_IF_ERROR(fields.OnlyValue("response_format", json{{"type", "text"}},
                                          "structured output is not implemented yet"));
  const json* tool_choice = fields.Get("tool_choice");
  if (tool_choice != nullptr && *tool_choice != "none" && *tool_choice != "auto") {
    return FieldError("tool_choice",
                      "only \"auto\" and \"none\" are supported (forcing a tool call needs "
                      "guided decoding, which is not implemented)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<chat_template::RenderRequest> ChatRenderRequest(absl::string_view body,
                                                               std::string& source) {
  // A second parse keeps the objects' key order, which templates print (tojson of a tool's
  // schema) and which Python keeps.
  ordered_json object = ordered_json::parse(body.begin(), body.end(), nullptr, false);
  if (!object.is_object()) return FieldError("body", "must be a JSON object");
  chat_template::RenderRequest render;
  auto messages = object.find("messages");
  PAGODA_ASSIGN_OR_RETURN(render.messages,
                          Messages(messages == object.end() ? nullptr : &*messages));
  PAGODA_ASSIGN_OR_RETURN(render.tools, OptionalArray(object, "tools"));
  PAGODA_ASSIGN_OR_RETURN(render.documents, OptionalArray(object, "documents"));
  PAGODA_ASSIGN_OR_RETURN(render.add_generation_prompt,
                          OptionalBool(object, "add_generation_prompt", true));
  PAGODA_ASSIGN_OR_RETURN(render.continue_final_message,
                          OptionalBool(object, "continue_final_message", false));
  auto kwargs = object.find("chat_template_kwargs");
  if (kwargs != object.end() && !kwargs->is_null()) {
    if (!kwargs->is_object()) return FieldError("chat_template_kwargs", "must be an object");
    for (const auto& [name, value] : kwargs->items()) {
      absl::StatusOr<Value> converted = chat_template::FromJson(value);
      if (!converted.ok()) return FieldError("chat_template_kwargs", converted.status().message());
      render.kwargs.Set(name, *std::move(converted));
    }
  }
  auto custom = object.find("chat_template");
  if (custom != object.end() && !custom->is_null()) {
    if (!custom->is_string()) return FieldError("chat_template", "must be a string");
    source = custom->get<std::string>();
  }
  return render;
}

absl::StatusOr<std::string> RenderChat(const chat_template::RenderRequest& render,
                                       const std::string& source, const ChatContext& context) {
  if (context.tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        "messages: chat needs a tokenizer and this model has none; use /v1/completions with "
        "token ids");
  }
  absl::StatusOr<std::string> text;
  if (!source.empty()) {
    absl::StatusOr<chat_template::ChatTemplate> parsed = chat_template::ChatTemplate::Parse(source);
    if (!parsed.ok()) return FieldError("chat_template", parsed.status().message());
    const chat_template::Dict no_specials;
    text =
        parsed->Render(context.templates != nullptr ? context.templates->specials() : no_specials,
                       render, context.now);
  } else if (context.templates == nullptr || !context.templates->Has()) {
    return absl::FailedPreconditionError(
        "messages: this model has no chat template; start pagodad with --chat-template, send "
        "\"chat_template\" in the request, or render the conversation yourself and use "
        "/v1/completions");
  } else {
    text = context.templates->Render(render, context.now);
  }
  // A template's error is the conversation's: raise_exception's message as the template wrote
  // it, or what failed and where.
  if (!text.ok()) return FieldError("messages", text.status().message());
  return text;
}

absl::StatusOr<ChatRequest> ParseChatRequest(absl::string_view body, const ChatContext& context) {
  PAGODA_ASSIGN_OR_RETURN(const json object, ParseJsonObject(body));
  JsonFields fields(object);
  ChatRequest out;
  std::optional<std::string> model;
  PAGODA_RETURN_IF_ERROR(fields.String("model", model));
  out.model = model.value_or("");
  PAGODA_RETURN_IF_ERROR(CheckChatFields(fields));
  PAGODA_RETURN_IF_ERROR(
      ParseStreamFields(fields, out.stream, out.include_usage, out.continuous_usage_stats));
  std::optional<bool> add_special_tokens;
  PAGODA_RETURN_IF_ERROR(fields.Bool("add_special_tokens", add_special_tokens));

  engine::EngineRequest& prompt = out.prompt;
  PAGODA_RETURN_IF_ERROR(ParseSamplingFields(fields, *context.info, prompt));
  // max_completion_tokens is OpenAI's current name; max_tokens the older one. Neither: no
  // limit but the model's length.
  PAGODA_RETURN_IF_ERROR(fields.Present("max_completion_tokens")
                             ? ParseMaxTokens(fields, "max_completion_tokens", 0, prompt.stopping)
                             : ParseMaxTokens(fields, "max_tokens", 0, prompt.stopping));
  (void)fields.Get("max_tokens");
  std::optional<bool> logprobs;
  std::optional<int64_t> top_logprobs;
  PAGODA_RETURN_IF_ERROR(fields.Bool("logprobs", logprobs));
  PAGODA_RETURN_IF_ERROR(fields.Int("top_logprobs", 0, sampling::kMaxLogprobs, top_logprobs));
  if (top_logprobs.has_value() && !logprobs.value_or(false)) {
    return FieldError("top_logprobs", "needs \"logprobs\": true");
  }
  out.logprobs = logprobs.value_or(false) ? static_cast<int>(top_logprobs.value_or(0)) : -1;
  prompt.sampling.logprobs = out.logprobs;

  std::string source;
  PAGODA_ASSIGN_OR_RETURN(chat_template::RenderRequest render, ChatRenderRequest(body, source));
  PAGODA_ASSIGN_OR_RETURN(out.prompt_text, RenderChat(render, source, context));
  // The template writes the special tokens it wants (vLLM's default for chat is no more).
  prompt.prompt_tokens = context.tokenizer->Encode(
      out.prompt_text, add_special_tokens.value_or(false) ? tokenizer::AddSpecialTokens::kYes
                                                          : tokenizer::AddSpecialTokens::kNo);
  if (prompt.prompt_tokens.empty()) return FieldError("messages", "the rendered prompt is empty");
  prompt.prompt_field = "messages";
  prompt.detokenize = true;
  PAGODA_RETURN_IF_ERROR(ParseN(fields, 1, out.n));
  out.prompts = FanOut({prompt}, out.n);
  out.unknown_fields = fields.UnknownFields();
  return out;
}

}  // namespace pagoda::openai

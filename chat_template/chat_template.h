#pragma once

// A model's chat template: parsed once when the model loads, rendered per request the way
// Hugging Face transformers' apply_chat_template renders it (docs/chat_templates.md).
//
// Thread rule: a ChatTemplate and a ChatTemplates are immutable once made; Render may run on
// any number of threads at once.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "chat_template/ast.h"
#include "chat_template/interpreter.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

// What one render gets. Values usually come from the request's JSON (FromJson).
struct RenderRequest {
  Value messages;               // a list of message dicts
  Value tools = Value::None();  // a list of tool dicts, or None
  Value documents = Value::None();
  bool add_generation_prompt = false;
  // Cut the output right after the final message's text, so the model continues it.
  bool continue_final_message = false;
  // The request's chat_template_kwargs: more template variables (they override the special
  // tokens; naming messages, tools, documents or add_generation_prompt is an error).
  Dict kwargs;
};

class ChatTemplate {
 public:
  // Parses `source`; an error names the line and column, or the unsupported construct.
  static absl::StatusOr<ChatTemplate> Parse(absl::string_view source);

  // Renders with `specials` (bos_token, eos_token, ... as strings) and `request`. `now` is
  // what strftime_now() formats (UTC). An error is an InvalidArgument naming the template's
  // line, or raise_exception()'s message as written (with kRaisedPayload); a bound passed is
  // ResourceExhausted.
  absl::StatusOr<std::string> Render(const Dict& specials, const RenderRequest& request,
                                     absl::Time now, const RenderLimits& limits = {}) const;

  const std::string& source() const { return *source_; }

 private:
  std::shared_ptr<const std::string> source_;
  std::shared_ptr<const Body> body_;
};

// The chat templates of a Hugging Face model folder: `chat_template.jinja` when present,
// otherwise tokenizer_config.json's `chat_template` (a string, or a list of named templates),
// and the config's special tokens.
class ChatTemplates {
 public:
  // Loads from `model_dir`. A model without any template yields an empty ChatTemplates (Has()
  // false), not an error; a template that does not parse is an error.
  static absl::StatusOr<ChatTemplates> Load(const std::string& model_dir);
  // One template from `source` (the daemon's --chat-template) with `specials`.
  static absl::StatusOr<ChatTemplates> FromSource(absl::string_view source, Dict specials);
  // Reads tokenizer_config.json's special tokens (bos_token, ...; AddedToken dicts give their
  // content) from `config_json`.
  static absl::StatusOr<Dict> SpecialTokensFromConfig(absl::string_view config_json);

  bool Has() const { return !templates_.empty(); }
  // The template to use: "tool_use" when the request has tools and the model names one, else
  // "default" (or the only one). Null when there is none, or several and none is "default".
  const ChatTemplate* Select(bool has_tools) const;
  const Dict& specials() const { return specials_; }

  // Selects and renders.
  absl::StatusOr<std::string> Render(const RenderRequest& request, absl::Time now,
                                     const RenderLimits& limits = {}) const;

 private:
  std::vector<std::pair<std::string, ChatTemplate>> templates_;
  Dict specials_;
};

}  // namespace pagoda::chat_template

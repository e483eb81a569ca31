#include "chat_template/chat_template.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "chat_template/lexer.h"
#include "chat_template/parser.h"
#include "chat_template/text.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pagoda::chat_template {
namespace {

// The special tokens transformers passes to every render (special_tokens_map).
constexpr absl::string_view kSpecialTokenNames[] = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};

// transformers' continue_final_message: keep the output up to the end of the final message's
// text, so the model's next token continues it.
absl::StatusOr<std::string> CutAfterFinalMessage(std::string rendered, const Value& messages) {
  if (!messages.is_list() || messages.list().empty() || !messages.list().back().is_dict()) {
    return absl::InvalidArgumentError("continue_final_message: there is no final message");
  }
  const Value* content = messages.list().back().dict().Find("content");
  std::string final_text;
  if (content != nullptr && content->is_string()) {
    final_text = content->string_value();
  } else if (content != nullptr && content->is_list()) {
    bool found = false;
    for (auto it = content->list().rbegin(); it != content->list().rend() && !found; ++it) {
      if (!it->is_dict()) continue;
      if (const Value* text = it->dict().Find("text")) {
        final_text = text->Str();
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          "continue_final_message: the final message has no text to continue");
    }
  } else {
    return absl::InvalidArgumentError("continue_final_message: the final message has no content");
  }
  const std::string stripped = PyStrip(final_text, std::nullopt, StripSide::kBoth);
  const size_t at = rendered.rfind(stripped);
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(
        "continue_final_message: the final message does not appear in the rendered chat");
  }
  const std::string lstripped = PyStrip(final_text, std::nullopt, StripSide::kLeft);
  // Python compares rendered[at : at + len(lstripped)] with the whole text: equal when the
  // text has no leading whitespace and the template kept its trailing whitespace.
  if (rendered.compare(at, lstripped.size(), final_text) == 0) {
    rendered.resize(at + lstripped.size());
  } else {
    rendered.resize(at + stripped.size());
  }
  return rendered;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(absl::string_view source) {
  PAGODA_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  PAGODA_ASSIGN_OR_RETURN(Body body, chat_template::Parse(tokens));
  ChatTemplate parsed;
  parsed.source_ = std::make_shared<const std::string>(source);
  parsed.body_ = std::make_shared<const Body>(std::move(body));
  return parsed;
}

absl::StatusOr<std::string> ChatTemplate::Render(const Dict& specials, const RenderRequest& request,
                                                 absl::Time now, const RenderLimits& limits) const {
  if (request.add_generation_prompt && request.continue_final_message) {
    return absl::InvalidArgumentError(
        "continue_final_message and add_generation_prompt are not compatible");
  }
  Dict variables;
  variables.Set("messages", request.messages);
  variables.Set("tools", request.tools);
  variables.Set("documents", request.documents);
  variables.Set("add_generation_prompt", Value::Bool(request.add_generation_prompt));
  for (const auto& [name, value] : specials.entries()) variables.Set(name, value);
  for (const auto& [name, value] : request.kwargs.entries()) {
    if (name == "messages" || name == "tools" || name == "documents" ||
        name == "add_generation_prompt") {
      // transformers fails the same way (render() got multiple values for the argument).
      return absl::InvalidArgumentError(
          absl::StrCat("chat_template_kwargs may not set '", name, "'"));
    }
    variables.Set(name, value);
  }
  Interpreter interpreter(limits, now);
  PAGODA_ASSIGN_OR_RETURN(std::string rendered, interpreter.Render(*body_, variables));
  if (!request.continue_final_message) return rendered;
  return CutAfterFinalMessage(std::move(rendered), request.messages);
}

absl::StatusOr<Dict> ChatTemplates::SpecialTokensFromConfig(absl::string_view config_json) {
  const auto config = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json is not a JSON object");
  }
  Dict specials;
  for (absl::string_view name : kSpecialTokenNames) {
    const auto it = config.find(std::string(name));
    if (it == config.end()) continue;
    if (it->is_string() && !it->get<std::string>().empty()) {
      specials.Set(std::string(name), Value::String(it->get<std::string>()));
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string() &&
               !(*it)["content"].get<std::string>().empty()) {
      specials.Set(std::string(name), Value::String((*it)["content"].get<std::string>()));
    }
  }
  const auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array()) {
    std::vector<Value> tokens;
    for (const auto& token : *extra) {
      if (token.is_string()) tokens.push_back(Value::String(token.get<std::string>()));
      if (token.is_object() && token.contains("content") && token["content"].is_string()) {
        tokens.push_back(Value::String(token["content"].get<std::string>()));
      }
    }
    if (!tokens.empty()) specials.Set("additional_special_tokens", Value::List(std::move(tokens)));
  }
  return specials;
}

absl::StatusOr<ChatTemplates> ChatTemplates::FromSource(absl::string_view source, Dict specials) {
  ChatTemplates templates;
  PAGODA_ASSIGN_OR_RETURN(ChatTemplate parsed, ChatTemplate::Parse(source));
  templates.templates_.emplace_back("default", std::move(parsed));
  templates.specials_ = std::move(specials);
  return templates;
}

absl::StatusOr<ChatTemplates> ChatTemplates::Load(const std::string& model_dir) {
  ChatTemplates templates;
  const auto config_text = ReadFile(absl::StrCat(model_dir, "/tokenizer_config.json"));
  nlohmann::json config;
  if (config_text.ok()) {
    PAGODA_ASSIGN_OR_RETURN(templates.specials_, SpecialTokensFromConfig(*config_text));
    config = nlohmann::json::parse(*config_text, nullptr, false);
  }
  const auto jinja = ReadFile(absl::StrCat(model_dir, "/chat_template.jinja"));
  auto add = [&](std::string name, const std::string& source) -> absl::Status {
    auto parsed = ChatTemplate::Parse(source);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template '", name, "' of ", model_dir,
                                                     ": ", parsed.status().message()));
    }
    templates.templates_.emplace_back(std::move(name), std::move(*parsed));
    return absl::OkStatus();
  };
  if (jinja.ok()) {
    PAGODA_RETURN_IF_ERROR(add("default", *jinja));
    return templates;
  }
  if (!config.is_object() || !config.contains("chat_template")) return templates;
  const auto& source = config["chat_template"];
  if (source.is_string()) {
    PAGODA_RETURN_IF_ERROR(add("default", source.get<std::string>()));
  } else if (source.is_array()) {
    for (const auto& named : source) {
      if (!named.is_object() || !named.contains("name") || !named.contains("template") ||
          !named["name"].is_string() || !named["template"].is_string()) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json: chat_template entries need a name and a template");
      }
      PAGODA_RETURN_IF_ERROR(
          add(named["name"].get<std::string>(), named["template"].get<std::string>()));
    }
  }
  return templates;
}

const ChatTemplate* ChatTemplates::Select(bool has_tools) const {
  if (templates_.empty()) return nullptr;
  const ChatTemplate* fallback = nullptr;
  for (const auto& [name, parsed] : templates_) {
    if (has_tools && name == "tool_use") return &parsed;
    if (name == "default") fallback = &parsed;
  }
  // Several named templates and none called "default": transformers refuses to guess.
  if (fallback == nullptr && templates_.size() > 1) return nullptr;
  return fallback != nullptr ? fallback : &templates_.front().second;
}

absl::StatusOr<std::string> ChatTemplates::Render(const RenderRequest& request, absl::Time now,
                                                  const RenderLimits& limits) const {
  // transformers picks the tool_use template whenever tools are given, even an empty list.
  const bool has_tools = !request.tools.is_none() && !request.tools.is_undefined();
  const ChatTemplate* selected = Select(has_tools);
  if (selected == nullptr) {
    return absl::FailedPreconditionError(
        Has() ? "the model has several chat templates and none is named \"default\""
              : "the model has no chat template");
  }
  return selected->Render(specials_, request, now, limits);
}

}  // namespace pagoda::chat_template

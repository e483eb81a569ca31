// pagoda-chat-template: renders a file of conversations with a model's chat template, one JSON
// line per case, in the same format as tests/chat_template_parity/reference.py (transformers on
// Jinja2), so the parity test can compare the two byte for byte.
//
//   pagoda-chat-template --config DIR|tokenizer_config.json|FILE.jinja --cases CASES.jsonl
//                        [--now 2026-01-02T03:04:05Z] [--specials '{"bos_token":"<s>"}']
//
// Each case: {"id", "messages", "tools"?, "documents"?, "add_generation_prompt"?,
// "continue_final_message"?, "chat_template_kwargs"?}. Each output line: {"id", "ok": true,
// "text"} or {"id", "ok": false, "error"}; a raise_exception() error is its message alone.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "chat_template/chat_template.h"
#include "chat_template/json_value.h"
#include "nlohmann/json.hpp"

namespace {

using pagoda::chat_template::ChatTemplates;
using pagoda::chat_template::Dict;
using pagoda::chat_template::FromJson;
using pagoda::chat_template::RenderRequest;
using pagoda::chat_template::Value;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<ChatTemplates> LoadTemplates(const std::string& config,
                                            const std::string& specials) {
  if (absl::EndsWith(config, ".jinja")) {
    Dict tokens;
    const auto json = nlohmann::ordered_json::parse(specials, nullptr, false);
    if (json.is_object()) {
      for (const auto& [name, value] : json.items())
        tokens.Set(name, FromJson(value).value_or(Value()));
    }
    return ChatTemplates::FromSource(ReadAll(config), std::move(tokens));
  }
  if (absl::EndsWith(config, ".json")) {
    const size_t slash = config.rfind('/');
    return ChatTemplates::Load(slash == std::string::npos ? "." : config.substr(0, slash));
  }
  return ChatTemplates::Load(config);
}

nlohmann::ordered_json RenderCase(const ChatTemplates& templates, const nlohmann::ordered_json& c,
                                  absl::Time now) {
  nlohmann::ordered_json out;
  out["id"] = c.value("id", "");
  RenderRequest request;
  // The corpus is ours and shallow: a conversion error would be a broken corpus.
  request.messages = *FromJson(c.value("messages", nlohmann::ordered_json::array()));
  if (c.contains("tools")) request.tools = *FromJson(c["tools"]);
  if (c.contains("documents")) request.documents = *FromJson(c["documents"]);
  request.add_generation_prompt = c.value("add_generation_prompt", false);
  request.continue_final_message = c.value("continue_final_message", false);
  if (c.contains("chat_template_kwargs") && c["chat_template_kwargs"].is_object()) {
    for (const auto& [name, value] : c["chat_template_kwargs"].items()) {
      request.kwargs.Set(name, *FromJson(value));
    }
  }
  const auto rendered = templates.Render(request, now);
  out["ok"] = rendered.ok();
  if (rendered.ok()) {
    out["text"] = *rendered;
  } else {
    out["error"] = std::string(rendered.status().message());
    if (rendered.status().GetPayload(pagoda::chat_template::kRaisedPayload).has_value()) {
      out["raised"] = true;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, cases, now_text = "2026-01-02T03:04:05Z", specials = "{}";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--config")
      config = argv[i + 1];
    else if (flag == "--cases")
      cases = argv[i + 1];
    else if (flag == "--now")
      now_text = argv[i + 1];
    else if (flag == "--specials")
      specials = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  absl::Time now;
  std::string error;
  if (config.empty() || cases.empty() ||
      !absl::ParseTime(absl::RFC3339_full, now_text, &now, &error)) {
    std::fprintf(stderr,
                 "usage: pagoda-chat-template --config PATH --cases FILE.jsonl [--now RFC3339] "
                 "[--specials JSON] %s\n",
                 error.c_str());
    return 2;
  }
  const auto templates = LoadTemplates(config, specials);
  if (!templates.ok()) {
    std::fprintf(stderr, "%s\n", std::string(templates.status().message()).c_str());
    return 1;
  }
  std::ifstream in(cases);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto c = nlohmann::ordered_json::parse(line, nullptr, false);
    if (!c.is_object()) {
      std::fprintf(stderr, "a case is not a JSON object: %s\n", line.substr(0, 80).c_str());
      return 1;
    }
    std::cout << RenderCase(*templates, c, now)
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
  }
  return 0;
}

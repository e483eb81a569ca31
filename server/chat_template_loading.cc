#include "server/chat_template_loading.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pagoda::server {
namespace {

bool IsDummy(const std::string& model_spec) { return absl::StartsWith(model_spec, "dummy:"); }

absl::StatusOr<std::string> FlagSource(const std::string& value) {
  std::error_code error;
  if (std::filesystem::is_regular_file(value, error)) {
    std::ifstream in(value, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return absl::InvalidArgumentError(absl::StrCat("--chat-template: cannot read ", value));
    }
    return text.str();
  }
  if (absl::StrContains(value, "{{") || absl::StrContains(value, "{%")) return value;
  return absl::InvalidArgumentError(
      absl::StrCat("--chat-template: ", value, " is neither a file nor a template (no {{ or {%)"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplates>> LoadChatTemplates(
    const std::string& model_spec, const std::optional<std::string>& chat_template_flag) {
  chat_template::ChatTemplates model_templates;
  if (!IsDummy(model_spec)) {
    absl::StatusOr<chat_template::ChatTemplates> loaded =
        chat_template::ChatTemplates::Load(model_spec);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--model ", loaded.status().message()));
    }
    model_templates = *std::move(loaded);
  }
  if (!chat_template_flag.has_value()) {
    return std::make_shared<const chat_template::ChatTemplates>(std::move(model_templates));
  }
  PAGODA_ASSIGN_OR_RETURN(std::string source, FlagSource(*chat_template_flag));
  absl::StatusOr<chat_template::ChatTemplates> flag_templates =
      chat_template::ChatTemplates::FromSource(source, model_templates.specials());
  if (!flag_templates.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chat-template: ", flag_templates.status().message()));
  }
  return std::make_shared<const chat_template::ChatTemplates>(*std::move(flag_templates));
}

std::string DescribeChatTemplates(const chat_template::ChatTemplates& templates,
                                  const std::optional<std::string>& chat_template_flag) {
  if (!templates.Has()) {
    return "no chat template: /v1/chat/completions answers 400 (give one with --chat-template)";
  }
  if (chat_template_flag.has_value()) return "chat template: from --chat-template";
  return "chat template: the model's";
}

}  // namespace pagoda::server

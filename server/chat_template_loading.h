#pragma once

// The chat templates pagodad serves /v1/chat/completions with: --chat-template (a file or the
// template itself) over the model's own (chat_template.jinja, tokenizer_config.json), with the
// model's special tokens. Dummy models have neither unless --chat-template gives one.
//
// Thread-safe: a pure function of its arguments and the files it reads.

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "chat_template/chat_template.h"

namespace pagoda::server {

// `model_spec` is the resolved --model (a directory, or dummy:<preset>). Errors name the flag
// ("--chat-template: ...") or the model directory and the template's line.
absl::StatusOr<std::shared_ptr<const chat_template::ChatTemplates>> LoadChatTemplates(
    const std::string& model_spec, const std::optional<std::string>& chat_template_flag);

// A line for the start-up log: where the template came from, or that chat is off.
std::string DescribeChatTemplates(const chat_template::ChatTemplates& templates,
                                  const std::optional<std::string>& chat_template_flag);

}  // namespace pagoda::server

#pragma once

// The chat-template parser: Jinja2's grammar and operator precedence for the statements and
// expressions that chat templates use (docs/chat_templates.md). Anything else (include,
// extends, call blocks, unknown filters or tests, ...) is refused here, naming the construct
// and its position, so a template either loads whole or not at all.
//
// Thread-safe: a pure function.

#include <vector>

#include "absl/status/statusor.h"
#include "chat_template/ast.h"
#include "chat_template/lexer.h"

namespace pagoda::chat_template {

// Nesting deeper than this (blocks or expressions) is refused, so no template, however
// crafted, can exhaust the parser's or the renderer's stack.
inline constexpr int kMaxNesting = 128;

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace pagoda::chat_template

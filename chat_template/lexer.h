#pragma once

// The chat-template lexer: Jinja2's syntax, with the whitespace rules Hugging Face transformers
// renders with (trim_blocks and lstrip_blocks on, keep_trailing_newline off):
//   - newlines in the source are normalized to "\n", and one trailing newline is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` after it;
//   - lstrip_blocks: whitespace from the line's start to a `{%` or `{#` is removed
//     (`{%+` keeps them);
//   - trim_blocks: the first newline after `%}` or `#}` is removed (`+%}` keeps it);
//   - `{% raw %}...{% endraw %}` is text; comments are dropped.
// Data between tags becomes kText tokens; a tag's inside becomes names, literals and operators
// between kVarBegin/kVarEnd or kBlockBegin/kBlockEnd.
//
// Thread-safe: a pure function.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::chat_template {

// 1-based line and column (in bytes) of a token in the template source.
struct Position {
  int line = 1;
  int column = 1;
};

enum class TokenKind {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOperator,
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  // kText: the data; kName: the name; kString: the decoded value; kOperator: the operator.
  std::string text;
  int64_t int_value = 0;
  bool big_int = false;  // kInt beyond 64 bits: `text` holds its digits
  double float_value = 0;
  Position position;
};

// An InvalidArgument naming the position: "chat template line 3, column 7: <what>".
absl::Status ErrorAt(Position position, absl::string_view what);

// The template's tokens, ending with one kEnd.
absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source);

}  // namespace pagoda::chat_template

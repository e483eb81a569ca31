#include "chat_template/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

absl::Status ErrorAt(Position position, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("chat template line ", position.line, ", column ", position.column, ": ", what));
}

namespace {

// Jinja2 splits the source on \r\n, \r and \n, joins it with \n and drops one trailing empty
// line.
std::string NormalizeNewlines(absl::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// The byte length of `text` without its trailing Python whitespace (str.rstrip()).
size_t RStripLength(absl::string_view text) {
  const std::vector<char32_t> points = DecodeUtf8(text);
  size_t keep = points.size();
  while (keep > 0 && IsPythonSpace(points[keep - 1])) --keep;
  size_t bytes = 0;
  std::string scratch;
  for (size_t i = 0; i < keep; ++i) {
    scratch.clear();
    AppendUtf8(points[i], scratch);
    bytes += scratch.size();
  }
  return bytes;
}

// The byte length of the Python whitespace that starts `text`.
size_t LeadingSpaceLength(absl::string_view text) {
  size_t bytes = 0;
  std::string scratch;
  for (char32_t c : DecodeUtf8(text.substr(0, std::min<size_t>(text.size(), 4096)))) {
    if (!IsPythonSpace(c)) break;
    scratch.clear();
    AppendUtf8(c, scratch);
    bytes += scratch.size();
  }
  if (bytes == std::min<size_t>(text.size(), 4096) && bytes < text.size()) {
    return bytes + LeadingSpaceLength(text.substr(bytes));
  }
  return bytes;
}

bool IsNameStart(char c) { return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

constexpr absl::string_view kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                            "/",  "%",  "~",  "(",  ")",  "[",  "]", "{", "}",
                                            ",",  ".",  ":",  "|",  "=",  "<",  ">", ";"};

class Lexer {
 public:
  explicit Lexer(absl::string_view source) : src_(NormalizeNewlines(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      const size_t start = NextTagStart(pos_);
      if (start == std::string::npos) {
        EmitText(pos_, src_.size());
        break;
      }
      const char type = src_[start + 1];
      const char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
      EmitTextBeforeTag(pos_, start, type != '{', modifier);
      pos_ = start + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      absl::Status status = type == '#' ? SkipComment(start) : LexTag(start, type == '%');
      if (!status.ok()) return status;
    }
    Token end;
    end.position = PositionAt(src_.size());
    out_.push_back(std::move(end));
    return std::move(out_);
  }

 private:
  Position PositionAt(size_t offset) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    return {static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
  }

  size_t NextTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  void EmitText(size_t begin, size_t end) {
    if (end <= begin) return;
    Token token;
    token.kind = TokenKind::kText;
    token.text = src_.substr(begin, end - begin);
    token.position = PositionAt(begin);
    out_.push_back(std::move(token));
  }

  // The data in [begin, end) before a tag, stripped as the tag's opener asks: '-' strips all
  // trailing whitespace; otherwise lstrip_blocks drops a block or comment tag's indentation.
  void EmitTextBeforeTag(size_t begin, size_t end, bool lstrips, char modifier) {
    const absl::string_view text(src_.data() + begin, end - begin);
    if (modifier == '-') {
      EmitText(begin, begin + RStripLength(text));
      return;
    }
    if (lstrips && modifier != '+') {
      const size_t newline = text.rfind('\n');
      const size_t line_start = newline == absl::string_view::npos ? 0 : newline + 1;
      const bool line_starting = begin == 0 || src_[begin - 1] == '\n';
      if ((line_start > 0 || line_starting) && line_start < text.size() &&
          RStripLength(text.substr(line_start)) == 0) {
        EmitText(begin, begin + line_start);
        return;
      }
    }
    EmitText(begin, end);
  }

  // After a tag's closer at pos_ (already consumed): '-' strips whitespace, trim_blocks one
  // newline after block and comment tags.
  void AfterTag(char closer_modifier, bool trims) {
    if (closer_modifier == '-') {
      pos_ += LeadingSpaceLength(absl::string_view(src_).substr(pos_));
    } else if (trims && closer_modifier != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  absl::Status SkipComment(size_t start) {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return ErrorAt(PositionAt(start), "unterminated comment");
    const char modifier = end > pos_ ? src_[end - 1] : '\0';
    pos_ = end + 2;
    AfterTag(modifier == '-' || modifier == '+' ? modifier : '\0', /*trims=*/true);
    return absl::OkStatus();
  }

  // Whether the tag's closer starts at pos_ (depth 0 only); sets its modifier and length.
  bool AtCloser(bool block, char& modifier, size_t& length) const {
    const absl::string_view rest = absl::string_view(src_).substr(pos_);
    const absl::string_view closer = block ? "%}" : "}}";
    if (rest.substr(0, 2) == closer) {
      modifier = '\0';
      length = 2;
      return true;
    }
    if (rest.size() >= 3 && rest.substr(1, 2) == closer &&
        (rest[0] == '-' || (block && rest[0] == '+'))) {
      modifier = rest[0];
      length = 3;
      return true;
    }
    return false;
  }

  absl::Status LexTag(size_t start, bool block) {
    if (block && TryRaw()) return absl::OkStatus();
    Token begin;
    begin.kind = block ? TokenKind::kBlockBegin : TokenKind::kVarBegin;
    begin.position = PositionAt(start);
    out_.push_back(std::move(begin));
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && absl::ascii_isspace(static_cast<unsigned char>(src_[pos_]))) {
        ++pos_;
      }
      if (pos_ >= src_.size()) {
        return ErrorAt(PositionAt(start), block ? "unterminated '{%' tag" : "unterminated '{{'");
      }
      char modifier = '\0';
      size_t length = 0;
      if (depth == 0 && AtCloser(block, modifier, length)) {
        Token end;
        end.kind = block ? TokenKind::kBlockEnd : TokenKind::kVarEnd;
        end.position = PositionAt(pos_);
        out_.push_back(std::move(end));
        pos_ += length;
        AfterTag(modifier, block);
        return absl::OkStatus();
      }
      absl::Status status = LexToken(depth);
      if (!status.ok()) return status;
    }
  }

  // `{% raw %}...{% endraw %}`: the text between is data, with the endraw tag's whitespace
  // control applied to it.
  bool TryRaw() {
    size_t p = pos_;
    while (p < src_.size() && absl::ascii_isspace(static_cast<unsigned char>(src_[p]))) ++p;
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && IsNameChar(src_[p + 3]))) {
      return false;
    }
    const size_t saved = pos_;
    pos_ = p + 3;
    while (pos_ < src_.size() && absl::ascii_isspace(static_cast<unsigned char>(src_[pos_]))) {
      ++pos_;
    }
    char modifier = '\0';
    size_t length = 0;
    if (!AtCloser(/*block=*/true, modifier, length)) {
      pos_ = saved;
      return false;
    }
    pos_ += length;
    AfterTag(modifier, /*trims=*/true);
    const size_t body = pos_;
    for (size_t tag = NextTagStart(body); tag != std::string::npos; tag = NextTagStart(tag + 1)) {
      if (src_[tag + 1] != '%') continue;
      const char open = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      pos_ = tag + 2 + (open == '-' || open == '+' ? 1 : 0);
      while (pos_ < src_.size() && absl::ascii_isspace(static_cast<unsigned char>(src_[pos_]))) {
        ++pos_;
      }
      if (src_.compare(pos_, 6, "endraw") != 0) continue;
      pos_ += 6;
      while (pos_ < src_.size() && absl::ascii_isspace(static_cast<unsigned char>(src_[pos_]))) {
        ++pos_;
      }
      if (!AtCloser(/*block=*/true, modifier, length)) continue;
      EmitTextBeforeTag(body, tag, /*lstrips=*/true, open);
      pos_ += length;
      AfterTag(modifier, /*trims=*/true);
      return true;
    }
    // No endraw: let the parser report the raw tag as unterminated.
    pos_ = saved;
    return false;
  }

  absl::Status LexToken(int& depth) {
    const size_t begin = pos_;
    Token token;
    token.position = PositionAt(begin);
    const char c = src_[pos_];
    if (IsNameStart(c)) {
      while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
      token.kind = TokenKind::kName;
      token.text = src_.substr(begin, pos_ - begin);
    } else if (IsDigit(c)) {
      LexNumber(token);
    } else if (c == '\'' || c == '"') {
      absl::Status status = LexString(token);
      if (!status.ok()) return status;
    } else {
      for (absl::string_view op : kOperators) {
        if (absl::string_view(src_).substr(pos_, op.size()) == op) {
          token.kind = TokenKind::kOperator;
          token.text = std::string(op);
          pos_ += op.size();
          break;
        }
      }
      if (token.kind != TokenKind::kOperator) {
        return ErrorAt(token.position, absl::StrCat("unexpected character '",
                                                    absl::string_view(&src_[pos_], 1), "'"));
      }
      if (token.text == "(" || token.text == "[" || token.text == "{") ++depth;
      if ((token.text == ")" || token.text == "]" || token.text == "}") && depth > 0) --depth;
    }
    out_.push_back(std::move(token));
    return absl::OkStatus();
  }

  void LexNumber(Token& token) {
    const size_t begin = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() &&
             (IsDigit(src_[pos_]) ||
              (src_[pos_] == '_' && pos_ + 1 < src_.size() && IsDigit(src_[pos_ + 1])))) {
        ++pos_;
      }
    };
    digits();
    // After '.', digits are an item index (foo.0), never a float.
    const bool after_dot =
        !out_.empty() && out_.back().kind == TokenKind::kOperator && out_.back().text == ".";
    bool is_float = false;
    if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && IsDigit(src_[pos_ + 1])) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && IsDigit(src_[p])) {
        pos_ = p;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = begin; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    token.text = text;
    if (is_float) {
      token.kind = TokenKind::kFloat;
      token.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      token.kind = TokenKind::kInt;
      errno = 0;
      const long long value = std::strtoll(text.c_str(), nullptr, 10);
      token.int_value = value;
      // Beyond 64 bits it stays an integer of exact digits, as in Python.
      token.big_int = errno == ERANGE;
    }
  }

  // Python's unicode-escape decoding of a string literal's inside.
  absl::Status LexString(Token& token) {
    const char quote = src_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) return ErrorAt(token.position, "unterminated string");
      const char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) return ErrorAt(token.position, "unterminated string");
      absl::Status status = DecodeEscape(token.position, value);
      if (!status.ok()) return status;
    }
    token.kind = TokenKind::kString;
    token.text = std::move(value);
    return absl::OkStatus();
  }

  absl::Status DecodeEscape(Position position, std::string& value) {
    const char e = src_[pos_++];
    switch (e) {
      case '\n':
        return absl::OkStatus();
      case '\\':
        value += '\\';
        return absl::OkStatus();
      case '\'':
        value += '\'';
        return absl::OkStatus();
      case '"':
        value += '"';
        return absl::OkStatus();
      case 'a':
        value += '\a';
        return absl::OkStatus();
      case 'b':
        value += '\b';
        return absl::OkStatus();
      case 'f':
        value += '\f';
        return absl::OkStatus();
      case 'n':
        value += '\n';
        return absl::OkStatus();
      case 'r':
        value += '\r';
        return absl::OkStatus();
      case 't':
        value += '\t';
        return absl::OkStatus();
      case 'v':
        value += '\v';
        return absl::OkStatus();
      default:
        break;
    }
    if (e >= '0' && e <= '7') {
      char32_t code = static_cast<char32_t>(e - '0');
      for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7'; ++k) {
        code = code * 8 + static_cast<char32_t>(src_[pos_++] - '0');
      }
      AppendUtf8(code, value);
      return absl::OkStatus();
    }
    const int hex_digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (hex_digits == 0) {
      if (e == 'N') return ErrorAt(position, "\\N{...} escapes are not supported");
      value += '\\';
      value += e;
      return absl::OkStatus();
    }
    char32_t code = 0;
    for (int k = 0; k < hex_digits; ++k) {
      if (pos_ >= src_.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(src_[pos_]))) {
        return ErrorAt(position, absl::StrCat("truncated \\", std::string(1, e), " escape"));
      }
      const char h = src_[pos_++];
      code = code * 16 + static_cast<char32_t>(IsDigit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    if (code > 0x10FFFF) return ErrorAt(position, "escape out of the Unicode range");
    AppendUtf8(code, value);
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
  std::vector<Token> out_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source) {
  return Lexer(source).Run();
}

}  // namespace pagoda::chat_template

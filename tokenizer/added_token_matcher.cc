#include "tokenizer/added_token_matcher.h"

#include "absl/status/status.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Rust's char::is_whitespace (the Unicode White_Space property), which lstrip/rstrip use.
bool IsUnicodeWhitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Start of the run of whitespace characters that ends at `end`.
size_t WhitespaceRunStart(std::string_view text, size_t begin_limit, size_t end) {
  size_t start = end;
  while (start > begin_limit) {
    size_t char_start = start - 1;
    while (char_start > begin_limit && (static_cast<uint8_t>(text[char_start]) & 0xC0) == 0x80) {
      --char_start;
    }
    const size_t n = common::ValidSequenceLength(text, char_start);
    if (n == 0 || !IsUnicodeWhitespace(common::DecodeValidSequence(text, char_start, n))) break;
    start = char_start;
  }
  return start;
}

// End of the run of whitespace characters that starts at `begin`.
size_t WhitespaceRunEnd(std::string_view text, size_t begin) {
  size_t end = begin;
  while (end < text.size()) {
    const size_t n = common::ValidSequenceLength(text, end);
    if (n == 0 || !IsUnicodeWhitespace(common::DecodeValidSequence(text, end, n))) break;
    end += n;
  }
  return end;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> AddedTokenMatcher::Create(
    const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns) {
  auto matcher = std::unique_ptr<AddedTokenMatcher>(new AddedTokenMatcher());
  for (size_t i = 0; i < tokens.size() && i < patterns.size(); ++i) {
    const std::string& pattern = patterns[i];
    if (pattern.empty()) continue;
    uint32_t node = 0;
    for (const char c : pattern) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto [it, inserted] = matcher->edges_.try_emplace(key, matcher->num_nodes_);
      if (inserted) ++matcher->num_nodes_;
      node = it->second;
    }
    matcher->first_byte_[static_cast<uint8_t>(pattern[0])] = true;
    // Two tokens with the same pattern: the first one listed wins, as in Hugging Face.
    matcher->terminals_.try_emplace(node,
                                    Terminal{tokens[i].id, tokens[i].lstrip, tokens[i].rstrip});
    ++matcher->num_patterns_;
  }
  return matcher;
}

std::pair<size_t, const AddedTokenMatcher::Terminal*> AddedTokenMatcher::LongestAt(
    std::string_view text, size_t pos) const {
  std::pair<size_t, const Terminal*> best{0, nullptr};
  uint32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]));
    if (it == edges_.end()) break;
    node = it->second;
    if (const auto t = terminals_.find(node); t != terminals_.end()) {
      best = {i + 1 - pos, &t->second};
    }
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<Segment>& segments) const {
  size_t emitted = 0;  // end of the last segment pushed
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [length, terminal] = LongestAt(text, pos);
    if (terminal == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + length;
    if (terminal->lstrip) start = WhitespaceRunStart(text, emitted, start);
    if (terminal->rstrip) stop = WhitespaceRunEnd(text, stop);
    if (start > emitted) segments.push_back({text.substr(emitted, start - emitted), std::nullopt});
    segments.push_back({text.substr(start, stop - start), terminal->id});
    emitted = stop;
    pos = stop;
  }
  if (text.size() > emitted) {
    segments.push_back({text.substr(emitted), std::nullopt});
  }
}

}  // namespace pagoda::tokenizer

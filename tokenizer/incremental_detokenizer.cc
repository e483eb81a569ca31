#include "tokenizer/incremental_detokenizer.h"

#include <string_view>

#include "absl/strings/match.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

// An anchor must decode to non-whitespace text that concatenates plainly with itself, so that
// first-piece rules (Strip of a leading space, Metaspace) act on it and stop there.
std::optional<TokenId> FindAnchor(const Tokenizer& tokenizer, SkipSpecialTokens skip,
                                  std::string* anchor_text) {
  std::vector<TokenId> candidates;
  for (const char* letter : {"a", "e", "t", "x", "A", "0", "1"}) {
    // A vocabulary entry spelled as the letter, or the single token the letter encodes to.
    if (const std::optional<TokenId> id = tokenizer.PieceToId(letter)) candidates.push_back(*id);
    const std::vector<TokenId> encoded = tokenizer.Encode(letter, AddSpecialTokens::kNo);
    if (encoded.size() == 1) candidates.push_back(encoded[0]);
  }
  for (const TokenId id : candidates) {
    if (tokenizer.IsSpecial(id) || tokenizer.IsByteFallback(id)) continue;
    const TokenId one[] = {id};
    const TokenId two[] = {id, id};
    const std::string text = tokenizer.Decode(one, skip);
    if (text.empty() || text[0] == ' ' || common::EndsWithReplacementChar(text)) continue;
    if (tokenizer.Decode(two, skip) != text + text) continue;
    *anchor_text = text;
    return id;
  }
  return std::nullopt;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, const Options& options)
    : tokenizer_(tokenizer), options_(options) {
  anchor_ = FindAnchor(tokenizer_, options_.skip_special_tokens, &anchor_text_);
}

bool IncrementalDetokenizer::DecodesToNothing(TokenId id) const {
  if (options_.skip_special_tokens == SkipSpecialTokens::kYes && tokenizer_.IsSpecial(id)) {
    return true;
  }
  return !tokenizer_.IdToPiece(id).has_value();
}

std::string IncrementalDetokenizer::DecodeRange(size_t begin, size_t end) const {
  const SkipSpecialTokens skip = options_.skip_special_tokens;
  if (!anchor_.has_value()) {
    // Only called with begin == committed_ in this mode (see CommitSettledHead).
    const std::string all = tokenizer_.Decode(absl::MakeConstSpan(ids_).subspan(0, end), skip);
    return all.substr(std::min(emitted_bytes_, all.size()));
  }
  if (begin == 0) return tokenizer_.Decode(absl::MakeConstSpan(ids_).subspan(0, end), skip);
  std::vector<TokenId> window;
  window.reserve(end - begin + 1);
  window.push_back(*anchor_);
  window.insert(window.end(), ids_.begin() + begin, ids_.begin() + end);
  std::string text = tokenizer_.Decode(window, skip);
  // The anchor decodes to its own text first; everything after it belongs to the range.
  if (!absl::StartsWith(text, anchor_text_)) return text;
  return text.substr(anchor_text_.size());
}

std::string IncrementalDetokenizer::Commit(size_t end, std::string text) {
  committed_ = end;
  emitted_bytes_ += text.size();
  return text;
}

std::string IncrementalDetokenizer::CommitSettledHead(size_t end, const std::string& text) {
  // Text ending in U+FFFD is held because the bytes behind it may still become a character.
  // That can only involve the last 3 bytes, so once 4 more tokens of at least one byte each
  // follow a split point, the text before it is settled, provided decoding the two sides
  // separately gives the same text as decoding across the split (lossy UTF-8 decoding is
  // local) and the split does not cut a byte-fallback run. Without this, a long run of
  // U+FFFD (invalid bytes) would be held, and decoded again on every step, until it ends.
  constexpr size_t kSettleTokens = 4;
  if (!anchor_.has_value() || end - committed_ <= 4 * kSettleTokens) return "";
  const size_t split = end - kSettleTokens;
  if (tokenizer_.IsByteFallback(ids_[split - 1]) || DecodesToNothing(ids_[split - 1])) return "";
  for (size_t i = split; i < end; ++i) {
    const TokenId one[] = {ids_[i]};
    if (DecodesToNothing(ids_[i]) || tokenizer_.IsByteFallback(ids_[i]) ||
        tokenizer_.Decode(one, options_.skip_special_tokens).empty()) {
      return "";
    }
  }
  std::string head = DecodeRange(committed_, split);
  if (head + DecodeRange(split, end) != text) return "";
  return Commit(split, std::move(head));
}

std::string IncrementalDetokenizer::Append(absl::Span<const TokenId> ids) {
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  // Commit only up to the last token that is not byte fallback: a byte run may still grow, and
  // the whole run turns into U+FFFDs if it ends up invalid. Tokens that decode to nothing
  // (skipped specials, unknown ids) do not end a run, so they cannot end a commit either.
  size_t end = ids_.size();
  while (end > committed_ &&
         (tokenizer_.IsByteFallback(ids_[end - 1]) || DecodesToNothing(ids_[end - 1]))) {
    --end;
  }
  if (end == committed_) return "";
  std::string text = DecodeRange(committed_, end);
  if (common::EndsWithReplacementChar(text)) return CommitSettledHead(end, text);
  return Commit(end, std::move(text));
}

std::string IncrementalDetokenizer::Flush() {
  if (committed_ == ids_.size()) return "";
  return Commit(ids_.size(), DecodeRange(committed_, ids_.size()));
}

}  // namespace pagoda::tokenizer

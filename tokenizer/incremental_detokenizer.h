#pragma once

// Streaming detokenization: token ids arrive a few at a time; text deltas go out.
//
// Contract, for any id sequence ids[0..n):
//   * every delta is valid UTF-8 and never ends inside a character;
//   * concatenating all Append() results and then Flush() gives exactly
//     tokenizer.Decode(ids, skip_special_tokens), also across byte-fallback runs, multi-byte
//     characters split over tokens, and SentencePiece's strip of the first leading space.
// Text is held back while it could still change: while it ends in U+FFFD (an incomplete
// character) or in a byte-fallback token (whose run decodes as a whole). A long run of U+FFFD is
// released once it is settled (the last few tokens stay held), so held text stays short.
//
// How: text up to a committed token index is final. The uncommitted tail is decoded behind an
// "anchor" token (a plain letter, e.g. "a") whose text is then removed, so that decoders that act
// on the first piece only (Strip, leading-space rules) see the anchor instead of the tail, and the
// tail decodes as it does in the middle of the whole sequence. Each step decodes only the tail.
// When the vocabulary has no usable anchor the whole sequence is decoded each step (correct,
// O(n) per step). Construction looks for the anchor with a few Encode/Decode calls of single
// letters (microseconds). A decoder that strips the end of the text (Strip with stop > 0) would
// break the contract; none of the supported tokenizer families uses one.
//
// Not thread-safe (one per request, owned by the engine thread). The tokenizer must outlive it.

#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "common/ids.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

class IncrementalDetokenizer {
 public:
  struct Options {
    SkipSpecialTokens skip_special_tokens = SkipSpecialTokens::kYes;
  };

  IncrementalDetokenizer(const Tokenizer& tokenizer, const Options& options);

  // Appends `ids` to the sequence and returns the text that became final (possibly empty).
  std::string Append(absl::Span<const TokenId> ids);

  // Returns the text still held back; call once when the sequence ends.
  std::string Flush();

  const std::vector<TokenId>& ids() const { return ids_; }

 private:
  bool DecodesToNothing(TokenId id) const;
  // Text of ids_[begin, end) as it appears in the whole sequence's text. begin is committed_
  // or a later token after which the text is known to be settled.
  std::string DecodeRange(size_t begin, size_t end) const;
  // Marks ids_[0, end) as emitted; returns `text`, their text past the previous commit.
  std::string Commit(size_t end, std::string text);
  // When the text of ids_[committed_, end) ends in U+FFFD: commits all but its last tokens if
  // the text before them can no longer change; returns the committed text ("" if none).
  std::string CommitSettledHead(size_t end, const std::string& text);

  const Tokenizer& tokenizer_;
  Options options_;
  std::vector<TokenId> ids_;
  size_t committed_ = 0;      // ids_[0, committed_) have been emitted as text
  size_t emitted_bytes_ = 0;  // bytes emitted so far (used without an anchor)
  std::optional<TokenId> anchor_;
  std::string anchor_text_;
};

}  // namespace pagoda::tokenizer

#pragma once

// The built-in tokenizer for models without a tokenizer file: one token per byte.
//
//   ids 0..255  the byte of that value (UTF-8 text is encoded byte by byte)
//   id  256     BOS, piece "<s>",  special
//   id  257     EOS, piece "</s>", special
//   vocab_size  258
//
// Encode(text, kYes) prepends BOS; no EOS is appended. The strings "<s>" and "</s>" in the input
// are ordinary bytes, never matched as BOS/EOS. Decode turns bytes back into text, replacing
// invalid UTF-8 with U+FFFD per maximal invalid subsequence; BOS/EOS render as "<s>"/"</s>"
// unless skipped. Immutable; thread-safe.

#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr TokenId kBosId = 256;
  static constexpr TokenId kEosId = 257;
  static constexpr int32_t kVocabSize = 258;

  ByteTokenizer();

  std::vector<TokenId> Encode(std::string_view text, AddSpecialTokens add) const override;
  std::string Decode(absl::Span<const TokenId> ids, SkipSpecialTokens skip) const override;
  std::optional<std::string> IdToPiece(TokenId id) const override;
  std::optional<TokenId> PieceToId(std::string_view piece) const override;
  int32_t vocab_size() const override { return kVocabSize; }
  std::optional<TokenId> bos_id() const override { return kBosId; }
  const std::vector<TokenId>& eos_ids() const override { return eos_ids_; }
  const std::vector<AddedToken>& added_tokens() const override { return added_tokens_; }
  bool IsSpecial(TokenId id) const override { return id == kBosId || id == kEosId; }
  bool IsByteFallback(TokenId /*id*/) const override { return false; }

 private:
  std::vector<TokenId> eos_ids_;
  std::vector<AddedToken> added_tokens_;
};

}  // namespace pagoda::tokenizer

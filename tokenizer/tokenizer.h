#pragma once

// The interface the engine and server use to turn text into token ids and back. Implemented by
// HfTokenizer (Hugging Face tokenizer.json) and ByteTokenizer (the built-in default).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "common/ids.h"

namespace pagoda::tokenizer {

// Whether Encode() applies the tokenizer's post-processor (e.g. prepends BOS).
enum class AddSpecialTokens { kNo, kYes };

// Whether Decode() drops special tokens (BOS, EOS, chat markers) from the text.
enum class SkipSpecialTokens { kNo, kYes };

// A token matched in the input text before the model runs (e.g. "<s>", "<|im_start|>").
struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool special = false;     // special tokens are skipped by Decode(..., kYes)
  bool normalized = false;  // matched in the normalized text rather than the raw text
  bool lstrip = false;      // a match also absorbs the whitespace on its left
  bool rstrip = false;      // a match also absorbs the whitespace on its right
};

// Implementations are immutable after construction: every method is const and safe to call
// from any number of threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text` (any bytes: invalid UTF-8 is first replaced, one U+FFFD per maximal
  // invalid subsequence, the way JavaScript and Rust decode lossy UTF-8).
  virtual std::vector<TokenId> Encode(std::string_view text, AddSpecialTokens add) const = 0;

  // Text of `ids`; always valid UTF-8. Ids outside the vocabulary are ignored.
  virtual std::string Decode(absl::Span<const TokenId> ids, SkipSpecialTokens skip) const = 0;

  // The vocabulary entry of `id` as stored (e.g. "▁the", "Ġthe", "<0x0A>"), or nullopt when
  // `id` is not in the vocabulary.
  virtual std::optional<std::string> IdToPiece(TokenId id) const = 0;
  virtual std::optional<TokenId> PieceToId(std::string_view piece) const = 0;

  // Ids are 0 <= id < vocab_size(), added tokens included.
  virtual int32_t vocab_size() const = 0;

  virtual std::optional<TokenId> bos_id() const = 0;
  // Every id that ends generation (a model may have several, e.g. <|eot_id|> and
  // <|end_of_text|>). Empty when the model has none.
  virtual const std::vector<TokenId>& eos_ids() const = 0;
  virtual const std::vector<AddedToken>& added_tokens() const = 0;
  virtual bool IsSpecial(TokenId id) const = 0;

  // True for tokens whose text depends on the neighbouring tokens of the same kind: SentencePiece
  // byte-fallback pieces (<0xNN>), which decode as one UTF-8 run, all U+FFFD when the run is
  // invalid. A streaming detokenizer must not commit text that ends in such a token.
  virtual bool IsByteFallback(TokenId id) const = 0;
};

}  // namespace pagoda::tokenizer

#pragma once

// A Hugging Face tokenizer.json tokenizer (BPE model), exact to the reference implementation
// (the `tokenizers` library) for the components it supports:
//   normalizer      Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD      (normalizer.h)
//   pre_tokenizer   Sequence, Split, Metaspace, ByteLevel               (pre_tokenizer.h)
//   model           BPE with byte_fallback, unk/fuse_unk, ignore_merges (bpe_model.h)
//   post_processor  TemplateProcessing, ByteLevel, Sequence             (post_processor.h)
//   decoder         Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip
//                                                                       (decoder.h)
//   added_tokens    lstrip, rstrip, normalized, special                 (added_token_matcher.h)
// This covers GPT-2, Llama 3, Qwen 2/3 and Mistral-Nemo style byte-level BPE and Llama 2 /
// TinyLlama style SentencePiece BPE with byte fallback. Anything else makes Create() fail with
// an Unimplemented error naming the component. "truncation" and "padding" are ignored.
//
// Immutable after Create(); every method may be called from any number of threads at once.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "tokenizer/added_token_matcher.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

// What tokenizer_config.json / generation_config.json add to tokenizer.json.
struct SpecialTokenConfig {
  std::optional<std::string> bos_token;  // content of the BOS token
  std::vector<std::string> eos_tokens;   // contents of the tokens that end generation
  std::vector<TokenId> eos_ids;          // further ids that end generation
};

class HfTokenizer final : public Tokenizer {
 public:
  // `tokenizer_json` is the text of a tokenizer.json file. Special token strings in `config`
  // must name tokens of the vocabulary.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Create(std::string_view tokenizer_json,
                                                             const SpecialTokenConfig& config = {});

  std::vector<TokenId> Encode(std::string_view text, AddSpecialTokens add) const override;
  std::string Decode(absl::Span<const TokenId> ids, SkipSpecialTokens skip) const override;
  std::optional<std::string> IdToPiece(TokenId id) const override;
  std::optional<TokenId> PieceToId(std::string_view piece) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<TokenId> bos_id() const override { return bos_id_; }
  const std::vector<TokenId>& eos_ids() const override { return eos_ids_; }
  const std::vector<AddedToken>& added_tokens() const override { return added_tokens_; }
  bool IsSpecial(TokenId id) const override { return special_ids_.contains(id); }
  bool IsByteFallback(TokenId id) const override;

 private:
  HfTokenizer() = default;
  absl::Status LoadComponents(const Json& root);
  absl::Status LoadAddedTokens(const Json& root);
  absl::Status ApplyConfig(const SpecialTokenConfig& config);
  // Encodes text that holds no raw added token: normalize, match normalized added tokens,
  // pre-tokenize, BPE.
  struct EncodeState;
  // `at_text_start`: the text begins at offset 0 of Encode()'s input.
  void EncodeSegment(std::string_view segment, bool at_text_start, EncodeState& state) const;
  void EncodeWords(std::string_view text, bool at_text_start, EncodeState& state) const;
  const std::string* PieceOf(TokenId id) const;

  std::unique_ptr<Normalizer> normalizer_;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // may be null
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;  // may be null
  std::unique_ptr<Decoder> decoder_;               // may be null
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;
  std::vector<AddedToken> added_tokens_;
  absl::flat_hash_map<TokenId, size_t> added_by_id_;  // id -> index in added_tokens_
  absl::flat_hash_map<std::string, TokenId> added_by_content_;
  absl::flat_hash_set<std::string> special_contents_;
  absl::flat_hash_set<TokenId> special_ids_;
  int32_t vocab_size_ = 0;
  std::optional<TokenId> bos_id_;
  std::vector<TokenId> eos_ids_;
};

}  // namespace pagoda::tokenizer

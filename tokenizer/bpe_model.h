#pragma once

// The BPE model of tokenizer.json ("model" with "type": "BPE"), bit-exact with Hugging Face's
// tokenizers: vocab, ranked merges, unk_token/fuse_unk, byte_fallback (<0xNN> pieces) and
// ignore_merges. dropout, continuing_subword_prefix and end_of_word_suffix are not supported
// (an Unimplemented error names them).
//
// In byte-level mode (the pre-tokenizer ends with ByteLevel) the vocabulary's byte-level
// spellings ("Ġthe") are translated once to raw bytes (" the"), and words are encoded from their
// raw UTF-8 bytes; this is equivalent to Hugging Face mapping every word to byte-level
// characters first, and saves that step on every call.
//
// Immutable after Create(); EncodeWord() may be called from any number of threads at once.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/ids.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer {

enum class WordEncoding { kUtf8Chars, kByteLevel };

class BpeModel {
 public:
  struct Options {
    WordEncoding word_encoding = WordEncoding::kUtf8Chars;
    // Words with more initial symbols than this merge with a priority queue (O(n log n)), shorter
    // ones with a linear scan, which is faster for them. Both give identical ids.
    size_t heap_merge_threshold = 48;
  };

  // `config` is the tokenizer.json "model" object.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const Json& config,
                                                          const Options& options);

  // Appends the ids of `word` to `ids`. In kUtf8Chars mode `word` must be valid UTF-8.
  void EncodeWord(std::string_view word, std::vector<TokenId>& ids) const;

  // The piece of `id` as spelled in tokenizer.json, or nullptr when `id` is not in the vocab.
  const std::string* IdToPiece(TokenId id) const;
  std::optional<TokenId> PieceToId(std::string_view piece) const;
  // One past the largest id of the vocabulary.
  int32_t id_limit() const { return static_cast<int32_t>(pieces_.size()); }
  bool byte_fallback() const { return byte_fallback_; }

  // True when no merge can join a character to a following "▁" (U+2581): every piece is a run
  // of "▁" followed by characters other than "▁", "▁" itself is a piece, and ignore_merges is off.
  // Then encoding a text as one word equals encoding its pieces "▁*[^▁]*" separately (no pair
  // across them is a merge, and unknown characters cannot fuse across a known "▁"), which
  // SentencePiece-style tokenizers without a pre-tokenizer use to encode long texts word by word.
  bool splits_at_metaspace() const { return splits_at_metaspace_; }

 private:
  struct Merge {
    uint32_t rank;
    TokenId new_id;
  };

  BpeModel() = default;
  absl::Status LoadVocab(const Json& vocab);
  absl::Status LoadMerges(const Json& merges);
  std::optional<TokenId> Lookup(std::string_view model_spelling) const;
  const Merge* FindMerge(TokenId left, TokenId right) const;
  void InitialSymbols(std::string_view word, std::vector<TokenId>& symbols) const;
  void MergeLinear(std::vector<TokenId>& symbols) const;
  void MergeWithHeap(std::vector<TokenId>& symbols) const;

  Options options_;
  // pieces_[id]: the tokenizer.json spelling; has_piece_[id] false for ids the vocab skips.
  std::vector<std::string> pieces_;
  std::vector<bool> has_piece_;
  // Keyed by the model-space spelling (raw bytes in byte-level mode).
  absl::flat_hash_map<std::string, TokenId> model_vocab_;
  // Keyed by the tokenizer.json spelling, for PieceToId().
  absl::flat_hash_map<std::string, TokenId> json_vocab_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::vector<std::optional<TokenId>> byte_ids_;           // [256] in byte-level mode
  std::vector<std::optional<TokenId>> byte_fallback_ids_;  // [256] the <0xNN> pieces
  std::optional<TokenId> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool splits_at_metaspace_ = false;
};

}  // namespace pagoda::tokenizer

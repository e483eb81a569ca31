#pragma once

// Finds added tokens (tokenizer.json "added_tokens") in text before the model runs, with Hugging
// Face's rules: leftmost match first, the longest one among those starting there; lstrip/rstrip
// tokens absorb the Unicode whitespace beside them. single_word tokens are not supported
// (Create() fails naming the option).
//
// Immutable after Create(); Split() may be called from any number of threads at once.

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/ids.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

class AddedTokenMatcher {
 public:
  // A piece of the input: an added token (`token` set) or the text between tokens.
  struct Segment {
    std::string_view text;
    std::optional<TokenId> token;
  };

  // `patterns[i]` is the string to find for `tokens[i]` (its content, or its normalized
  // content for tokens with normalized == true). Empty patterns are ignored.
  static absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> Create(
      const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns);

  bool empty() const { return num_patterns_ == 0; }

  // Cuts `text` (valid UTF-8) into segments, in order, covering all of it except the whitespace
  // absorbed by lstrip/rstrip. Text segments are never empty. The views point into `text`.
  void Split(std::string_view text, std::vector<Segment>& segments) const;

 private:
  struct Terminal {
    TokenId id;
    bool lstrip;
    bool rstrip;
  };
  AddedTokenMatcher() = default;
  // The longest pattern starting at text[pos]: its length and terminal, or length 0.
  std::pair<size_t, const Terminal*> LongestAt(std::string_view text, size_t pos) const;

  // Trie over pattern bytes: edge (node << 8 | byte) -> child node; node 0 is the root.
  absl::flat_hash_map<uint64_t, uint32_t> edges_;
  absl::flat_hash_map<uint32_t, Terminal> terminals_;
  bool first_byte_[256] = {};
  uint32_t num_nodes_ = 1;
  size_t num_patterns_ = 0;
};

}  // namespace pagoda::tokenizer

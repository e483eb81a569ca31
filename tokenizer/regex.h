#pragma once

// A compiled regular expression for the tokenizers' pre-tokenizer and normalizer patterns
// (Oniguruma syntax as written in tokenizer.json: \p{L}, \p{N}, \s, (?i:...), (?!...)).
// Backed by PCRE2 in UTF + UCP mode with JIT compilation.
//
// Immutable after Create(); FindAll() may be called from any number of threads at once.

#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pagoda::tokenizer {

class Regex {
 public:
  // A match [begin, end) in bytes.
  using Span = std::pair<size_t, size_t>;

  static absl::StatusOr<std::unique_ptr<Regex>> Create(std::string_view pattern);
  ~Regex();

  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends to `matches` every non-overlapping match in `text`, left to right. An empty match
  // advances the search by one character. A match that needs more than PCRE2's 32 KiB JIT
  // stack is retried with a stack of up to 256 MiB; past that the rest of `text` is left
  // unmatched. Precondition: `text` is valid UTF-8.
  void FindAll(std::string_view text, std::vector<Span>& matches) const;

 private:
  struct Impl;
  explicit Regex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::tokenizer

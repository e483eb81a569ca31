#pragma once

// Pre-tokenizers of tokenizer.json ("pre_tokenizer" field): they cut normalized text into words
// that the BPE model encodes independently. Supported types: Sequence, Split (Regex or String
// pattern, every split behaviour, invert), Metaspace (replacement, prepend_scheme
// always/first/never or the older add_prefix_space, split) and ByteLevel (add_prefix_space,
// use_regex with the GPT-2 pattern). ByteLevel must come last: it marks the words as byte-level,
// and the BPE model then works on their raw UTF-8 bytes (see BpeModel). Any other type is an
// Unimplemented error naming it.
//
// Immutable after creation; PreTokenize() may be called from any number of threads at once.

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer {

// Storage for word text that is not a substring of the input (e.g. an added prefix space).
// std::deque keeps references to its elements valid as it grows.
using WordArena = std::deque<std::string>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;

  // Replaces each word of `words` by its pieces, in order; empty pieces are dropped. The views
  // point into the caller's text or into `arena`, which must outlive them. `at_text_start`:
  // words[0] begins at offset 0 of the text given to Encode() (Metaspace's "first" scheme).
  virtual void PreTokenize(std::vector<std::string_view>& words, WordArena& arena,
                           bool at_text_start) const = 0;

  // True when the words this produces are byte-level (the last step is ByteLevel).
  virtual bool byte_level() const { return false; }
};

// Builds the pre-tokenizer described by `config` (a tokenizer.json "pre_tokenizer" object).
absl::StatusOr<std::unique_ptr<PreTokenizer>> CreatePreTokenizer(const Json& config);

}  // namespace pagoda::tokenizer

#pragma once

// Normalizers of tokenizer.json ("normalizer" field), applied to the text between added tokens
// before pre-tokenization. Supported types: Sequence, Prepend, Replace (String or Regex pattern),
// NFC, NFD, NFKC, NFKD. Any other type is an Unimplemented error naming it.
//
// Immutable after creation; Normalize() may be called from any number of threads at once.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8 in, valid UTF-8 out).
  virtual void Normalize(std::string& text) const = 0;
};

// Builds the normalizer described by `config` (a tokenizer.json "normalizer" object).
absl::StatusOr<std::unique_ptr<Normalizer>> CreateNormalizer(const Json& config);

}  // namespace pagoda::tokenizer

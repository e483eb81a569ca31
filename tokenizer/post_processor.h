#pragma once

// Post-processors of tokenizer.json ("post_processor" field): they add special tokens around an
// encoded single sequence when Encode() is asked to (e.g. Llama's BOS). Supported types:
// TemplateProcessing (its "single" template), ByteLevel (offsets only: no change to ids) and
// Sequence. Any other type is an Unimplemented error naming it.
//
// Immutable after creation; thread-safe.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ids.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites the ids of one encoded sequence, adding special tokens.
  virtual void AddSpecialTokens(std::vector<TokenId>& ids) const = 0;
};

// Builds the post-processor described by `config` (a tokenizer.json "post_processor" object).
absl::StatusOr<std::unique_ptr<PostProcessor>> CreatePostProcessor(const Json& config);

}  // namespace pagoda::tokenizer

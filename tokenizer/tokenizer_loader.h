#pragma once

// Loads the tokenizer of a model directory (Hugging Face layout).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace pagoda::tokenizer {

// Reads `model_dir`:
//   tokenizer.json           the tokenizer (HfTokenizer). Absent: the built-in ByteTokenizer.
//   tokenizer_config.json    optional; "bos_token" and "eos_token" (a string, an object with
//                            "content", or null) name BOS and an EOS token.
//   generation_config.json   optional; "eos_token_id" (an integer or a list) adds EOS ids.
// NotFound when `model_dir` is not a directory; InvalidArgument / Unimplemented (naming the
// file and the component) when a file is malformed or uses an unsupported component.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

// The special-token settings of tokenizer_config.json and generation_config.json texts (either
// may be empty, meaning absent).
absl::StatusOr<SpecialTokenConfig> ParseSpecialTokenConfig(std::string_view tokenizer_config,
                                                           std::string_view generation_config);

}  // namespace pagoda::tokenizer

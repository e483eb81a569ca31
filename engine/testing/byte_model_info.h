#pragma once

// Test support: the EngineInfo of a small served model with the byte tokenizer, for the front
// ends' translation tests and fuzzers. Header-only.

#include <string>

#include "engine/engine_info.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::engine::testing {

// 258 tokens (the byte tokenizer's), 64-token contexts and a KV cache of 16 blocks of 16 tokens.
inline EngineInfo ByteModelInfo(std::string model_name = "test-model") {
  EngineInfo info;
  info.model_name = std::move(model_name);
  info.vocab_size = tokenizer::ByteTokenizer::kVocabSize;
  info.max_model_len = 64;
  info.block_size = 16;
  info.num_kv_blocks = 16;
  info.has_tokenizer = true;
  return info;
}

}  // namespace pagoda::engine::testing

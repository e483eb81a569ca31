#pragma once

// Small tokenizer.json texts for unit tests, and where the shared stories260K model lives.

#include <filesystem>
#include <string>

#include "tokenizer/byte_level.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer::testing {

// The decoder of Llama 2 style (SentencePiece BPE with byte fallback) tokenizer.json files:
// "▁" back to spaces, byte pieces to bytes, fuse, strip the one leading space.
inline Json SentencePieceDecoderJson() {
  return {{"type", "Sequence"},
          {"decoders",
           Json::array(
               {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}},
                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
}

// Byte-level BPE (GPT-2 style): the 256 byte pieces, then "Ġt", "he", "Ġthe", "Ġthe" merges,
// and a special added token "<|end|>". `extra` is merged into the top-level object.
inline std::string ByteLevelTokenizerJson(const Json& extra = Json::object()) {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, char(b)))] = b;
  vocab["\xC4\xA0t"] = 256;  // "Ġt"
  vocab["he"] = 257;
  vocab["\xC4\xA0the"] = 258;
  Json root = {
      {"added_tokens", Json::array({{{"id", 259},
                                     {"content", "<|end|>"},
                                     {"special", true},
                                     {"normalized", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"single_word", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", Json::array({"\xC4\xA0 t", "h e", "\xC4\xA0t he"})}}}};
  root.update(extra);
  return root.dump();
}

inline std::filesystem::path Stories260KDir() {
  return std::filesystem::path(PAGODA_SHARED_MODELS_DIR) / "stories260K";
}

}  // namespace pagoda::tokenizer::testing

#pragma once

// Decoders of tokenizer.json ("decoder" field): they turn the pieces of a token sequence back
// into text. Supported types: Sequence, ByteLevel, Metaspace, Replace (String pattern),
// ByteFallback, Fuse, Strip. Any other type is an Unimplemented error naming it. Semantics follow
// Hugging Face's decode_chain: each decoder maps the list of piece strings to a new list, and the
// text is the concatenation of the final list.
//
// Immutable after creation; DecodeChain() may be called from any number of threads at once.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/json_fields.h"

namespace pagoda::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites `pieces` in place. Input pieces are valid UTF-8; so are output pieces.
  virtual void DecodeChain(std::vector<std::string>& pieces) const = 0;
  // True when this decoder (or one in its sequence) is ByteFallback.
  virtual bool has_byte_fallback() const { return false; }
};

// Builds the decoder described by `config` (a tokenizer.json "decoder" object).
absl::StatusOr<std::unique_ptr<Decoder>> CreateDecoder(const Json& config);

// The byte of a byte-fallback piece "<0xNN>" as Hugging Face parses it, or nullopt.
std::optional<uint8_t> ParseByteFallbackPiece(std::string_view piece);

}  // namespace pagoda::tokenizer

#pragma once

// GPT-2's reversible map between bytes and printable characters, used by byte-level BPE
// vocabularies ("Ġ" is the byte 0x20). Pure functions over a constant table; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pagoda::tokenizer {

// The character that stands for `byte` in a byte-level vocabulary.
char32_t ByteLevelChar(uint8_t byte);

// The bytes that the byte-level `piece` stands for, or nullopt when `piece` holds a character
// outside the map (or is not valid UTF-8).
std::optional<std::string> ByteLevelToBytes(std::string_view piece);

// The byte-level spelling of raw `bytes` (inverse of ByteLevelToBytes).
std::string BytesToByteLevel(std::string_view bytes);

}  // namespace pagoda::tokenizer

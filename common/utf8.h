#pragma once

// UTF-8 helpers shared by the tokenizers, the detokenizer and the front ends' wire checks. Pure
// functions; thread-safe.

#include <cstddef>
#include <string>
#include <string_view>

namespace pagoda::common {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 encoding of `code_point` (< 0x110000) to `out`.
void AppendUtf8(char32_t code_point, std::string& out);

// Returns `text` with every maximal invalid subsequence replaced by U+FFFD, exactly as the WHATWG
// decoder (JavaScript's TextDecoder, Node's Buffer#toString) and Rust's String::from_utf8_lossy
// do. Valid input is returned unchanged.
std::string SanitizeUtf8(std::string_view text);

// True when `text` is well-formed UTF-8 (no surrogates, no overlongs, <= U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Length in bytes (1..4) of the well-formed UTF-8 sequence starting at text[pos], or 0 when the
// bytes there do not start one. Precondition: pos < text.size().
size_t ValidSequenceLength(std::string_view text, size_t pos);

// Decodes the code point of the valid sequence of `length` bytes at text[pos].
char32_t DecodeValidSequence(std::string_view text, size_t pos, size_t length);

// True when `text` ends with U+FFFD, the mark of a (possibly still incomplete) invalid sequence.
bool EndsWithReplacementChar(std::string_view text);

}  // namespace pagoda::common

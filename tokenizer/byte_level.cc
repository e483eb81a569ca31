#include "tokenizer/byte_level.h"

#include <array>

#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

struct Tables {
  std::array<char32_t, 256> byte_to_char;
  std::array<int16_t, 324> char_to_byte;  // every mapped character is below U+0144
};

Tables MakeTables() {
  Tables t{};
  t.char_to_byte.fill(-1);
  int next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    // Printable Latin-1 stands for itself; the rest is moved to U+0100 and up, in byte order.
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next_extra++);
    t.byte_to_char[b] = c;
    t.char_to_byte[c] = static_cast<int16_t>(b);
  }
  return t;
}

const Tables& GetTables() {
  static const Tables tables = MakeTables();
  return tables;
}

}  // namespace

char32_t ByteLevelChar(uint8_t byte) { return GetTables().byte_to_char[byte]; }

std::optional<std::string> ByteLevelToBytes(std::string_view piece) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(piece.size());
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t n = common::ValidSequenceLength(piece, pos);
    if (n == 0) return std::nullopt;
    const char32_t c = common::DecodeValidSequence(piece, pos, n);
    if (c >= t.char_to_byte.size() || t.char_to_byte[c] < 0) return std::nullopt;
    out.push_back(static_cast<char>(t.char_to_byte[c]));
    pos += n;
  }
  return out;
}

std::string BytesToByteLevel(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char b : bytes) common::AppendUtf8(ByteLevelChar(static_cast<uint8_t>(b)), out);
  return out;
}

}  // namespace pagoda::tokenizer

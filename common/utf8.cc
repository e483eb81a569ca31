#include "common/utf8.h"

#include <cstdint>

namespace pagoda::common {
namespace {

// Bounds of the second byte for a lead byte (Unicode Table 3-7); later bytes are 0x80..0xBF.
struct LeadInfo {
  size_t length;  // 0 when the byte cannot start a sequence
  uint8_t second_min;
  uint8_t second_max;
};

LeadInfo Lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes at `pos` that form a valid prefix of a sequence (the WHATWG "maximal
// subpart"), and whether the sequence is complete.
size_t ValidPrefixLength(std::string_view text, size_t pos, bool* complete) {
  const LeadInfo lead = Lead(static_cast<uint8_t>(text[pos]));
  *complete = false;
  if (lead.length == 0) return 0;
  size_t n = 1;
  while (n < lead.length && pos + n < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos + n]);
    const uint8_t lo = n == 1 ? lead.second_min : 0x80;
    const uint8_t hi = n == 1 ? lead.second_max : 0xBF;
    if (b < lo || b > hi) return n;
    ++n;
  }
  *complete = n == lead.length;
  return n;
}

}  // namespace

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  bool complete = false;
  const size_t n = ValidPrefixLength(text, pos, &complete);
  return complete ? n : 0;
}

char32_t DecodeValidSequence(std::string_view text, size_t pos, size_t length) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (length == 1) return b0;
  static constexpr uint8_t kLeadMask[5] = {0, 0, 0x1F, 0x0F, 0x07};
  char32_t cp = b0 & kLeadMask[length];
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  return cp;
}

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view text) {
  if (IsValidUtf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  size_t pos = 0;
  while (pos < text.size()) {
    bool complete = false;
    const size_t n = ValidPrefixLength(text, pos, &complete);
    if (complete) {
      out.append(text.substr(pos, n));
      pos += n;
    } else {
      // One U+FFFD per maximal subpart; a byte that starts nothing is a subpart of one.
      AppendUtf8(kReplacementChar, out);
      pos += n == 0 ? 1 : n;
    }
  }
  return out;
}

bool EndsWithReplacementChar(std::string_view text) {
  return text.size() >= 3 && text.substr(text.size() - 3) == "\xEF\xBF\xBD";
}

}  // namespace pagoda::common

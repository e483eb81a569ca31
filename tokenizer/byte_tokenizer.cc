#include "tokenizer/byte_tokenizer.h"

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {

ByteTokenizer::ByteTokenizer()
    : eos_ids_{kEosId},
      added_tokens_{{.id = kBosId, .content = "<s>", .special = true},
                    {.id = kEosId, .content = "</s>", .special = true}} {}

std::vector<TokenId> ByteTokenizer::Encode(std::string_view text, AddSpecialTokens add) const {
  const std::string sanitized = common::SanitizeUtf8(text);
  std::vector<TokenId> ids;
  ids.reserve(sanitized.size() + 1);
  if (add == AddSpecialTokens::kYes) ids.push_back(kBosId);
  for (const char c : sanitized) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

std::string ByteTokenizer::Decode(absl::Span<const TokenId> ids, SkipSpecialTokens skip) const {
  std::string bytes;
  std::string out;
  for (const TokenId id : ids) {
    if (id >= 0 && id < 256) {
      bytes.push_back(static_cast<char>(id));
    } else if (IsSpecial(id) && skip == SkipSpecialTokens::kNo) {
      // Lossy decoding is local, so flushing the bytes before a special token gives the same
      // text as decoding all bytes at once would around it.
      out += common::SanitizeUtf8(bytes);
      bytes.clear();
      out += id == kBosId ? "<s>" : "</s>";
    }
  }
  out += common::SanitizeUtf8(bytes);
  return out;
}

std::optional<std::string> ByteTokenizer::IdToPiece(TokenId id) const {
  if (id == kBosId) return "<s>";
  if (id == kEosId) return "</s>";
  if (id < 0 || id >= 256) return std::nullopt;
  return absl::StrFormat("<0x%02X>", id);
}

std::optional<TokenId> ByteTokenizer::PieceToId(std::string_view piece) const {
  if (piece == "<s>") return kBosId;
  if (piece == "</s>") return kEosId;
  for (TokenId id = 0; id < 256; ++id) {
    if (piece == *IdToPiece(id)) return id;
  }
  return std::nullopt;
}

}  // namespace pagoda::tokenizer

#include "tokenizer/decoder.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "tokenizer/byte_level.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void DecodeChain(std::vector<std::string>& pieces) const override {
    for (const auto& part : parts_) part->DecodeChain(pieces);
  }
  bool has_byte_fallback() const override {
    for (const auto& part : parts_) {
      if (part->has_byte_fallback()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

class ByteLevelDecoder final : public Decoder {
 public:
  // All pieces become one string: a character can span pieces, so the bytes are joined before
  // the (lossy) UTF-8 decoding. A piece with a character outside the byte map contributes its
  // own UTF-8 bytes, as in Hugging Face.
  void DecodeChain(std::vector<std::string>& pieces) const override {
    std::string bytes;
    for (const std::string& piece : pieces) {
      if (std::optional<std::string> raw = ByteLevelToBytes(piece)) {
        bytes += *raw;
      } else {
        bytes += piece;
      }
    }
    pieces.assign(1, common::SanitizeUtf8(bytes));
  }
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& pieces) const override {
    if (pattern_.empty()) return;
    for (std::string& piece : pieces) piece = absl::StrReplaceAll(piece, {{pattern_, content_}});
  }

 private:
  std::string pattern_;
  std::string content_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  // A run of byte pieces becomes its UTF-8 text, or one U+FFFD per byte when the run as a
  // whole is not valid UTF-8 (Hugging Face's rule, not the per-subsequence lossy one).
  void DecodeChain(std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (common::IsValidUtf8(run)) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (std::string& piece : pieces) {
      if (std::optional<uint8_t> byte = ParseByteFallbackPiece(piece)) {
        run.push_back(static_cast<char>(*byte));
      } else {
        flush();
        out.push_back(std::move(piece));
      }
    }
    flush();
    pieces = std::move(out);
  }
  bool has_byte_fallback() const override { return true; }
};

class FuseDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& pieces) const override {
    pieces.assign(1, absl::StrJoin(pieces, ""));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}

  // Removes up to start_ leading and stop_ trailing `content_` characters from every piece.
  void DecodeChain(std::vector<std::string>& pieces) const override {
    std::string needle;
    common::AppendUtf8(content_, needle);
    for (std::string& piece : pieces) {
      size_t begin = 0;
      for (size_t i = 0; i < start_ && piece.compare(begin, needle.size(), needle) == 0; ++i) {
        begin += needle.size();
      }
      size_t end = piece.size();
      for (size_t i = 0; i < stop_ && end >= begin + needle.size() &&
                         piece.compare(end - needle.size(), needle.size(), needle) == 0;
           ++i) {
        end -= needle.size();
      }
      piece = piece.substr(begin, end - begin);
    }
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}

  // The replacement becomes a space, except in the first piece, where Hugging Face drops every
  // replacement character unless the prepend scheme is "never".
  void DecodeChain(std::vector<std::string>& pieces) const override {
    for (size_t i = 0; i < pieces.size(); ++i) {
      const absl::string_view with = i == 0 && strip_first_ ? "" : " ";
      pieces[i] = absl::StrReplaceAll(pieces[i], {{replacement_, with}});
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

absl::StatusOr<std::unique_ptr<Decoder>> CreateMetaspace(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(std::string replacement, GetString(config, "replacement"));
  PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> scheme,
                          GetOptionalString(config, "prepend_scheme"));
  PAGODA_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBoolOr(config, "add_prefix_space", true));
  if (replacement.empty()) return absl::InvalidArgumentError("Metaspace needs a replacement");
  const bool strip_first = scheme.has_value() ? *scheme != "never" : add_prefix_space;
  return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
}

absl::StatusOr<std::unique_ptr<Decoder>> CreateStrip(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string content, GetString(config, "content"));
  PAGODA_ASSIGN_OR_RETURN(const int64_t start, GetInt(config, "start"));
  PAGODA_ASSIGN_OR_RETURN(const int64_t stop, GetInt(config, "stop"));
  const size_t length = content.empty() ? 0 : common::ValidSequenceLength(content, 0);
  if (length == 0 || length != content.size() || start < 0 || stop < 0) {
    return absl::InvalidArgumentError("Strip decoder needs one character and counts >= 0");
  }
  return std::make_unique<StripDecoder>(common::DecodeValidSequence(content, 0, length),
                                        static_cast<size_t>(start), static_cast<size_t>(stop));
}

absl::StatusOr<std::unique_ptr<Decoder>> CreateReplace(const Json& config) {
  const Json* pattern = FindField(config, "pattern");
  if (pattern == nullptr || FindField(*pattern, "String") == nullptr) {
    return absl::UnimplementedError("unsupported Replace decoder: only String patterns");
  }
  PAGODA_ASSIGN_OR_RETURN(std::string literal, GetString(*pattern, "String"));
  PAGODA_ASSIGN_OR_RETURN(std::string content, GetString(config, "content"));
  return std::make_unique<ReplaceDecoder>(std::move(literal), std::move(content));
}

}  // namespace

std::optional<uint8_t> ParseByteFallbackPiece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  // Rust's u8::from_str_radix also accepts a leading '+', e.g. "<0x+A>".
  if (piece[3] == '+') {
    const int d = HexDigit(piece[4]);
    return d < 0 ? std::nullopt : std::optional<uint8_t>(static_cast<uint8_t>(d));
  }
  const int hi = HexDigit(piece[3]);
  const int lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

absl::StatusOr<std::unique_ptr<Decoder>> CreateDecoder(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string type, GetType(config, "decoder"));
  if (type == "Sequence") {
    const Json* list = FindField(config, "decoders");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence decoder needs a \"decoders\" array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const Json& item : *list) {
      PAGODA_ASSIGN_OR_RETURN(auto part, CreateDecoder(item));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") return CreateMetaspace(config);
  if (type == "Replace") return CreateReplace(config);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") return CreateStrip(config);
  return absl::UnimplementedError(absl::StrCat("unsupported decoder type \"", type, "\""));
}

}  // namespace pagoda::tokenizer

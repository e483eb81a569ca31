#include "tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "tokenizer/regex.h"

namespace pagoda::tokenizer {
namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Normalize(std::string& text) const override {
    for (const auto& part : parts_) part->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  // Hugging Face prepends only to non-empty text.
  void Normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}

  void Normalize(std::string& text) const override {
    if (regex_ == nullptr) {
      if (!literal_.empty()) text = absl::StrReplaceAll(text, {{literal_, content_}});
      return;
    }
    std::vector<Regex::Span> matches;
    regex_->FindAll(text, matches);
    if (matches.empty()) return;
    std::string out;
    size_t pos = 0;
    for (const auto& [begin, end] : matches) {
      out.append(text, pos, begin - pos);
      out += content_;
      pos = end;
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;  // null for a literal pattern
  std::string content_;
};

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* icu) : icu_(icu) {}

  void Normalize(std::string& text) const override {
    // Text below U+0300 (which holds all ASCII and Latin-1) is in every normal form except for
    // a few compatibility characters, so the quick check skips the conversion for most text.
    UErrorCode status = U_ZERO_ERROR;
    if (icu_->isNormalizedUTF8(text, status) && U_SUCCESS(status)) return;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    status = U_ZERO_ERROR;
    icu_->normalizeUTF8(0, text, sink, nullptr, status);
    if (U_SUCCESS(status)) text = std::move(out);
  }

 private:
  const icu::Normalizer2* icu_;  // owned by ICU, lives for the process
};

absl::StatusOr<std::unique_ptr<Normalizer>> CreateUnicode(UnicodeForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* icu = nullptr;
  switch (form) {
    case UnicodeForm::kNfc:
      icu = icu::Normalizer2::getNFCInstance(status);
      break;
    case UnicodeForm::kNfd:
      icu = icu::Normalizer2::getNFDInstance(status);
      break;
    case UnicodeForm::kNfkc:
      icu = icu::Normalizer2::getNFKCInstance(status);
      break;
    case UnicodeForm::kNfkd:
      icu = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status) || icu == nullptr) {
    return absl::InternalError(absl::StrCat("ICU normalizer unavailable: ", u_errorName(status)));
  }
  return std::make_unique<UnicodeNormalizer>(icu);
}

absl::StatusOr<std::unique_ptr<Normalizer>> CreateReplace(const Json& config) {
  const Json* pattern = FindField(config, "pattern");
  PAGODA_ASSIGN_OR_RETURN(std::string content, GetString(config, "content"));
  if (pattern != nullptr && FindField(*pattern, "String") != nullptr) {
    PAGODA_ASSIGN_OR_RETURN(std::string literal, GetString(*pattern, "String"));
    return std::make_unique<ReplaceNormalizer>(std::move(literal), nullptr, std::move(content));
  }
  if (pattern != nullptr && FindField(*pattern, "Regex") != nullptr) {
    PAGODA_ASSIGN_OR_RETURN(std::string source, GetString(*pattern, "Regex"));
    PAGODA_ASSIGN_OR_RETURN(auto regex, Regex::Create(source));
    return std::make_unique<ReplaceNormalizer>("", std::move(regex), std::move(content));
  }
  return absl::InvalidArgumentError("Replace normalizer needs a String or Regex pattern");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> CreateNormalizer(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string type, GetType(config, "normalizer"));
  if (type == "Sequence") {
    const Json* list = FindField(config, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence normalizer needs a \"normalizers\" array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Json& item : *list) {
      PAGODA_ASSIGN_OR_RETURN(auto part, CreateNormalizer(item));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") {
    PAGODA_ASSIGN_OR_RETURN(std::string prefix, GetString(config, "prepend"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") return CreateReplace(config);
  if (type == "NFC") return CreateUnicode(UnicodeForm::kNfc);
  if (type == "NFD") return CreateUnicode(UnicodeForm::kNfd);
  if (type == "NFKC") return CreateUnicode(UnicodeForm::kNfkc);
  if (type == "NFKD") return CreateUnicode(UnicodeForm::kNfkd);
  return absl::UnimplementedError(absl::StrCat("unsupported normalizer type \"", type, "\""));
}

}  // namespace pagoda::tokenizer

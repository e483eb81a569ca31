#include "tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "tokenizer/regex.h"

namespace pagoda::tokenizer {
namespace {

// GPT-2's pattern, which ByteLevel uses when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Piece {
  size_t begin;
  size_t end;
  bool is_match;
};

// Pieces covering all of `word`: the matches of the pattern and the gaps between them.
std::vector<Piece> MatchPieces(std::string_view word, const Regex* regex, std::string_view literal,
                               bool invert) {
  std::vector<Regex::Span> matches;
  if (regex != nullptr) {
    regex->FindAll(word, matches);
  } else if (!literal.empty()) {
    for (size_t pos = word.find(literal); pos != std::string_view::npos;
         pos = word.find(literal, pos + literal.size())) {
      matches.emplace_back(pos, pos + literal.size());
    }
  }
  std::vector<Piece> pieces;
  size_t pos = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > pos) pieces.push_back({pos, begin, invert});
    pieces.push_back({begin, end, !invert});
    pos = end;
  }
  if (pos < word.size()) pieces.push_back({pos, word.size(), invert});
  return pieces;
}

// Applies a split behaviour the way Hugging Face's NormalizedString::split does.
std::vector<Piece> ApplyBehavior(std::vector<Piece> pieces, SplitBehavior behavior) {
  std::vector<Piece> out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return pieces;
    case SplitBehavior::kRemoved:
      for (const Piece& p : pieces) {
        if (!p.is_match) out.push_back(p);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match && !previous_match && !out.empty()) {
          out.back().end = p.end;
        } else {
          out.push_back(p);
        }
        previous_match = p.is_match;
      }
      return out;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match == previous_match && !out.empty()) {
          out.back().end = p.end;
        } else {
          out.push_back(p);
        }
        previous_match = p.is_match;
      }
      return out;
    }
  }
  return pieces;
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, std::string literal, SplitBehavior behavior,
                    bool invert)
      : regex_(std::move(regex)),
        literal_(std::move(literal)),
        behavior_(behavior),
        invert_(invert) {}

  void PreTokenize(std::vector<std::string_view>& words, WordArena& /*arena*/,
                   bool /*at_text_start*/) const override {
    std::vector<std::string_view> out;
    out.reserve(words.size() * 2);
    for (const std::string_view word : words) {
      auto pieces = ApplyBehavior(MatchPieces(word, regex_.get(), literal_, invert_), behavior_);
      for (const Piece& p : pieces) {
        if (p.end > p.begin) out.push_back(word.substr(p.begin, p.end - p.begin));
      }
    }
    words = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;  // null for a literal pattern
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<SplitPreTokenizer> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}

  void PreTokenize(std::vector<std::string_view>& words, WordArena& arena,
                   bool at_text_start) const override {
    if (add_prefix_space_) {
      for (std::string_view& word : words) {
        if (!word.empty() && word.front() != ' ') {
          // One allocation (`" " + std::string(word)` makes two).
          std::string spaced;
          spaced.reserve(word.size() + 1);
          spaced.push_back(' ');
          spaced.append(word);
          arena.push_back(std::move(spaced));
          word = arena.back();
        }
      }
    }
    if (split_ != nullptr) split_->PreTokenize(words, arena, at_text_start);
  }

  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> split_;  // null when use_regex is false
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split ? std::make_unique<SplitPreTokenizer>(nullptr, replacement_,
                                                           SplitBehavior::kMergedWithNext, false)
                     : nullptr) {}

  // Spaces become the replacement; a replacement is prepended to words that lack one (all of
  // them, or only one at the start of the text); then words are cut before each replacement.
  void PreTokenize(std::vector<std::string_view>& words, WordArena& arena,
                   bool at_text_start) const override {
    for (size_t i = 0; i < words.size(); ++i) {
      std::string word = absl::StrReplaceAll(absl::string_view(words[i].data(), words[i].size()),
                                             {{" ", replacement_}});
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && i == 0 && at_text_start);
      if (prepend && word.compare(0, replacement_.size(), replacement_) != 0) {
        word.insert(0, replacement_);
      }
      words[i] = arena.emplace_back(std::move(word));
    }
    if (split_ != nullptr) split_->PreTokenize(words, arena, at_text_start);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::unique_ptr<SplitPreTokenizer> split_;  // null when split is false
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}

  void PreTokenize(std::vector<std::string_view>& words, WordArena& arena,
                   bool at_text_start) const override {
    for (const auto& part : parts_) part->PreTokenize(words, arena, at_text_start);
  }

  bool byte_level() const override { return !parts_.empty() && parts_.back()->byte_level(); }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string name, GetString(config, "behavior"));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::UnimplementedError(absl::StrCat("unsupported Split behavior \"", name, "\""));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> CreateSplit(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(config));
  PAGODA_ASSIGN_OR_RETURN(const bool invert, GetBoolOr(config, "invert", false));
  const Json* pattern = FindField(config, "pattern");
  if (pattern != nullptr && FindField(*pattern, "Regex") != nullptr) {
    PAGODA_ASSIGN_OR_RETURN(const std::string source, GetString(*pattern, "Regex"));
    PAGODA_ASSIGN_OR_RETURN(auto regex, Regex::Create(source));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), "", behavior, invert);
  }
  if (pattern != nullptr && FindField(*pattern, "String") != nullptr) {
    PAGODA_ASSIGN_OR_RETURN(std::string literal, GetString(*pattern, "String"));
    return std::make_unique<SplitPreTokenizer>(nullptr, std::move(literal), behavior, invert);
  }
  return absl::InvalidArgumentError("Split pre-tokenizer needs a Regex or String pattern");
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> CreateByteLevel(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBoolOr(config, "add_prefix_space", true));
  PAGODA_ASSIGN_OR_RETURN(const bool use_regex, GetBoolOr(config, "use_regex", true));
  std::unique_ptr<SplitPreTokenizer> split;
  if (use_regex) {
    PAGODA_ASSIGN_OR_RETURN(auto regex, Regex::Create(kGpt2Pattern));
    split =
        std::make_unique<SplitPreTokenizer>(std::move(regex), "", SplitBehavior::kIsolated, false);
  }
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(split));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> CreateMetaspace(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(std::string replacement, GetString(config, "replacement"));
  PAGODA_ASSIGN_OR_RETURN(const bool split, GetBoolOr(config, "split", true));
  PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> scheme_name,
                          GetOptionalString(config, "prepend_scheme"));
  PAGODA_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBoolOr(config, "add_prefix_space", true));
  PrependScheme scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  if (scheme_name.has_value()) {
    if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return absl::UnimplementedError(
          absl::StrCat("unsupported Metaspace prepend_scheme \"", *scheme_name, "\""));
    }
  }
  if (replacement.empty()) return absl::InvalidArgumentError("Metaspace needs a replacement");
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> CreateSequence(const Json& config) {
  const Json* list = FindField(config, "pretokenizers");
  if (list == nullptr || !list->is_array()) {
    return absl::InvalidArgumentError("Sequence pre-tokenizer needs a \"pretokenizers\" array");
  }
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  for (const Json& item : *list) {
    if (!parts.empty() && parts.back()->byte_level()) {
      return absl::UnimplementedError(
          "unsupported pre-tokenizer: ByteLevel must be the last pre-tokenizer");
    }
    PAGODA_ASSIGN_OR_RETURN(auto part, CreatePreTokenizer(item));
    parts.push_back(std::move(part));
  }
  return std::make_unique<SequencePreTokenizer>(std::move(parts));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> CreatePreTokenizer(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string type, GetType(config, "pre_tokenizer"));
  if (type == "Sequence") return CreateSequence(config);
  if (type == "Split") return CreateSplit(config);
  if (type == "ByteLevel") return CreateByteLevel(config);
  if (type == "Metaspace") return CreateMetaspace(config);
  return absl::UnimplementedError(absl::StrCat("unsupported pre_tokenizer type \"", type, "\""));
}

}  // namespace pagoda::tokenizer

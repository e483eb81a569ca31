#include "tokenizer/hf_tokenizer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Words longer than this are not cached: they rarely repeat and would bloat the cache.
constexpr size_t kMaxCachedWordBytes = 64;

bool IsPresent(const Json* field) { return field != nullptr && !field->is_null(); }

absl::StatusOr<AddedToken> ParseAddedToken(const Json& item) {
  AddedToken token;
  PAGODA_ASSIGN_OR_RETURN(const int64_t id, GetInt(item, "id"));
  if (id < 0 || id > 16 * 1024 * 1024) return absl::InvalidArgumentError("bad added token id");
  token.id = static_cast<TokenId>(id);
  PAGODA_ASSIGN_OR_RETURN(token.content, GetString(item, "content"));
  PAGODA_ASSIGN_OR_RETURN(token.special, GetBoolOr(item, "special", false));
  PAGODA_ASSIGN_OR_RETURN(token.normalized, GetBoolOr(item, "normalized", !token.special));
  PAGODA_ASSIGN_OR_RETURN(token.lstrip, GetBoolOr(item, "lstrip", false));
  PAGODA_ASSIGN_OR_RETURN(token.rstrip, GetBoolOr(item, "rstrip", false));
  PAGODA_ASSIGN_OR_RETURN(const bool single_word, GetBoolOr(item, "single_word", false));
  if (single_word) {
    return absl::UnimplementedError(
        absl::StrCat("unsupported added token option single_word (\"", token.content, "\")"));
  }
  if (!common::IsValidUtf8(token.content)) {
    return absl::InvalidArgumentError("added token content is not valid UTF-8");
  }
  return token;
}

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581

// Cuts `text` before every run of "▁" that follows another character (see
// BpeModel::splits_at_metaspace for why this leaves the ids unchanged).
void SplitWordAtMetaspace(std::string_view text, std::vector<std::string_view>& words) {
  size_t begin = 0;
  size_t pos = text.find(kMetaspace);
  while (pos != std::string_view::npos) {
    const bool after_metaspace =
        pos >= kMetaspace.size() &&
        text.substr(pos - kMetaspace.size(), kMetaspace.size()) == kMetaspace;
    if (pos > begin && !after_metaspace) {
      words.push_back(text.substr(begin, pos - begin));
      begin = pos;
    }
    pos = text.find(kMetaspace, pos + kMetaspace.size());
  }
  if (text.size() > begin) words.push_back(text.substr(begin));
}

void SplitAtMetaspace(std::vector<std::string_view>& words) {
  std::vector<std::string_view> out;
  out.reserve(words.size());
  for (const std::string_view word : words) SplitWordAtMetaspace(word, out);
  words = std::move(out);
}

}  // namespace

// Per-call scratch: the output, text storage for normalized segments and pre-tokenized words,
// and a cache of the ids of words already seen in this call (long texts repeat words a lot).
struct HfTokenizer::EncodeState {
  std::vector<TokenId> ids;
  WordArena arena;
  std::vector<std::string_view> words;
  std::vector<AddedTokenMatcher::Segment> segments;
  absl::flat_hash_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;  // -> [begin, end)
  std::vector<TokenId> cached_ids;
};

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Create(std::string_view tokenizer_json,
                                                                 const SpecialTokenConfig& config) {
  PAGODA_ASSIGN_OR_RETURN(const Json root, ParseJson(tokenizer_json, "tokenizer.json"));
  if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json must be an object");
  auto tokenizer = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  PAGODA_RETURN_IF_ERROR(tokenizer->LoadComponents(root));
  PAGODA_RETURN_IF_ERROR(tokenizer->LoadAddedTokens(root));
  PAGODA_RETURN_IF_ERROR(tokenizer->ApplyConfig(config));
  return tokenizer;
}

absl::Status HfTokenizer::LoadComponents(const Json& root) {
  if (const Json* n = FindField(root, "normalizer"); IsPresent(n)) {
    PAGODA_ASSIGN_OR_RETURN(normalizer_, CreateNormalizer(*n));
  }
  if (const Json* p = FindField(root, "pre_tokenizer"); IsPresent(p)) {
    PAGODA_ASSIGN_OR_RETURN(pre_tokenizer_, CreatePreTokenizer(*p));
  }
  const Json* model = FindField(root, "model");
  if (!IsPresent(model)) return absl::InvalidArgumentError("tokenizer.json has no \"model\"");
  BpeModel::Options options;
  if (pre_tokenizer_ != nullptr && pre_tokenizer_->byte_level()) {
    options.word_encoding = WordEncoding::kByteLevel;
  }
  PAGODA_ASSIGN_OR_RETURN(model_, BpeModel::Create(*model, options));
  if (const Json* p = FindField(root, "post_processor"); IsPresent(p)) {
    PAGODA_ASSIGN_OR_RETURN(post_processor_, CreatePostProcessor(*p));
  }
  if (const Json* d = FindField(root, "decoder"); IsPresent(d)) {
    PAGODA_ASSIGN_OR_RETURN(decoder_, CreateDecoder(*d));
  }
  return absl::OkStatus();
}

absl::Status HfTokenizer::LoadAddedTokens(const Json& root) {
  const Json* list = FindField(root, "added_tokens");
  if (IsPresent(list) && !list->is_array()) {
    return absl::InvalidArgumentError("\"added_tokens\" must be an array");
  }
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  if (IsPresent(list)) {
    for (const Json& item : *list) {
      PAGODA_ASSIGN_OR_RETURN(AddedToken token, ParseAddedToken(item));
      added_by_id_.insert_or_assign(token.id, added_tokens_.size());
      added_by_content_.try_emplace(token.content, token.id);
      if (token.special) {
        special_contents_.insert(token.content);
        special_ids_.insert(token.id);
      }
      // Hugging Face finds normalized tokens in normalized text, by their normalized content.
      if (token.normalized && normalizer_ != nullptr) {
        std::string pattern = token.content;
        normalizer_->Normalize(pattern);
        normalized.push_back(token);
        normalized_patterns.push_back(std::move(pattern));
      } else {
        raw.push_back(token);
        raw_patterns.push_back(token.content);
      }
      added_tokens_.push_back(std::move(token));
    }
  }
  PAGODA_ASSIGN_OR_RETURN(raw_matcher_, AddedTokenMatcher::Create(raw, raw_patterns));
  PAGODA_ASSIGN_OR_RETURN(normalized_matcher_,
                          AddedTokenMatcher::Create(normalized, normalized_patterns));
  vocab_size_ = model_->id_limit();
  for (const AddedToken& token : added_tokens_) vocab_size_ = std::max(vocab_size_, token.id + 1);
  return absl::OkStatus();
}

absl::Status HfTokenizer::ApplyConfig(const SpecialTokenConfig& config) {
  if (config.bos_token.has_value()) {
    bos_id_ = PieceToId(*config.bos_token);
    if (!bos_id_.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bos_token \"", *config.bos_token, "\" is not in the vocabulary"));
    }
  }
  for (const std::string& eos : config.eos_tokens) {
    const std::optional<TokenId> id = PieceToId(eos);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("eos_token \"", eos, "\" is not in the vocabulary"));
    }
    eos_ids_.push_back(*id);
  }
  for (const TokenId id : config.eos_ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("eos id ", id, " is out of range"));
    }
    eos_ids_.push_back(id);
  }
  std::sort(eos_ids_.begin(), eos_ids_.end());
  eos_ids_.erase(std::unique(eos_ids_.begin(), eos_ids_.end()), eos_ids_.end());
  return absl::OkStatus();
}

std::vector<TokenId> HfTokenizer::Encode(std::string_view text, AddSpecialTokens add) const {
  EncodeState state;
  const std::string& sanitized = state.arena.emplace_back(common::SanitizeUtf8(text));
  std::vector<AddedTokenMatcher::Segment> segments;
  raw_matcher_->Split(sanitized, segments);
  for (const AddedTokenMatcher::Segment& segment : segments) {
    if (segment.token.has_value()) {
      state.ids.push_back(*segment.token);
    } else {
      EncodeSegment(segment.text, segment.text.data() == sanitized.data(), state);
    }
  }
  if (add == AddSpecialTokens::kYes && post_processor_ != nullptr) {
    post_processor_->AddSpecialTokens(state.ids);
  }
  return std::move(state.ids);
}

void HfTokenizer::EncodeSegment(std::string_view segment, bool at_text_start,
                                EncodeState& state) const {
  std::string_view text = segment;
  if (normalizer_ != nullptr) {
    std::string& normalized = state.arena.emplace_back(segment);
    normalizer_->Normalize(normalized);
    text = normalized;
  }
  if (normalized_matcher_->empty()) {
    EncodeWords(text, at_text_start, state);
    return;
  }
  state.segments.clear();
  normalized_matcher_->Split(text, state.segments);
  const std::vector<AddedTokenMatcher::Segment> pieces = std::move(state.segments);
  for (const AddedTokenMatcher::Segment& piece : pieces) {
    if (piece.token.has_value()) {
      state.ids.push_back(*piece.token);
    } else {
      EncodeWords(piece.text, at_text_start && piece.text.data() == text.data(), state);
    }
  }
}

void HfTokenizer::EncodeWords(std::string_view text, bool at_text_start, EncodeState& state) const {
  state.words.assign(1, text);
  if (pre_tokenizer_ != nullptr)
    pre_tokenizer_->PreTokenize(state.words, state.arena, at_text_start);
  if (model_->splits_at_metaspace()) SplitAtMetaspace(state.words);
  for (const std::string_view word : state.words) {
    if (word.size() > kMaxCachedWordBytes) {
      model_->EncodeWord(word, state.ids);
      continue;
    }
    if (const auto it = state.cache.find(word); it != state.cache.end()) {
      const auto [begin, end] = it->second;
      state.ids.insert(state.ids.end(), state.cached_ids.begin() + begin,
                       state.cached_ids.begin() + end);
      continue;
    }
    const auto begin = static_cast<uint32_t>(state.cached_ids.size());
    model_->EncodeWord(word, state.cached_ids);
    const auto end = static_cast<uint32_t>(state.cached_ids.size());
    state.cache.emplace(word, std::make_pair(begin, end));
    state.ids.insert(state.ids.end(), state.cached_ids.begin() + begin,
                     state.cached_ids.begin() + end);
  }
}

const std::string* HfTokenizer::PieceOf(TokenId id) const {
  if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
    return &added_tokens_[it->second].content;
  }
  return model_->IdToPiece(id);
}

std::string HfTokenizer::Decode(absl::Span<const TokenId> ids, SkipSpecialTokens skip) const {
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (const TokenId id : ids) {
    const std::string* piece = PieceOf(id);
    if (piece == nullptr) continue;
    // Hugging Face skips by content: any piece spelled like a special token is dropped.
    if (skip == SkipSpecialTokens::kYes && special_contents_.contains(*piece)) continue;
    pieces.push_back(*piece);
  }
  if (decoder_ == nullptr) return absl::StrJoin(pieces, " ");
  decoder_->DecodeChain(pieces);
  return absl::StrJoin(pieces, "");
}

std::optional<std::string> HfTokenizer::IdToPiece(TokenId id) const {
  const std::string* piece = PieceOf(id);
  if (piece == nullptr) return std::nullopt;
  return *piece;
}

std::optional<TokenId> HfTokenizer::PieceToId(std::string_view piece) const {
  if (const auto it = added_by_content_.find(absl::string_view(piece.data(), piece.size()));
      it != added_by_content_.end()) {
    return it->second;
  }
  return model_->PieceToId(piece);
}

bool HfTokenizer::IsByteFallback(TokenId id) const {
  if (decoder_ == nullptr || !decoder_->has_byte_fallback() || added_by_id_.contains(id)) {
    return false;
  }
  const std::string* piece = model_->IdToPiece(id);
  return piece != nullptr && ParseByteFallbackPiece(*piece).has_value();
}

}  // namespace pagoda::tokenizer

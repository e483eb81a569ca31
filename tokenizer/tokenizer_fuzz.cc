// Fuzz target for the tokenizers (libFuzzer entry point; tokenizer_fuzz_replay.cc replays a
// corpus through it under ctest). The first input byte picks what the rest is:
//   0: a tokenizer.json for HfTokenizer::Create (when it loads, a fixed text is encoded and
//      decoded with it), and the same bytes as tokenizer_config.json / generation_config.json
//   1: text to encode with the built-in tokenizers, then decode
//   2: token ids (little-endian 16-bit) to decode and to stream
//   3: stop strings and text (separated by '\n'; the last line is the text) for the matcher
// Beyond "never crashes", it aborts when a contract breaks: decode output is not valid UTF-8,
// streaming differs from decoding, or byte tokenization does not round-trip.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/stop_string_matcher.h"
#include "tokenizer/test_tokenizers.h"
#include "tokenizer/tokenizer_loader.h"

namespace pagoda::tokenizer {
namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

// A SentencePiece-style tokenizer (Llama 2 layout) with byte fallback and a few merges.
std::string SentencePieceJson() {
  Json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
    vocab[piece] = 3 + b;
  }
  const char* pieces[] = {"\xE2\x96\x81",
                          "a",
                          "b",
                          "\xE2\x96\x81"
                          "a",
                          "ab",
                          "\xE2\x96\x81"
                          "ab"};
  for (int i = 0; i < 6; ++i) vocab[pieces[i]] = 259 + i;
  const Json special = {{"special", true}, {"normalized", false}};
  Json added = Json::array();
  for (int i = 0; i < 3; ++i) {
    Json token = special;
    token["id"] = i;
    token["content"] = i == 0 ? "<unk>" : (i == 1 ? "<s>" : "</s>");
    added.push_back(token);
  }
  const Json root = {
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", Json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                     {{"type", "Replace"},
                                      {"pattern", {{"String", " "}}},
                                      {"content", "\xE2\x96\x81"}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         Json::array({{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}})},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}}}}}}},
      {"decoder", testing::SentencePieceDecoderJson()},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"merges", Json::array({"\xE2\x96\x81 a", "a b", "\xE2\x96\x81 ab"})}}}};
  return root.dump();
}

// A GPT-2 style byte-level tokenizer with a Llama 3 split pattern.
std::string ByteLevelJson() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevel(std::string(1, char(b)))] = b;
  vocab["\xC4\xA0t"] = 256;
  vocab["he"] = 257;
  vocab["\xC4\xA0the"] = 258;
  const Json root = {
      {"added_tokens", Json::array({{{"id", 259},
                                     {"content", "<|end|>"},
                                     {"special", true},
                                     {"normalized", false},
                                     {"rstrip", true}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         Json::array(
             {{{"type", "Split"},
               {"behavior", "Isolated"},
               {"pattern",
                {{"Regex",
                  R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"ignore_merges", true},
        {"merges", Json::array({"\xC4\xA0 t", "h e", "\xC4\xA0t he"})}}}};
  return root.dump();
}

const std::vector<std::unique_ptr<Tokenizer>>& Tokenizers() {
  static const auto* tokenizers = [] {
    auto* list = new std::vector<std::unique_ptr<Tokenizer>>();
    list->push_back(std::make_unique<ByteTokenizer>());
    list->push_back(*HfTokenizer::Create(SentencePieceJson()));
    list->push_back(*HfTokenizer::Create(ByteLevelJson()));
    return list;
  }();
  return *tokenizers;
}

void CheckStreaming(const Tokenizer& tokenizer, const std::vector<TokenId>& ids) {
  for (const SkipSpecialTokens skip : {SkipSpecialTokens::kYes, SkipSpecialTokens::kNo}) {
    const std::string full = tokenizer.Decode(ids, skip);
    Require(common::IsValidUtf8(full));
    IncrementalDetokenizer detokenizer(tokenizer, {.skip_special_tokens = skip});
    std::string streamed;
    for (const TokenId id : ids) {
      const std::string delta = detokenizer.Append({id});
      Require(common::IsValidUtf8(delta));
      streamed += delta;
    }
    streamed += detokenizer.Flush();
    Require(streamed == full);
  }
}

void FuzzTokenizerJson(std::string_view json) {
  // The same bytes as tokenizer_config.json / generation_config.json: the special tokens they
  // name must resolve or fail cleanly.
  auto config = ParseSpecialTokenConfig(json, json);
  if (config.ok() &&
      (config->bos_token.has_value() || !config->eos_tokens.empty() || !config->eos_ids.empty())) {
    static const std::string* const kSentencePiece = new std::string(SentencePieceJson());
    auto with_config = HfTokenizer::Create(*kSentencePiece, *config);
    if (with_config.ok()) {
      // Every EOS token named by the config is among the EOS ids.
      const std::vector<TokenId>& eos_ids = (*with_config)->eos_ids();
      for (const std::string& eos : config->eos_tokens) {
        const std::optional<TokenId> id = (*with_config)->PieceToId(eos);
        Require(id.has_value() && std::find(eos_ids.begin(), eos_ids.end(), *id) != eos_ids.end());
      }
    }
  }
  auto tokenizer = HfTokenizer::Create(json);
  if (!tokenizer.ok()) return;
  const auto ids =
      (*tokenizer)->Encode("Hello world <s> \xE4\xB8\xAD 42\n\t!", AddSpecialTokens::kYes);
  Require(common::IsValidUtf8((*tokenizer)->Decode(ids, SkipSpecialTokens::kNo)));
  std::vector<TokenId> all_ids;
  for (TokenId id = -1; id <= std::min((*tokenizer)->vocab_size(), 600); ++id)
    all_ids.push_back(id);
  Require(common::IsValidUtf8((*tokenizer)->Decode(all_ids, SkipSpecialTokens::kNo)));
}

void FuzzText(std::string_view text) {
  for (const auto& tokenizer : Tokenizers()) {
    const auto ids = tokenizer->Encode(text, AddSpecialTokens::kYes);
    for (const TokenId id : ids) Require(id >= 0 && id < tokenizer->vocab_size());
    const std::string decoded = tokenizer->Decode(ids, SkipSpecialTokens::kYes);
    Require(common::IsValidUtf8(decoded));
    CheckStreaming(*tokenizer, ids);
  }
  // Byte tokens carry the (sanitized) text exactly.
  const auto& bytes = *Tokenizers()[0];
  Require(bytes.Decode(bytes.Encode(text, AddSpecialTokens::kNo), SkipSpecialTokens::kNo) ==
          common::SanitizeUtf8(text));
}

void FuzzIds(std::string_view data) {
  std::vector<TokenId> ids;
  for (size_t i = 0; i + 1 < data.size(); i += 2) {
    ids.push_back(static_cast<int16_t>(static_cast<uint8_t>(data[i]) |
                                       (static_cast<uint8_t>(data[i + 1]) << 8)) %
                  400);
  }
  for (const auto& tokenizer : Tokenizers()) CheckStreaming(*tokenizer, ids);
}

void FuzzStopStrings(std::string_view data) {
  std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(data.data(), data.size()), '\n');
  const std::string text = lines.back();
  lines.pop_back();
  StopStringMatcher matcher({.stop_strings = lines});
  std::string out;
  for (size_t i = 0; i < text.size() && !matcher.stopped(); i += 3) {
    out += matcher.Append(std::string_view(text).substr(i, 3)).text;
  }
  if (!matcher.stopped()) {
    out += matcher.Flush();
    Require(out == text);
  } else {
    Require(text.compare(0, out.size(), out) == 0);
  }
}

}  // namespace
}  // namespace pagoda::tokenizer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      pagoda::tokenizer::FuzzTokenizerJson(rest);
      break;
    case 1:
      pagoda::tokenizer::FuzzText(rest);
      break;
    case 2:
      pagoda::tokenizer::FuzzIds(rest);
      break;
    default:
      pagoda::tokenizer::FuzzStopStrings(rest);
      break;
  }
  return 0;
}

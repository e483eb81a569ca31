#include "tokenizer/hf_tokenizer.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/test_tokenizers.h"
#include "tokenizer/tokenizer_loader.h"

namespace pagoda::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<HfTokenizer> MakeByteLevel() {
  auto tokenizer = HfTokenizer::Create(testing::ByteLevelTokenizerJson());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return std::move(tokenizer).value();
}

TEST(HfTokenizerTest, ByteLevelBpeAppliesMergesByRank) {
  auto tokenizer = MakeByteLevel();
  // "the" -> t + he; " the" -> Ġt + he -> Ġthe.
  EXPECT_THAT(tokenizer->Encode("the the", AddSpecialTokens::kYes), ElementsAre('t', 257, 258));
  EXPECT_EQ(tokenizer->Decode({'t', 257, 258}, SkipSpecialTokens::kNo), "the the");
  EXPECT_EQ(tokenizer->vocab_size(), 260);
}

TEST(HfTokenizerTest, AddedTokensAreMatchedBeforeTheModel) {
  auto tokenizer = MakeByteLevel();
  EXPECT_THAT(tokenizer->Encode("a<|end|>b", AddSpecialTokens::kNo), ElementsAre('a', 259, 'b'));
  EXPECT_EQ(tokenizer->Decode({'a', 259, 'b'}, SkipSpecialTokens::kNo), "a<|end|>b");
  EXPECT_EQ(tokenizer->Decode({'a', 259, 'b'}, SkipSpecialTokens::kYes), "ab");
  EXPECT_TRUE(tokenizer->IsSpecial(259));
  EXPECT_EQ(tokenizer->IdToPiece(259), "<|end|>");
  EXPECT_EQ(tokenizer->PieceToId("\xC4\xA0the"), 258);
}

TEST(HfTokenizerTest, InvalidUtf8IsReplacedAndDecodesLossily) {
  auto tokenizer = MakeByteLevel();
  const auto ids = tokenizer->Encode("\xFF", AddSpecialTokens::kNo);
  EXPECT_THAT(ids, ElementsAre(0xEF, 0xBF, 0xBD));
  // Byte-level pieces that are not valid UTF-8 together decode to U+FFFD.
  EXPECT_EQ(tokenizer->Decode({0xE4, 0xB8, 'a'}, SkipSpecialTokens::kNo),
            "\xEF\xBF\xBD"
            "a");
}

TEST(HfTokenizerTest, UnsupportedComponentsAreNamed) {
  const std::pair<Json, std::string> cases[] = {
      {{{"normalizer", {{"type", "Lowercase"}}}}, "Lowercase"},
      {{{"pre_tokenizer", {{"type", "Whitespace"}}}}, "Whitespace"},
      {{{"decoder", {{"type", "WordPiece"}}}}, "WordPiece"},
      {{{"post_processor", {{"type", "BertProcessing"}}}}, "BertProcessing"},
      {{{"model", {{"type", "Unigram"}, {"vocab", Json::array()}}}}, "Unigram"},
  };
  for (const auto& [extra, name] : cases) {
    auto tokenizer = HfTokenizer::Create(testing::ByteLevelTokenizerJson(extra));
    ASSERT_FALSE(tokenizer.ok()) << name;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(tokenizer.status().message(), HasSubstr(name));
  }
}

TEST(HfTokenizerTest, MalformedFilesAreErrorsNotCrashes) {
  for (const std::string text :
       {"", "{", "[]", "{\"model\": 3}", "{\"model\": {\"type\": \"BPE\"}}",
        R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})",
        R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})"}) {
    EXPECT_FALSE(HfTokenizer::Create(text).ok()) << text;
  }
}

TEST(HfTokenizerTest, Stories260KMatchesReferenceIds) {
  if (!std::filesystem::exists(testing::Stories260KDir())) GTEST_SKIP() << "no shared models";
  auto loaded = LoadTokenizer(testing::Stories260KDir().string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Tokenizer& tokenizer = **loaded;
  // Expected ids from Hugging Face tokenizers 0.23.2.
  EXPECT_THAT(tokenizer.Encode("Once upon a time", AddSpecialTokens::kYes),
              ElementsAre(1, 403, 407, 261, 378));
  EXPECT_THAT(tokenizer.Encode("Hello <s>world", AddSpecialTokens::kYes),
              ElementsAre(1, 346, 306, 414, 410, 1, 263, 304, 341));
  EXPECT_THAT(tokenizer.Encode("\xE4\xB8\xAD", AddSpecialTokens::kYes),
              ElementsAre(1, 410, 231, 187, 176));
  EXPECT_THAT(tokenizer.Encode("  x", AddSpecialTokens::kNo), ElementsAre(410, 410, 410, 444));
  EXPECT_EQ(tokenizer.Decode({1, 403, 407, 261, 378}, SkipSpecialTokens::kYes), "Once upon a time");
  EXPECT_EQ(tokenizer.Decode({1, 403, 407}, SkipSpecialTokens::kNo), "<s> Once upon");
  EXPECT_TRUE(tokenizer.IsByteFallback(231));
  EXPECT_FALSE(tokenizer.IsByteFallback(403));
}

}  // namespace
}  // namespace pagoda::tokenizer

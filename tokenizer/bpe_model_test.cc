#include "tokenizer/bpe_model.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "tokenizer/test_tokenizers.h"

namespace pagoda::tokenizer {
namespace {

Json ModelOf(const std::string& tokenizer_json) {
  const Json root = *ParseJson(tokenizer_json, "test");
  return *FindField(root, "model");
}

// The linear merge (short words) and the heap merge (long words) must give identical ids.
void ExpectMergeStrategiesAgree(const Json& model_json, WordEncoding encoding,
                                const std::vector<std::string>& alphabet) {
  auto linear =
      BpeModel::Create(model_json, {.word_encoding = encoding, .heap_merge_threshold = 1 << 20});
  auto heap = BpeModel::Create(model_json, {.word_encoding = encoding, .heap_merge_threshold = 0});
  ASSERT_TRUE(linear.ok()) << linear.status();
  ASSERT_TRUE(heap.ok()) << heap.status();
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(1, 80);
  for (int i = 0; i < 3000; ++i) {
    std::string word;
    for (int n = length(rng); n > 0; --n) word += alphabet[pick(rng)];
    std::vector<TokenId> a, b;
    (*linear)->EncodeWord(word, a);
    (*heap)->EncodeWord(word, b);
    ASSERT_EQ(a, b) << word;
  }
}

TEST(BpeModelTest, LinearAndHeapMergesAgreeByteLevel) {
  ExpectMergeStrategiesAgree(ModelOf(testing::ByteLevelTokenizerJson()), WordEncoding::kByteLevel,
                             {"t", "h", "e", " ", "x", "\xC3\xA9"});
}

TEST(BpeModelTest, LinearAndHeapMergesAgreeStories260K) {
  const auto path = testing::Stories260KDir() / "tokenizer.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no shared models";
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  ExpectMergeStrategiesAgree(
      ModelOf(text.str()), WordEncoding::kUtf8Chars,
      {"\xE2\x96\x81", "t", "h", "e", "a", "n", "d", "o", "s", "\xE4\xB8\xAD"});
}

TEST(BpeModelTest, UnknownCharactersUseByteFallbackOrFusedUnk) {
  Json model = {
      {"type", "BPE"},           {"vocab", {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}}},
      {"merges", Json::array()}, {"unk_token", "<unk>"},
      {"fuse_unk", true},        {"byte_fallback", true}};
  auto with_fallback = BpeModel::Create(model, {});
  ASSERT_TRUE(with_fallback.ok()) << with_fallback.status();
  std::vector<TokenId> ids;
  (*with_fallback)
      ->EncodeWord(
          "a\xC3\xA9"
          "bc",
          ids);
  // é falls back to its bytes; "bc" has no byte pieces, so it becomes one fused <unk>.
  EXPECT_EQ(ids, (std::vector<TokenId>{1, 2, 3, 0}));
  model["fuse_unk"] = false;
  auto unfused = BpeModel::Create(model, {});
  ids.clear();
  (*unfused)->EncodeWord("bc", ids);
  EXPECT_EQ(ids, (std::vector<TokenId>{0, 0}));
}

TEST(BpeModelTest, IgnoreMergesTakesWholeWordsFromTheVocab) {
  Json model = {{"type", "BPE"},
                {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"abb", 3}}},
                {"merges", Json::array({"a b"})},
                {"ignore_merges", true}};
  auto bpe = BpeModel::Create(model, {});
  ASSERT_TRUE(bpe.ok()) << bpe.status();
  std::vector<TokenId> ids;
  (*bpe)->EncodeWord("abb", ids);  // no merge makes "abb", but the vocab has it
  EXPECT_EQ(ids, (std::vector<TokenId>{3}));
}

TEST(BpeModelTest, UnsupportedOptionsAreNamed) {
  const Json model = {{"type", "BPE"},
                      {"vocab", {{"a", 0}}},
                      {"merges", Json::array()},
                      {"continuing_subword_prefix", "##"}};
  const auto bpe = BpeModel::Create(model, {});
  EXPECT_EQ(bpe.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(bpe.status().message().find("continuing_subword_prefix"), std::string::npos);
}

}  // namespace
}  // namespace pagoda::tokenizer

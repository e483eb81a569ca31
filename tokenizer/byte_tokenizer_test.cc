#include "tokenizer/byte_tokenizer.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::tokenizer {
namespace {

using ::testing::ElementsAre;

TEST(ByteTokenizerTest, EncodesBytesAndPrependsBos) {
  ByteTokenizer tokenizer;
  EXPECT_THAT(tokenizer.Encode("Hi", AddSpecialTokens::kYes),
              ElementsAre(ByteTokenizer::kBosId, 'H', 'i'));
  EXPECT_THAT(tokenizer.Encode("\xC3\xA9", AddSpecialTokens::kNo), ElementsAre(0xC3, 0xA9));
  // "<s>" in text is three ordinary bytes.
  EXPECT_THAT(tokenizer.Encode("<s>", AddSpecialTokens::kNo), ElementsAre('<', 's', '>'));
}

TEST(ByteTokenizerTest, InvalidUtf8IsReplacedBeforeEncoding) {
  ByteTokenizer tokenizer;
  EXPECT_THAT(tokenizer.Encode("a\xFF", AddSpecialTokens::kNo), ElementsAre('a', 0xEF, 0xBF, 0xBD));
}

TEST(ByteTokenizerTest, DecodeRoundTripsAndHandlesSpecials) {
  ByteTokenizer tokenizer;
  const std::string text = "caf\xC3\xA9 \xF0\x9F\x98\x80";
  const auto ids = tokenizer.Encode(text, AddSpecialTokens::kYes);
  EXPECT_EQ(tokenizer.Decode(ids, SkipSpecialTokens::kYes), text);
  EXPECT_EQ(tokenizer.Decode(ids, SkipSpecialTokens::kNo), "<s>" + text);
  const std::vector<TokenId> broken = {0xE4, 0xB8, ByteTokenizer::kEosId, -1, 9999};
  EXPECT_EQ(tokenizer.Decode(broken, SkipSpecialTokens::kNo), "\xEF\xBF\xBD</s>");
}

TEST(ByteTokenizerTest, VocabularyAndPieces) {
  ByteTokenizer tokenizer;
  EXPECT_EQ(tokenizer.vocab_size(), 258);
  EXPECT_EQ(tokenizer.bos_id(), ByteTokenizer::kBosId);
  EXPECT_THAT(tokenizer.eos_ids(), ElementsAre(ByteTokenizer::kEosId));
  EXPECT_EQ(tokenizer.IdToPiece(0x0A), "<0x0A>");
  EXPECT_EQ(tokenizer.PieceToId("<0x0A>"), 0x0A);
  EXPECT_EQ(tokenizer.PieceToId("</s>"), ByteTokenizer::kEosId);
  EXPECT_FALSE(tokenizer.IdToPiece(258).has_value());
  EXPECT_TRUE(tokenizer.IsSpecial(ByteTokenizer::kBosId));
  EXPECT_FALSE(tokenizer.IsSpecial('a'));
}

}  // namespace
}  // namespace pagoda::tokenizer

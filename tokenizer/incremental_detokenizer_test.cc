#include "tokenizer/incremental_detokenizer.h"

#include <cstdio>
#include <filesystem>
#include <random>

#include "gtest/gtest.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/stop_string_matcher.h"
#include "tokenizer/test_tokenizers.h"
#include "tokenizer/tokenizer_loader.h"
#include "common/utf8.h"

namespace pagoda::tokenizer {
namespace {

// Streams `ids` in chunks of 1..3 and returns the deltas; checks each is valid UTF-8.
std::vector<std::string> Stream(const Tokenizer& tokenizer, const std::vector<TokenId>& ids,
                                SkipSpecialTokens skip, std::mt19937& rng) {
  IncrementalDetokenizer detokenizer(tokenizer, {.skip_special_tokens = skip});
  std::uniform_int_distribution<size_t> step(1, 3);
  std::vector<std::string> deltas;
  for (size_t i = 0; i < ids.size();) {
    const size_t n = std::min(step(rng), ids.size() - i);
    deltas.push_back(detokenizer.Append(absl::MakeConstSpan(ids).subspan(i, n)));
    EXPECT_TRUE(common::IsValidUtf8(deltas.back()));
    i += n;
  }
  deltas.push_back(detokenizer.Flush());
  return deltas;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += p;
  return out;
}

void ExpectStreamingEqualsDecode(const Tokenizer& tokenizer, int max_id) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<TokenId> id(0, max_id);
  std::uniform_int_distribution<int> length(0, 24);
  for (int i = 0; i < 2000; ++i) {
    std::vector<TokenId> ids;
    for (int n = length(rng); n > 0; --n) ids.push_back(id(rng));
    for (const SkipSpecialTokens skip : {SkipSpecialTokens::kYes, SkipSpecialTokens::kNo}) {
      ASSERT_EQ(Join(Stream(tokenizer, ids, skip, rng)), tokenizer.Decode(ids, skip));
    }
  }
}

TEST(IncrementalDetokenizerTest, ByteTokenizerStreamsEqualDecode) {
  ByteTokenizer tokenizer;
  ExpectStreamingEqualsDecode(tokenizer, ByteTokenizer::kVocabSize - 1);
}

TEST(IncrementalDetokenizerTest, ByteLevelBpeStreamsEqualDecode) {
  auto tokenizer = HfTokenizer::Create(testing::ByteLevelTokenizerJson());
  ASSERT_TRUE(tokenizer.ok());
  ExpectStreamingEqualsDecode(**tokenizer, (*tokenizer)->vocab_size());  // includes an unknown id
}

// A vocabulary without a plain letter gives no anchor: the detokenizer falls back to decoding
// the whole sequence each step, with the same result.
TEST(IncrementalDetokenizerTest, WithoutAnAnchorStreamsEqualDecode) {
  Json vocab = {{"<s>", 0}, {"\xE2\x96\x81", 1}, {"\xE2\x96\x81\xE2\x96\x81", 2}};
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
    vocab[piece] = 3 + b;
  }
  const Json root = {
      {"added_tokens", Json::array({{{"id", 0}, {"content", "<s>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}},
      {"decoder", testing::SentencePieceDecoderJson()},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"byte_fallback", true},
        {"merges", Json::array({"\xE2\x96\x81 \xE2\x96\x81"})}}}};
  auto tokenizer = HfTokenizer::Create(root.dump());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ExpectStreamingEqualsDecode(**tokenizer, 260);
}

TEST(IncrementalDetokenizerTest, MultiByteCharacterIsEmittedWhole) {
  ByteTokenizer tokenizer;
  IncrementalDetokenizer detokenizer(tokenizer, {});
  EXPECT_EQ(detokenizer.Append({'a'}), "a");
  EXPECT_EQ(detokenizer.Append({0xF0}), "");
  EXPECT_EQ(detokenizer.Append({0x9F}), "");
  EXPECT_EQ(detokenizer.Append({0x98}), "");
  EXPECT_EQ(detokenizer.Append({0x80}), "\xF0\x9F\x98\x80");
  EXPECT_EQ(detokenizer.Flush(), "");
}

// A long run of U+FFFD (here genuine EF BF BD characters) is released as it settles instead of
// being held to the end, and the stream still equals the full decode.
// Long streams of mostly non-ASCII bytes: many U+FFFD runs, settled and released mid-stream.
TEST(IncrementalDetokenizerTest, LongInvalidByteStreamsEqualDecode) {
  ByteTokenizer bytes;
  auto byte_level = HfTokenizer::Create(testing::ByteLevelTokenizerJson());
  ASSERT_TRUE(byte_level.ok());
  std::mt19937 rng(5);
  std::uniform_int_distribution<TokenId> high(0x80, 0xFF);
  std::uniform_int_distribution<TokenId> any(0, 259);
  std::uniform_int_distribution<int> percent(0, 99);
  for (const Tokenizer* tokenizer :
       {static_cast<const Tokenizer*>(&bytes), static_cast<const Tokenizer*>(byte_level->get())}) {
    for (int i = 0; i < 200; ++i) {
      std::vector<TokenId> ids;
      for (int n = 0; n < 300; ++n) ids.push_back(percent(rng) < 80 ? high(rng) : any(rng));
      for (const SkipSpecialTokens skip : {SkipSpecialTokens::kYes, SkipSpecialTokens::kNo}) {
        ASSERT_EQ(Join(Stream(*tokenizer, ids, skip, rng)), tokenizer->Decode(ids, skip));
      }
    }
  }
}

TEST(IncrementalDetokenizerTest, LongReplacementCharacterRunsAreNotHeldToTheEnd) {
  ByteTokenizer tokenizer;
  std::vector<TokenId> ids;
  for (int i = 0; i < 3000; ++i) ids.insert(ids.end(), {0xEF, 0xBF, 0xBD});
  IncrementalDetokenizer detokenizer(tokenizer, {});
  std::string streamed;
  size_t max_held_bytes = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    streamed += detokenizer.Append({ids[i]});
    max_held_bytes = std::max(max_held_bytes, i + 1 - streamed.size());
  }
  streamed += detokenizer.Flush();
  EXPECT_EQ(streamed, tokenizer.Decode(ids, SkipSpecialTokens::kYes));
  EXPECT_LT(max_held_bytes, 32u);
}

class Stories260KDetokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::Stories260KDir())) GTEST_SKIP() << "no shared models";
    auto tokenizer = LoadTokenizer(testing::Stories260KDir().string());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(tokenizer).value();
  }
  std::unique_ptr<Tokenizer> tokenizer_;
};

// Detokenizer and stop-string matcher together, as the engine uses them: the streamed output is
// the full text cut before the first occurrence of the stop string, wherever the token
// boundaries fall.
TEST_F(Stories260KDetokenizerTest, StopStringsAcrossTokenBoundaries) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<TokenId> id(3, 511);  // no specials
  for (int i = 0; i < 500; ++i) {
    std::vector<TokenId> ids;
    for (int n = 0; n < 30; ++n) ids.push_back(id(rng));
    const std::string full = tokenizer_->Decode(ids, SkipSpecialTokens::kYes);
    if (full.size() < 8) continue;
    std::uniform_int_distribution<size_t> start(0, full.size() - 4);
    const std::string stop = full.substr(start(rng), 3);
    if (!common::IsValidUtf8(stop)) continue;
    IncrementalDetokenizer detokenizer(*tokenizer_, {});
    StopStringMatcher matcher({.stop_strings = {stop}});
    std::string out;
    for (size_t k = 0; k < ids.size() && !matcher.stopped(); ++k) {
      out += matcher.Append(detokenizer.Append({ids[k]})).text;
    }
    if (!matcher.stopped()) out += matcher.Append(detokenizer.Flush()).text;
    ASSERT_TRUE(matcher.stopped()) << full << " / " << stop;
    ASSERT_EQ(out, full.substr(0, full.find(stop)));
  }
}

TEST_F(Stories260KDetokenizerTest, RandomSequencesStreamEqualDecode) {
  ExpectStreamingEqualsDecode(*tokenizer_, 511);
}

TEST_F(Stories260KDetokenizerTest, LeadingSpaceIsStrippedOnlyAtTheStart) {
  IncrementalDetokenizer detokenizer(*tokenizer_, {});
  EXPECT_EQ(detokenizer.Append({403}), "Once");  // "▁Once"
  EXPECT_EQ(detokenizer.Append({407}), " upon");
  EXPECT_EQ(detokenizer.Append({261}), " a");
}

TEST_F(Stories260KDetokenizerTest, ByteFallbackRunIsHeldUntilItEnds) {
  const auto ids = tokenizer_->Encode("\xE4\xB8\xAD!", AddSpecialTokens::kNo);  // "中!"
  IncrementalDetokenizer detokenizer(*tokenizer_, {});
  std::string streamed;
  for (const TokenId id : ids) streamed += detokenizer.Append({id});
  streamed += detokenizer.Flush();
  EXPECT_EQ(streamed, "\xE4\xB8\xAD!");  // "▁" + bytes + "!", first space stripped
  EXPECT_EQ(streamed, tokenizer_->Decode(ids, SkipSpecialTokens::kYes));
}

}  // namespace
}  // namespace pagoda::tokenizer

#include "tokenizer/tokenizer_loader.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/byte_tokenizer.h"
#include "tokenizer/test_tokenizers.h"

namespace pagoda::tokenizer {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TokenizerLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pagoda_loader_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  fs::path dir_;
};

TEST_F(TokenizerLoaderTest, DirectoryWithoutTokenizerFileGetsTheByteTokenizer) {
  auto tokenizer = LoadTokenizer(dir_.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_NE(dynamic_cast<ByteTokenizer*>(tokenizer->get()), nullptr);
}

TEST_F(TokenizerLoaderTest, MissingDirectoryIsNotFound) {
  EXPECT_EQ(LoadTokenizer((dir_ / "nope").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TokenizerLoaderTest, ConfigsNameBosAndEos) {
  Write("tokenizer.json", testing::ByteLevelTokenizerJson());
  Write("tokenizer_config.json",
        R"({"bos_token": {"content": "a", "special": false}, "eos_token": "<|end|>"})");
  Write("generation_config.json", R"({"eos_token_id": [259, 7]})");
  auto tokenizer = LoadTokenizer(dir_.string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), 'a');
  EXPECT_THAT((*tokenizer)->eos_ids(), ElementsAre(7, 259));
}

TEST_F(TokenizerLoaderTest, ErrorsNameTheFile) {
  Write("tokenizer.json", "{not json");
  const absl::Status status = LoadTokenizer(dir_.string()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tokenizer.json"));
}

TEST_F(TokenizerLoaderTest, UnknownEosTokenIsAnError) {
  Write("tokenizer.json", testing::ByteLevelTokenizerJson());
  Write("tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  EXPECT_THAT(LoadTokenizer(dir_.string()).status().message(), HasSubstr("<|nope|>"));
}

TEST(TokenizerLoaderStoriesTest, LoadsStories260K) {
  if (!fs::exists(testing::Stories260KDir())) GTEST_SKIP() << "no shared models";
  auto tokenizer = LoadTokenizer(testing::Stories260KDir().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 512);
  EXPECT_EQ((*tokenizer)->bos_id(), 1);
  EXPECT_THAT((*tokenizer)->eos_ids(), ElementsAre(2));
}

}  // namespace
}  // namespace pagoda::tokenizer

#include "server/model_info.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::server {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

engine::EngineInfo TestInfo() {
  engine::EngineInfo info;
  info.model_name = "m";
  info.config.num_layers = 2;
  info.config.num_heads = 4;
  info.config.num_kv_heads = 2;
  info.config.head_dim = 16;
  info.config.hidden_size = 64;
  info.max_model_len = 512;
  info.block_size = 16;
  info.num_kv_blocks = 100;
  info.kv_dtype = model::DType::kBF16;
  info.weight_dtype = model::DType::kF32;
  info.backend = "cpu";
  info.has_tokenizer = true;
  info.prefix_caching = true;
  info.max_num_seqs = 8;
  info.max_num_batched_tokens = 256;
  info.eos_token_ids = {257};
  info.bos_token_id = 256;
  info.vocab_size = 258;
  return info;
}

TEST(ModelInfoTest, EveryFieldIsFilled) {
  const v1::ModelInfo info = MakeModelInfo(TestInfo());
  EXPECT_EQ(info.model_name(), "m");
  EXPECT_EQ(info.max_model_len(), 512u);
  EXPECT_EQ(info.vocab_size(), 258u);
  EXPECT_THAT(info.eos_token_ids(), ElementsAre(257));
  EXPECT_EQ(info.bos_token_id(), 256u);
  EXPECT_EQ(info.block_size(), 16u);
  EXPECT_EQ(info.num_kv_blocks(), 100u);
  EXPECT_EQ(info.kv_cache_dtype(), v1::DATA_TYPE_BFLOAT16);
  EXPECT_EQ(info.weight_dtype(), v1::DATA_TYPE_FLOAT32);
  EXPECT_TRUE(info.supports_text_input());
  EXPECT_TRUE(info.prefix_caching_enabled());
  EXPECT_EQ(info.backend(), v1::BACKEND_CPU);
  EXPECT_EQ(info.max_num_seqs(), 8u);
  EXPECT_EQ(info.max_num_batched_tokens(), 256u);
  EXPECT_EQ(info.num_layers(), 2u);
  EXPECT_EQ(info.num_attention_heads(), 4u);
  EXPECT_EQ(info.num_kv_heads(), 2u);
  EXPECT_EQ(info.head_dim(), 16u);
  EXPECT_EQ(info.hidden_size(), 64u);
  EXPECT_EQ(info.sliding_window(), 0u);
  EXPECT_FALSE(info.kv_window_frees_blocks());
  EXPECT_EQ(info.attention_sinks(), 0u);
  EXPECT_EQ(info.streaming_window(), 0u);

  engine::EngineInfo streaming = TestInfo();
  streaming.kv_window = {.sliding_window = 256, .sink_tokens = 4};
  streaming.streaming = true;
  const v1::ModelInfo with_sinks = MakeModelInfo(streaming);
  EXPECT_TRUE(with_sinks.kv_window_frees_blocks());
  EXPECT_EQ(with_sinks.attention_sinks(), 4u);
  EXPECT_EQ(with_sinks.streaming_window(), 256u);
  engine::EngineInfo windowed = TestInfo();
  windowed.config.sliding_window = 4096;
  windowed.kv_window = {.sliding_window = 4096};
  EXPECT_EQ(MakeModelInfo(windowed).sliding_window(), 4096u);
  EXPECT_EQ(MakeModelInfo(windowed).attention_sinks(), 0u);

  engine::EngineInfo no_bos = TestInfo();
  no_bos.bos_token_id.reset();
  no_bos.backend = "cuda";
  EXPECT_FALSE(MakeModelInfo(no_bos).has_bos_token_id());
  EXPECT_EQ(MakeModelInfo(no_bos).backend(), v1::BACKEND_CUDA);
}

TEST(TokenizeTest, RefusesATextOverTheBound) {
  const tokenizer::ByteTokenizer tokenizer;
  v1::TokenizeRequest request;
  request.set_text(std::string(kMaxTokenizeTextBytes + 1, 'a'));
  const absl::StatusOr<v1::TokenizeResponse> tokens = Tokenize(request, TestInfo(), &tokenizer);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokens.status().message().substr(0, 6), "text: ");
  request.set_text(std::string(kMaxTokenizeTextBytes, 'a'));
  EXPECT_TRUE(Tokenize(request, TestInfo(), &tokenizer).ok());
}

TEST(TokenizeTest, TokenizeAndDetokenize) {
  const tokenizer::ByteTokenizer tokenizer;
  v1::TokenizeRequest request;
  request.set_text("hi");
  request.set_return_token_strings(true);
  absl::StatusOr<v1::TokenizeResponse> tokens = Tokenize(request, TestInfo(), &tokenizer);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_THAT(tokens->token_ids(), ElementsAre(256, 'h', 'i'));
  EXPECT_EQ(tokens->token_strings_size(), 3);

  request.set_no_add_special_tokens(true);
  request.set_return_token_strings(false);
  tokens = Tokenize(request, TestInfo(), &tokenizer);
  EXPECT_THAT(tokens->token_ids(), ElementsAre('h', 'i'));
  EXPECT_TRUE(tokens->token_strings().empty());

  v1::DetokenizeRequest detokenize;
  detokenize.add_token_ids(256);
  detokenize.add_token_ids('o');
  detokenize.add_token_ids('k');
  EXPECT_EQ(Detokenize(detokenize, TestInfo(), &tokenizer)->text(), "ok");
  detokenize.add_token_ids(258);
  const absl::Status bad = Detokenize(detokenize, TestInfo(), &tokenizer).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), StartsWith("token_ids[3]: token id 258"));
}

TEST(TokenizeTest, ErrorsWithoutTokenizerOrForAnotherModel) {
  const tokenizer::ByteTokenizer tokenizer;
  v1::TokenizeRequest request;
  request.set_text("hi");
  EXPECT_EQ(Tokenize(request, TestInfo(), nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Detokenize(v1::DetokenizeRequest(), TestInfo(), nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  request.set_model("other");
  EXPECT_EQ(Tokenize(request, TestInfo(), &tokenizer).status().code(), absl::StatusCode::kNotFound);
  request.set_model("m");
  EXPECT_TRUE(Tokenize(request, TestInfo(), &tokenizer).ok());
}

}  // namespace
}  // namespace pagoda::server

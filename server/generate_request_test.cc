#include "server/generate_request.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/request_validation.h"
#include "engine/testing/byte_model_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/error_reason.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

using engine::testing::ByteModelInfo;

v1::GenerateRequest TokenRequest(std::vector<uint32_t> ids) {
  v1::GenerateRequest request;
  request.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  return request;
}

// What a Generate call's message goes through before the engine queues it: the server's
// translation, then the engine's one validation (which Engine::Submit runs).
absl::StatusOr<engine::EngineRequest> Admit(const v1::GenerateRequest& request,
                                            const engine::EngineInfo& info,
                                            const tokenizer::Tokenizer* tokenizer) {
  absl::StatusOr<engine::EngineRequest> parsed = ParseGenerateRequest(request, info, tokenizer);
  if (!parsed.ok()) return parsed;
  if (absl::Status valid = engine::ValidateEngineRequest(*parsed, info); !valid.ok()) return valid;
  return parsed;
}

class ParseGenerateRequestTest : public ::testing::Test {
 protected:
  absl::StatusOr<engine::EngineRequest> Parse(const v1::GenerateRequest& request) {
    return Admit(request, info_, &tokenizer_);
  }
  // Expects the request to fail with `code`, a message starting with `prefix`, and `reason`.
  void ExpectError(const v1::GenerateRequest& request, absl::StatusCode code,
                   const std::string& prefix,
                   std::optional<ErrorReason> reason = ErrorReason::kInvalidField) {
    const absl::StatusOr<engine::EngineRequest> parsed = Parse(request);
    ASSERT_FALSE(parsed.ok()) << request.DebugString();
    EXPECT_EQ(parsed.status().code(), code) << parsed.status();
    EXPECT_THAT(std::string(parsed.status().message()), StartsWith(prefix));
    EXPECT_EQ(GetErrorReason(parsed.status()), reason) << parsed.status();
  }

  engine::EngineInfo info_ = ByteModelInfo();
  tokenizer::ByteTokenizer tokenizer_;
};

TEST_F(ParseGenerateRequestTest, TextPromptGetsBosAndEveryOptionIsTranslated) {
  v1::GenerateRequest request;
  request.set_text("hi");
  request.set_model("test-model");
  request.set_cache_salt("tenant-a");
  request.set_priority(-3);
  v1::SamplingParams* s = request.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_p(0.9f);
  s->set_top_k(40);
  s->set_min_p(0.05f);
  s->set_seed(1234);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(-0.5f);
  (*s->mutable_logit_bias())[7] = -100.0f;
  (*s->mutable_logit_bias())[3] = 2.5f;
  v1::StoppingParams* stop = request.mutable_stopping();
  stop->set_max_tokens(10);
  stop->set_min_tokens(2);
  stop->add_stop("\n\n");
  stop->add_stop_token_ids(5);
  stop->set_ignore_eos(true);
  stop->set_include_stop_str_in_output(true);
  stop->set_keep_special_tokens(true);

  const absl::StatusOr<engine::EngineRequest> parsed = Parse(request);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->prompt_tokens,
              ElementsAre(tokenizer::ByteTokenizer::kBosId, TokenId{'h'}, TokenId{'i'}));
  EXPECT_EQ(parsed->sampling.temperature, 0.5f);
  EXPECT_EQ(parsed->sampling.top_p, 0.9f);
  EXPECT_EQ(parsed->sampling.top_k, 40);
  EXPECT_EQ(parsed->sampling.min_p, 0.05f);
  EXPECT_EQ(parsed->sampling.seed, 1234u);
  EXPECT_EQ(parsed->sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(parsed->sampling.presence_penalty, 0.5f);
  EXPECT_EQ(parsed->sampling.frequency_penalty, -0.5f);
  using Bias = std::pair<TokenId, float>;
  EXPECT_THAT(parsed->sampling.logit_bias, ElementsAre(Bias{3, 2.5f}, Bias{7, -100.0f}));
  EXPECT_EQ(parsed->stopping.max_tokens, 10);
  EXPECT_EQ(parsed->stopping.min_tokens, 2);
  EXPECT_THAT(parsed->stopping.stop_strings, ElementsAre("\n\n"));
  EXPECT_THAT(parsed->stopping.stop_token_ids, ElementsAre(5));
  EXPECT_TRUE(parsed->stopping.ignore_eos);
  EXPECT_TRUE(parsed->stopping.include_stop_str_in_output);
  EXPECT_TRUE(parsed->stopping.keep_special_tokens);
  EXPECT_EQ(parsed->cache_salt, "tenant-a");
  EXPECT_EQ(parsed->priority, -3);
  EXPECT_TRUE(parsed->detokenize);
  EXPECT_TRUE(parsed->external_id.empty());
}

TEST_F(ParseGenerateRequestTest, DefaultsMatchTheEngineDefaults) {
  const absl::StatusOr<engine::EngineRequest> parsed = Parse(TokenRequest({1, 2, 3}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const engine::EngineRequest defaults;
  EXPECT_THAT(parsed->prompt_tokens, ElementsAre(1, 2, 3));
  EXPECT_EQ(parsed->sampling.temperature, defaults.sampling.temperature);
  EXPECT_EQ(parsed->sampling.top_p, defaults.sampling.top_p);
  EXPECT_EQ(parsed->sampling.top_k, 0);
  EXPECT_FALSE(parsed->sampling.seed.has_value());
  EXPECT_FALSE(parsed->stopping.max_tokens.has_value());
  EXPECT_EQ(parsed->stopping.min_tokens, 0);
  EXPECT_FALSE(parsed->stopping.ignore_eos);
}

TEST_F(ParseGenerateRequestTest, NoAddSpecialTokensAndTruncation) {
  v1::GenerateRequest request;
  request.set_text("abcdef");
  request.set_no_add_special_tokens(true);
  request.set_truncate_prompt_tokens(3);
  const absl::StatusOr<engine::EngineRequest> parsed = Parse(request);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->prompt_tokens, ElementsAre('d', 'e', 'f'));
}

TEST_F(ParseGenerateRequestTest, TopKAtOrAboveTheVocabularyMeansNoLimit) {
  v1::GenerateRequest request = TokenRequest({1});
  request.mutable_sampling()->set_top_k(4000000000u);
  ASSERT_TRUE(Parse(request).ok());
  EXPECT_EQ(Parse(request)->sampling.top_k, 0);
}

TEST_F(ParseGenerateRequestTest, TemperatureZeroIsGreedyAndValid) {
  v1::GenerateRequest request = TokenRequest({1});
  request.mutable_sampling()->set_temperature(0.0f);
  ASSERT_TRUE(Parse(request).ok());
  EXPECT_EQ(Parse(request)->sampling.temperature, 0.0f);
}

TEST_F(ParseGenerateRequestTest, ModelAndUnimplementedFeatures) {
  v1::GenerateRequest request = TokenRequest({1});
  request.set_model("other");
  ExpectError(request, absl::StatusCode::kNotFound, "model: \"other\" is not served", std::nullopt);
  request = TokenRequest({1});
  request.set_n(2);
  ExpectError(request, absl::StatusCode::kUnimplemented, "n: ", std::nullopt);
  request.set_n(1);
  ASSERT_TRUE(Parse(request).ok());
  EXPECT_EQ(Parse(request)->sampling.logprobs, -1);
  request.mutable_logprobs();
  EXPECT_EQ(Parse(request)->sampling.logprobs, 0);
  request.mutable_logprobs()->set_top_logprobs(20);
  EXPECT_EQ(Parse(request)->sampling.logprobs, 20);
  request.mutable_logprobs()->set_top_logprobs(21);
  ExpectError(request, absl::StatusCode::kInvalidArgument, "logprobs.top_logprobs: must be in");
  request.mutable_logprobs()->set_top_logprobs(1);
  EXPECT_EQ(Parse(request)->sampling.prompt_logprobs, -1);
  request.mutable_logprobs()->set_prompt_logprobs(true);
  EXPECT_EQ(Parse(request)->sampling.prompt_logprobs, 1);
}

TEST_F(ParseGenerateRequestTest, ExtraKeysAndCacheSalt) {
  v1::GenerateRequest request = TokenRequest({1});
  (*request.mutable_extra())["zeta"] = "1";
  (*request.mutable_extra())["alpha"] = "2";
  ExpectError(request, absl::StatusCode::kInvalidArgument, "extra[\"alpha\"]: unknown key");
  request = TokenRequest({1});
  request.set_cache_salt(std::string(engine::kMaxCacheSaltBytes + 1, 's'));
  ExpectError(request, absl::StatusCode::kInvalidArgument, "cache_salt: at most 256 bytes");
}

TEST_F(ParseGenerateRequestTest, PromptErrors) {
  ExpectError(v1::GenerateRequest(), absl::StatusCode::kInvalidArgument, "prompt: required");
  v1::GenerateRequest request;
  request.set_text("");
  ExpectError(request, absl::StatusCode::kInvalidArgument, "text: must not be empty");
  // Invalid UTF-8 never gets here: ParseMessage refuses it (message_parsing_test.cc).
  ExpectError(TokenRequest({}), absl::StatusCode::kInvalidArgument,
              "token_ids.ids: must not be empty");
  ExpectError(TokenRequest({1, 258, 3}), absl::StatusCode::kInvalidArgument,
              "token_ids.ids[1]: token id 258 is outside the vocabulary [0, 258)");
  request = TokenRequest({1, 2});
  request.set_truncate_prompt_tokens(0);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "truncate_prompt_tokens: must be in [1, 63], got 0");
  request.set_truncate_prompt_tokens(64);
  ExpectError(request, absl::StatusCode::kInvalidArgument, "truncate_prompt_tokens: ");
}

TEST_F(ParseGenerateRequestTest, TextPromptsNeedATokenizer) {
  v1::GenerateRequest request;
  request.set_text("hello");
  const absl::StatusOr<engine::EngineRequest> parsed =
      ParseGenerateRequest(request, info_, /*tokenizer=*/nullptr);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(parsed.status().message()), StartsWith("text: "));

  const absl::StatusOr<engine::EngineRequest> ids =
      ParseGenerateRequest(TokenRequest({1}), info_, nullptr);
  ASSERT_TRUE(ids.ok());
  EXPECT_FALSE(ids->detokenize);
}

TEST_F(ParseGenerateRequestTest, PromptTooLong) {
  ExpectError(TokenRequest(std::vector<uint32_t>(64, 1)), absl::StatusCode::kInvalidArgument,
              "token_ids.ids: the prompt has 64 tokens; it must be shorter than max_model_len",
              ErrorReason::kPromptTooLong);
  v1::GenerateRequest request;
  request.set_text(std::string(70, 'a'));
  ExpectError(request, absl::StatusCode::kInvalidArgument, "text: the prompt has 71 tokens",
              ErrorReason::kPromptTooLong);
  // Truncation makes it fit.
  request.set_truncate_prompt_tokens(10);
  EXPECT_TRUE(Parse(request).ok());

  request = TokenRequest(std::vector<uint32_t>(60, 1));
  request.mutable_stopping()->set_max_tokens(4);
  EXPECT_TRUE(Parse(request).ok());
  request.mutable_stopping()->set_max_tokens(5);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.max_tokens: the prompt's 60 tokens plus max_tokens = 5 exceed "
              "max_model_len = 64",
              ErrorReason::kPromptTooLong);
}

TEST_F(ParseGenerateRequestTest, SamplingErrorsNameTheField) {
  struct Case {
    void (*set)(v1::SamplingParams&);
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](v1::SamplingParams& s) { s.set_temperature(-1); },
       "sampling.temperature: must be in [0, 100], got -1"},
      {[](v1::SamplingParams& s) { s.set_temperature(std::numeric_limits<float>::infinity()); },
       "sampling.temperature: must be in [0, 100], got inf"},
      {[](v1::SamplingParams& s) { s.set_top_p(0); }, "sampling.top_p: must be in (0, 1], got 0"},
      {[](v1::SamplingParams& s) { s.set_top_p(1.5); },
       "sampling.top_p: must be in (0, 1], got 1.5"},
      {[](v1::SamplingParams& s) { s.set_top_p(std::numeric_limits<float>::quiet_NaN()); },
       "sampling.top_p: must be in (0, 1], got nan"},
      {[](v1::SamplingParams& s) { s.set_min_p(1.5); }, "sampling.min_p: must be in [0, 1]"},
      {[](v1::SamplingParams& s) { s.set_repetition_penalty(0); },
       "sampling.repetition_penalty: must be in [0.01, 100], got 0"},
      {[](v1::SamplingParams& s) { s.set_repetition_penalty(1e-38f); },
       "sampling.repetition_penalty: must be in [0.01, 100], got 1e-38"},
      {[](v1::SamplingParams& s) { s.set_presence_penalty(2.5); },
       "sampling.presence_penalty: must be in [-2, 2], got 2.5"},
      {[](v1::SamplingParams& s) { s.set_frequency_penalty(-3); },
       "sampling.frequency_penalty: must be in [-2, 2], got -3"},
      {[](v1::SamplingParams& s) { (*s.mutable_logit_bias())[300] = 1; },
       "sampling.logit_bias[300]: token id 300 is outside the vocabulary"},
      {[](v1::SamplingParams& s) { (*s.mutable_logit_bias())[5] = 101; },
       "sampling.logit_bias[5]: must be finite and in [-100, 100], got 101"},
      {[](v1::SamplingParams& s) {
         for (uint32_t i = 0; i <= 1024; ++i) (*s.mutable_logit_bias())[i] = 0;
       },
       "sampling.logit_bias: at most 1024 entries, got 1025"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest request = TokenRequest({1});
    c.set(*request.mutable_sampling());
    ExpectError(request, absl::StatusCode::kInvalidArgument, c.message);
  }
}

TEST_F(ParseGenerateRequestTest, StoppingErrorsNameTheField) {
  v1::GenerateRequest request = TokenRequest({1});
  request.mutable_stopping()->set_max_tokens(0);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.max_tokens: must be >= 1, got 0");

  request = TokenRequest({1});
  request.mutable_stopping()->set_max_tokens(3);
  request.mutable_stopping()->set_min_tokens(4);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.min_tokens: must be <= max_tokens = 3, got 4");

  request = TokenRequest({1});
  for (int i = 0; i <= engine::kMaxStopStrings; ++i) request.mutable_stopping()->add_stop("s");
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.stop: at most 16 stop strings, got 17");

  request = TokenRequest({1});
  request.mutable_stopping()->add_stop("a");
  request.mutable_stopping()->add_stop("b");
  request.mutable_stopping()->add_stop("");
  ExpectError(request, absl::StatusCode::kInvalidArgument, "stopping.stop[2]: must not be empty");

  request = TokenRequest({1});
  request.mutable_stopping()->add_stop(std::string(engine::kMaxStopStringBytes + 1, 'x'));
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.stop[0]: at most 256 bytes, got 257");

  request = TokenRequest({1});
  for (int i = 0; i <= engine::kMaxStopTokenIds; ++i)
    request.mutable_stopping()->add_stop_token_ids(1);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.stop_token_ids: at most 64 entries, got 65");

  request = TokenRequest({1});
  request.mutable_stopping()->add_stop_token_ids(1);
  request.mutable_stopping()->add_stop_token_ids(999);
  ExpectError(request, absl::StatusCode::kInvalidArgument,
              "stopping.stop_token_ids[1]: token id 999 is outside the vocabulary");

  request = TokenRequest({1});
  request.mutable_stopping()->add_stop("x");
  engine::EngineInfo no_tokenizer = info_;
  no_tokenizer.has_tokenizer = false;
  const absl::StatusOr<engine::EngineRequest> parsed =
      Admit(request, no_tokenizer, /*tokenizer=*/nullptr);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(parsed.status().message()), StartsWith("stopping.stop: "));
}

TEST_F(ParseGenerateRequestTest, KvCacheTooSmall) {
  info_.num_kv_blocks = 2;  // 32 tokens, less than max_model_len
  v1::GenerateRequest request = TokenRequest(std::vector<uint32_t>(20, 1));
  request.mutable_stopping()->set_max_tokens(12);
  EXPECT_TRUE(Parse(request).ok());
  request.mutable_stopping()->set_max_tokens(13);
  ExpectError(request, absl::StatusCode::kResourceExhausted,
              "token_ids.ids: ", ErrorReason::kKvCacheTooSmall);
}

}  // namespace
}  // namespace pagoda::server

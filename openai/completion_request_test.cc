#include "openai/completion_request.h"

#include <string>
#include <vector>

#include "engine/error_reason.h"
#include "engine/request_validation.h"
#include "engine/testing/byte_model_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openai/responses.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::openai {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using engine::testing::ByteModelInfo;

class CompletionRequestTest : public ::testing::Test {
 protected:
  // Parsing, then the engine's validation of every prompt (what Engine::Submit runs).
  absl::StatusOr<CompletionRequest> Parse(const std::string& body) {
    absl::StatusOr<CompletionRequest> parsed = ParseCompletionRequest(body, info_, &tokenizer_);
    if (!parsed.ok()) return parsed;
    for (const engine::EngineRequest& prompt : parsed->prompts) {
      if (absl::Status s = engine::ValidateEngineRequest(prompt, info_); !s.ok()) return s;
    }
    return parsed;
  }
  // The body must be refused with `code` and a client-facing message (as ErrorJson shows it)
  // starting with `prefix`.
  void ExpectError(const std::string& body, const std::string& prefix,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
    const absl::StatusOr<CompletionRequest> parsed = Parse(body);
    ASSERT_FALSE(parsed.ok()) << body;
    EXPECT_EQ(parsed.status().code(), code) << parsed.status();
    EXPECT_THAT(ErrorJson(parsed.status()), HasSubstr("\"message\":\"" + prefix)) << body;
  }

  engine::EngineInfo info_ = ByteModelInfo();
  tokenizer::ByteTokenizer tokenizer_;
};

TEST_F(CompletionRequestTest, TextPromptAndEveryOptionIsTranslated) {
  const absl::StatusOr<CompletionRequest> parsed = Parse(R"({
      "model": "test-model", "prompt": "hi", "max_tokens": 5, "temperature": 0.5,
      "top_p": 0.9, "top_k": 7, "min_p": 0.1, "seed": 42, "repetition_penalty": 1.1,
      "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"104": 2.5, "3": -1},
      "stop": "x", "stop_token_ids": [5], "ignore_eos": true, "min_tokens": 2,
      "include_stop_str_in_output": true, "skip_special_tokens": false, "priority": 3,
      "cache_salt": "s", "user": "u", "stream": true, "logprobs": 3,
      "stream_options": {"include_usage": true, "continuous_usage_stats": true},
      "some_new_field": 1})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->model, "test-model");
  ASSERT_EQ(parsed->prompts.size(), 1u);
  const engine::EngineRequest& r = parsed->prompts[0];
  EXPECT_THAT(r.prompt_tokens, ElementsAre(tokenizer_.bos_id().value(), 'h', 'i'));
  EXPECT_EQ(r.prompt_field, "prompt");
  EXPECT_EQ(r.stopping.max_tokens, 5);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_THAT(r.sampling.logit_bias, ElementsAre(std::pair<TokenId, float>{3, -1.0f},
                                                 std::pair<TokenId, float>{104, 2.5f}));
  EXPECT_THAT(r.stopping.stop_strings, ElementsAre("x"));
  EXPECT_THAT(r.stopping.stop_token_ids, ElementsAre(5));
  EXPECT_TRUE(r.stopping.ignore_eos);
  EXPECT_EQ(r.stopping.min_tokens, 2);
  EXPECT_TRUE(r.stopping.include_stop_str_in_output);
  EXPECT_TRUE(r.stopping.keep_special_tokens);
  EXPECT_EQ(r.priority, 3);
  EXPECT_EQ(r.cache_salt, "s");
  EXPECT_EQ(r.sampling.logprobs, 3);
  EXPECT_EQ(parsed->logprobs, 3);
  EXPECT_TRUE(parsed->stream);
  EXPECT_TRUE(parsed->include_usage);
  EXPECT_TRUE(parsed->continuous_usage_stats);
  EXPECT_THAT(parsed->unknown_fields, ElementsAre("some_new_field"));
}

TEST_F(CompletionRequestTest, DefaultsAreOpenAis) {
  const absl::StatusOr<CompletionRequest> parsed = Parse(R"({"prompt": "hi"})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const engine::EngineRequest& r = parsed->prompts[0];
  EXPECT_EQ(r.stopping.max_tokens, kDefaultCompletionMaxTokens);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FALSE(r.stopping.keep_special_tokens);
  EXPECT_FALSE(parsed->stream);
  EXPECT_TRUE(r.detokenize);
  EXPECT_EQ(r.sampling.logprobs, -1);
  EXPECT_EQ(parsed->logprobs, -1);
  // logprobs 0: only the sampled token's; null: none.
  EXPECT_EQ(Parse(R"({"prompt": "hi", "logprobs": 0})")->prompts[0].sampling.logprobs, 0);
  EXPECT_EQ(Parse(R"({"prompt": "hi", "logprobs": null})")->prompts[0].sampling.logprobs, -1);
  EXPECT_EQ(r.sampling.prompt_logprobs, -1);
  // Prompt log-probabilities: asked for, or needed by echo with logprobs (the larger k).
  EXPECT_EQ(Parse(R"({"prompt": "hi", "prompt_logprobs": 2})")->prompts[0].sampling.prompt_logprobs,
            2);
  EXPECT_EQ(Parse(R"({"prompt": "hi", "echo": true, "logprobs": 3, "prompt_logprobs": 1})")
                ->prompts[0]
                .sampling.prompt_logprobs,
            3);
  EXPECT_EQ(Parse(R"({"prompt": "hi", "echo": false, "logprobs": 3})")
                ->prompts[0]
                .sampling.prompt_logprobs,
            -1);
  // null max_tokens: up to the context length.
  EXPECT_FALSE(Parse(R"({"prompt": "hi", "max_tokens": null})")->prompts[0].stopping.max_tokens);
  // top_k -1 is vLLM's "off"; 16.0 is an integer.
  EXPECT_EQ(Parse(R"({"prompt": "hi", "top_k": -1})")->prompts[0].sampling.top_k, 0);
  EXPECT_EQ(Parse(R"({"prompt": "hi", "max_tokens": 16.0})")->prompts[0].stopping.max_tokens, 16);
}

TEST_F(CompletionRequestTest, TheFourPromptForms) {
  const auto one = Parse(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->prompts.size(), 1u);
  EXPECT_THAT(one->prompts[0].prompt_tokens, ElementsAre(1, 2, 3));
  const auto texts = Parse(R"({"prompt": ["a", "b"], "add_special_tokens": false})");
  ASSERT_TRUE(texts.ok()) << texts.status();
  ASSERT_EQ(texts->prompts.size(), 2u);
  EXPECT_THAT(texts->prompts[1].prompt_tokens, ElementsAre('b'));
  EXPECT_EQ(texts->prompts[1].prompt_field, "prompt[1]");
  const auto lists = Parse(R"({"prompt": [[1, 2], [3]]})");
  ASSERT_TRUE(lists.ok()) << lists.status();
  ASSERT_EQ(lists->prompts.size(), 2u);
  EXPECT_THAT(lists->prompts[1].prompt_tokens, ElementsAre(3));
}

TEST_F(CompletionRequestTest, EchoAndTruncation) {
  const auto echo = Parse(R"({"prompt": ["ab", [99, 100]], "echo": true})");
  EXPECT_FALSE(echo.ok());  // mixed forms
  const auto texts = Parse(R"({"prompt": [[97, 98]], "echo": true})");
  ASSERT_TRUE(texts.ok()) << texts.status();
  EXPECT_THAT(texts->echo_texts, ElementsAre("ab"));
  const auto truncated = Parse(R"({"prompt": [1, 2, 3, 4], "truncate_prompt_tokens": 2})");
  ASSERT_TRUE(truncated.ok()) << truncated.status();
  EXPECT_THAT(truncated->prompts[0].prompt_tokens, ElementsAre(3, 4));
}

TEST_F(CompletionRequestTest, ErrorsNameTheField) {
  ExpectError("{", "body: not valid JSON");
  ExpectError("[1]", "body: must be a JSON object, got array");
  ExpectError("{}", "prompt: required");
  ExpectError(R"({"prompt": ""})", "prompt: must not be empty");
  ExpectError(R"({"prompt": []})", "prompt: must not be empty");
  ExpectError(R"({"prompt": 5})", "prompt: must be a string");
  ExpectError(R"({"prompt": [[]]})", "prompt[0]: must not be empty");
  ExpectError(R"({"prompt": [1, "a"]})", "prompt[1]: must be a token id");
  ExpectError(R"({"prompt": [[1], "a"]})", "prompt[1]: must be a string, an array of strings");
  ExpectError(R"({"prompt": [1, 999]})", "prompt[1]: ");
  ExpectError(R"({"prompt": "hi", "temperature": "hot"})",
              "temperature: must be a number, got string");
  ExpectError(R"({"prompt": "hi", "temperature": -1})", "temperature: ");
  ExpectError(R"({"prompt": "hi", "top_p": 0})", "top_p: ");
  ExpectError(R"({"prompt": "hi", "top_k": -2})", "top_k: must be in [-1, ");
  ExpectError(R"({"prompt": "hi", "max_tokens": 0})", "max_tokens: must be in [1, ");
  ExpectError(R"({"prompt": "hi", "max_tokens": 1.5})",
              "max_tokens: must be an integer, got number");
  ExpectError(R"({"prompt": "hi", "max_tokens": 100})", "max_tokens: the prompt");
  ExpectError(R"({"prompt": "hi", "repetition_penalty": 1e-38})", "repetition_penalty: ");
  ExpectError(R"({"prompt": "hi", "logit_bias": {"x": 1}})", "logit_bias[\\\"x\\\"]: keys must be");
  ExpectError(R"({"prompt": "hi", "logit_bias": {"1": 1000}})", "logit_bias");
  ExpectError(R"({"prompt": "hi", "stop": [1]})", "stop[0]: must be a string, got integer");
  ExpectError(R"({"prompt": "hi", "stop_token_ids": [1000]})", "stop_token_ids[0]: ");
  ExpectError(R"({"prompt": "hi", "seed": "x"})", "seed: must be an integer");
  ExpectError(R"({"prompt": "hi", "stream": 1})", "stream: must be a boolean, got integer");
  ExpectError(R"({"prompt": "hi", "stream_options": {}})", "stream_options: only allowed with");
  ExpectError(R"({"prompt": "hi", "n": 0})", "n: ");
  ExpectError(R"({"prompt": "hi", "n": 129})", "n: ");
  ExpectError(R"({"prompt": ["a", "b", "c"], "n": 100})", "n: prompts × n must be at most 256");
  ExpectError(R"({"prompt": "hi", "logprobs": 21})", "logprobs: must be in [0, 20]");
  ExpectError(R"({"prompt": "hi", "logprobs": -1})", "logprobs: must be in [0, 20]");
  ExpectError(R"({"prompt": "hi", "logprobs": true})", "logprobs: must be an integer");
  ExpectError(R"({"prompt": "hi", "prompt_logprobs": 21})", "prompt_logprobs: must be in [0, 20]");
  ExpectError(R"({"prompt": "hi", "prompt_logprobs": "1"})", "prompt_logprobs: must be an integer");
  ExpectError(R"({"prompt": "hi", "suffix": "x"})", "suffix: ");
  ExpectError(R"({"prompt": "hi", "min_tokens": 20, "max_tokens": 5})", "min_tokens: ");
  ExpectError(R"({"prompt": "hi", "cache_salt": 5})", "cache_salt: must be a string");
  ExpectError(R"({"prompt": "hi", "model": 5})", "model: must be a string");
}

TEST_F(CompletionRequestTest, NChoicesPerPromptFanOutWithTheirOwnSeeds) {
  const absl::StatusOr<CompletionRequest> parsed =
      Parse(R"({"prompt": ["ab", "cd"], "n": 3, "seed": 7, "echo": true})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->n, 3);
  ASSERT_EQ(parsed->prompts.size(), 6u);
  ASSERT_EQ(parsed->echo_texts.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    // Choice i is copy i % 3 of prompt i / 3.
    EXPECT_EQ(parsed->prompts[i].prompt_tokens, parsed->prompts[i / 3 * 3].prompt_tokens);
    EXPECT_EQ(parsed->prompts[i].sampling.seed, 7u + i % 3);
    EXPECT_EQ(parsed->echo_texts[i], i < 3 ? "ab" : "cd");
  }
  EXPECT_FALSE(Parse(R"({"prompt": "ab", "n": 2})")->prompts[1].sampling.seed.has_value());
}

TEST_F(CompletionRequestTest, PromptLogprobsAreRefusedOnCuda) {
  EXPECT_TRUE(Parse(R"({"prompt": "hi", "prompt_logprobs": 1})").ok());
  info_.backend = "cuda";
  const absl::StatusOr<CompletionRequest> parsed =
      Parse(R"({"prompt": "hi", "prompt_logprobs": 1})");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("prompt_logprobs: not available on the CUDA backend"));
  EXPECT_FALSE(Parse(R"({"prompt": "hi", "echo": true, "logprobs": 1})").ok());
  EXPECT_TRUE(Parse(R"({"prompt": "hi", "logprobs": 1})").ok());
}

TEST_F(CompletionRequestTest, TextNeedsATokenizer) {
  const absl::StatusOr<CompletionRequest> parsed =
      ParseCompletionRequest(R"({"prompt": "hi"})", info_, nullptr);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ParseCompletionRequest(R"({"prompt": [1]})", info_, nullptr).ok());
}

TEST_F(CompletionRequestTest, DeepNestingIsRefusedNotACrash) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(Parse(absl::StrCat(R"({"prompt": )", deep, "}")).ok());
}

}  // namespace
}  // namespace pagoda::openai

#include "openai/responses.h"

#include "engine/error_reason.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pagoda::openai {
namespace {

using nlohmann::json;

TEST(ResponsesTest, ErrorsHaveOpenAisShapeAndStatus) {
  const absl::Status invalid = engine::InvalidFieldError("sampling.top_p: must be in (0, 1]");
  EXPECT_EQ(HttpStatusOf(invalid), 400);
  const json error = json::parse(ErrorJson(invalid))["error"];
  EXPECT_EQ(error["message"], "top_p: must be in (0, 1]");
  EXPECT_EQ(error["type"], "invalid_request_error");
  EXPECT_EQ(error["param"], "top_p");
  EXPECT_EQ(error["code"], "invalid_field");

  const absl::Status full = engine::WithErrorReason(absl::ResourceExhaustedError("queue full"),
                                                    engine::ErrorReason::kQueueFull);
  const http::Response response = ErrorResponse(full, absl::Milliseconds(1500));
  EXPECT_EQ(response.status, 429);
  EXPECT_THAT(response.headers,
              ::testing::Contains(std::pair<std::string, std::string>("Retry-After", "2")));
  EXPECT_EQ(json::parse(response.body)["error"]["code"], "queue_full");

  EXPECT_EQ(HttpStatusOf(engine::WithErrorReason(absl::ResourceExhaustedError("x"),
                                                 engine::ErrorReason::kKvCacheTooSmall)),
            400);
  EXPECT_EQ(HttpStatusOf(absl::UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatusOf(absl::NotFoundError("model: x")), 404);
  EXPECT_EQ(json::parse(ErrorJson(absl::NotFoundError("model: x")))["error"]["code"],
            "model_not_found");
  EXPECT_EQ(HttpStatusOf(absl::UnavailableError("draining")), 503);
  EXPECT_EQ(HttpStatusOf(absl::UnimplementedError("x")), 501);
  EXPECT_EQ(HttpStatusOf(absl::InternalError("x")), 500);
  // A message that does not start with a field has no param.
  EXPECT_TRUE(json::parse(ErrorJson(absl::InvalidArgumentError("the request: x")))["error"]["param"]
                  .is_null());
}

TEST(ResponsesTest, CompletionObjects) {
  const ResponseIds ids{.id = "cmpl-1", .created = 7, .model = "m"};
  engine::RequestCompletion done;
  done.finish_reason = engine::FinishReason::kStop;
  done.stop_kind = engine::StopKind::kStopString;
  done.stop_string = "\n";
  done.usage = {.prompt_tokens = 3, .completion_tokens = 2, .cached_prompt_tokens = 1};
  const json chunk = json::parse(CompletionChunkJson(ids, 1, "ab", &done, &done.usage));
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"][0]["index"], 1);
  EXPECT_EQ(chunk["choices"][0]["text"], "ab");
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(chunk["choices"][0]["stop_reason"], "\n");
  EXPECT_EQ(chunk["usage"]["total_tokens"], 5);
  const json middle = json::parse(CompletionChunkJson(ids, 0, "x", nullptr, nullptr));
  EXPECT_TRUE(middle["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(middle.contains("usage"));

  std::vector<ChoiceResult> choices(2);
  choices[0].text = "one";
  choices[0].completion = done;
  choices[1].text = "two";
  choices[1].completion.finish_reason = engine::FinishReason::kLength;
  choices[1].completion.usage = {.prompt_tokens = 4, .completion_tokens = 6};
  const json whole = json::parse(CompletionJson(ids, choices));
  EXPECT_EQ(whole["choices"][1]["text"], "two");
  EXPECT_EQ(whole["choices"][1]["finish_reason"], "length");
  EXPECT_TRUE(whole["choices"][1]["stop_reason"].is_null());
  EXPECT_EQ(whole["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(whole["usage"]["completion_tokens"], 8);
  EXPECT_EQ(whole["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
  const json usage = json::parse(CompletionUsageChunkJson(ids, TotalUsage(choices)));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(SseEvent("{}"), "data: {}\n\n");
}

}  // namespace
}  // namespace pagoda::openai

#include "server/generate_response.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::ElementsAre;

TEST(GenerateResponseTest, ChunkCarriesNewTokensAndUsageOnlyWhenAsked) {
  const engine::OutputChunk chunk{.token_ids = {4, 5}, .text = "ab", .usage = {3, 2, 1}};
  v1::GenerateResponse response = MakeChunkResponse("id-1", chunk, {.stream = true});
  EXPECT_EQ(response.request_id(), "id-1");
  ASSERT_TRUE(response.has_chunk());
  EXPECT_THAT(response.chunk().token_ids(), ElementsAre(4, 5));
  EXPECT_EQ(response.chunk().text(), "ab");
  EXPECT_EQ(response.chunk().index(), 0u);
  EXPECT_FALSE(response.chunk().has_usage());

  response = MakeChunkResponse("id-1", chunk, {.stream = true, .usage_every_chunk = true});
  ASSERT_TRUE(response.chunk().has_usage());
  EXPECT_EQ(response.chunk().usage().prompt_tokens(), 3u);
  EXPECT_EQ(response.chunk().usage().completion_tokens(), 2u);
  EXPECT_EQ(response.chunk().usage().cached_prompt_tokens(), 1u);
}

engine::RequestCompletion Completion() {
  engine::RequestCompletion c;
  c.finish_reason = engine::FinishReason::kStop;
  c.stop_kind = engine::StopKind::kStopString;
  c.stop_string = "END";
  c.token_ids = {10, 11, 12};
  c.text = "xyz";
  c.usage = {.prompt_tokens = 7, .completion_tokens = 3, .cached_prompt_tokens = 0};
  c.timings = {.queue_seconds = 0.5, .ttft_seconds = 1.0, .e2e_seconds = 2.0, .num_preemptions = 1};
  return c;
}

TEST(GenerateResponseTest, UnaryCompleteCarriesTheWholeOutput) {
  const v1::GenerateResponse response =
      MakeCompleteResponse("r", Completion(), {.stream = false}, 0.25);
  ASSERT_TRUE(response.has_complete());
  const v1::GenerateResponse::Complete& c = response.complete();
  EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(c.stop_string(), "END");
  EXPECT_THAT(c.token_ids(), ElementsAre(10, 11, 12));
  EXPECT_EQ(c.text(), "xyz");
  EXPECT_EQ(c.usage().prompt_tokens(), 7u);
  EXPECT_EQ(c.usage().completion_tokens(), 3u);
  // Timings count from arrival at the server: the engine's plus the time before submission.
  EXPECT_DOUBLE_EQ(c.timings().queue_seconds(), 0.75);
  EXPECT_DOUBLE_EQ(c.timings().ttft_seconds(), 1.25);
  EXPECT_DOUBLE_EQ(c.timings().e2e_seconds(), 2.25);
  EXPECT_EQ(c.timings().num_preemptions(), 1u);
}

TEST(GenerateResponseTest, StreamingCompleteHasNoOutput) {
  const v1::GenerateResponse response =
      MakeCompleteResponse("r", Completion(), {.stream = true}, 0);
  EXPECT_TRUE(response.complete().token_ids().empty());
  EXPECT_TRUE(response.complete().text().empty());
  EXPECT_EQ(response.complete().usage().completion_tokens(), 3u);
}

TEST(GenerateResponseTest, StopReasonsAndPointsNeverReached) {
  engine::RequestCompletion c = Completion();
  c.stop_kind = engine::StopKind::kEos;
  EXPECT_TRUE(MakeCompleteResponse("r", c, {}, 0).complete().eos());
  c.stop_kind = engine::StopKind::kStopTokenId;
  c.stop_token_id = 12;
  EXPECT_EQ(MakeCompleteResponse("r", c, {}, 0).complete().stop_token_id(), 12u);

  c.finish_reason = engine::FinishReason::kAbort;
  c.stop_kind = engine::StopKind::kNone;
  c.timings = {.queue_seconds = 0, .ttft_seconds = 0, .e2e_seconds = 0.1};
  const v1::GenerateResponse response = MakeCompleteResponse("r", c, {}, 0.5);
  EXPECT_EQ(response.complete().finish_reason(), v1::FINISH_REASON_ABORT);
  EXPECT_EQ(response.complete().stop_reason_case(),
            v1::GenerateResponse::Complete::STOP_REASON_NOT_SET);
  EXPECT_EQ(response.complete().timings().ttft_seconds(), 0.0);
  EXPECT_DOUBLE_EQ(response.complete().timings().e2e_seconds(), 0.6);

  c.finish_reason = engine::FinishReason::kLength;
  EXPECT_EQ(MakeCompleteResponse("r", c, {}, 0).complete().finish_reason(),
            v1::FINISH_REASON_LENGTH);
}

}  // namespace
}  // namespace pagoda::server
